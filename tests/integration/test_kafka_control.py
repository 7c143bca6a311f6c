"""Operators' commands through the real path: the control topic in, the engine's answers on the metrics topic, refusals as dead letters.

One running service (``--control-topic``) learns key ``k``; a probe event
(the same features each time) goes in every few events, so its predicted
probabilities show whether the model is learning. ``stream-learner control``
pauses learning (the probes' probabilities stop moving), then commands
written straight to the topic resume it, repeat an id (a duplicate), roll the
key back to a snapshot version and ask what cannot be done (refused, with
the reason); an unsigned command and one signed with another key are dead
letters.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from connectors.kafka import ensure_topics, make_producer
from stream_learner.control import Command, sign_command
from stream_learner.events import ControlAnswer

pytestmark = pytest.mark.integration

KEY = b"operators-secret"
PROBE = {"a": 0.2, "b": -0.1}


class Topic:
    """Reads a topic from its start, keeping what it read."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or ())]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.records: list[dict[str, Any]] = []

    def until(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 90.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            assert time.monotonic() < deadline, f"waited {timeout} s; read {len(self.records)} records, last: {self.records[-3:]}"
            for messages in self.consumer.poll(timeout_ms=300).values():
                self.records += [orjson.loads(m.value) for m in messages]
        return self.records

    def drain(self, seconds: float) -> list[dict[str, Any]]:
        """What the topic holds after reading on for ``seconds``."""
        deadline = time.monotonic() + seconds
        return self.until(lambda r: time.monotonic() >= deadline, timeout=seconds + 5)

    def close(self) -> None:
        self.consumer.close()


def _events(phase: str, n: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for i in range(n):
        if i % 10 == 0:
            yield orjson.dumps({"id": f"probe-{phase}-{i}", "key": "k", "features": PROBE, "label": True})
        x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
        yield orjson.dumps({"id": f"{phase}-{i}", "key": "k", "features": x, "label": x["a"] + x["b"] > 0})


def answers_to(records: list[dict[str, Any]], command_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("type") == "control" and r["id"] == command_id]


def test_operators_commands_are_obeyed_once_in_order_and_answered(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    topics = {name: f"ctl-{name}-{unique}" for name in ("in", "pred", "metrics", "dlq", "control")}
    config = {"bootstrap_servers": kafka_bootstrap}
    ensure_topics(config, list(topics.values()), 1)
    producer = make_producer(config)

    def send(topic: str, values: Iterator[bytes] | list[bytes]) -> None:
        for value in values:
            producer.send(topics[topic], key=b"k", value=value)
        producer.flush()

    def command(action: str, arg: str | int | None = None, command_id: str | None = None) -> Command:
        return Command(command_id or f"{action}-{arg}-{unique}", "k", action, arg, time.time())  # type: ignore[arg-type]

    env = {
        **os.environ,
        "STREAM_LEARNER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_LEARNER_REDIS__URL": redis_url,
        "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": "snapshots-secret",
        "STREAM_LEARNER_CONTROL__SIGNING_KEY": KEY.decode(),
        "STREAM_LEARNER_APP": f"ctl-{unique}",
        "STREAM_LEARNER_KAFKA__CONTROL_TOPIC": topics["control"],
        "STREAM_LEARNER_KAFKA__METRICS_TOPIC": topics["metrics"],
    }
    service = subprocess.Popen(
        [
            sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--input-topic", topics["in"],
            "--predictions-topic", topics["pred"], "--dead-letter-topic", topics["dlq"], "--model", "logreg",
            "--drift-detector", "none", "--snapshot-every", "100", "--snapshot-seconds", "0", "--quiet",
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    predictions, metrics, dead = Topic(kafka_bootstrap, topics["pred"]), Topic(kafka_bootstrap, topics["metrics"]), Topic(kafka_bootstrap, topics["dlq"])
    try:
        send("in", _events("A", 300, seed=1))
        predictions.until(lambda r: len(r) >= 330)

        paused = subprocess.run(
            [sys.executable, "-m", "stream_learner.app.cli", "control", "pause-learning", "k", "--wait", "60"], env=env, capture_output=True, text=True, timeout=120
        )
        assert paused.returncode == 0, paused.stdout + paused.stderr
        assert "pause-learning k: applied" in paused.stdout

        send("in", _events("B", 200, seed=2))
        predictions.until(lambda r: len(r) >= 550)
        resume = command("resume-learning")
        send("control", [sign_command(resume, KEY), sign_command(resume, KEY)])  # the same command twice
        metrics.until(lambda r: len(answers_to(r, resume.id)) == 2)
        send("in", _events("C", 200, seed=3))
        predictions.until(lambda r: len(r) >= 770)

        rollback, missing, promote = command("rollback", 1), command("rollback", 999), command("promote", "arf")
        send("control", [sign_command(c, KEY) for c in (rollback, missing, promote)])
        unsigned = orjson.loads(sign_command(command("snapshot"), KEY))
        del unsigned["signature"]
        send("control", [orjson.dumps(unsigned), sign_command(command("snapshot", command_id="forged"), b"not-the-key")])
        records = metrics.until(lambda r: all(answers_to(r, c.id) for c in (rollback, missing, promote)))
        letters = dead.until(lambda r: len(r) >= 2)
    finally:
        producer.close()
        for topic in (predictions, metrics, dead):
            topic.close()
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=120)
    assert service.returncode == 0, err[-3000:]

    answers = {c: answers_to(records, c.id) for c in (resume, rollback, missing, promote)}
    for found in answers.values():
        for answer in found:
            ControlAnswer.model_validate(answer)
    assert [a["status"] for a in answers[resume]] == ["applied", "duplicate"]
    assert [a["status"] for a in answers[rollback]] == ["applied"]
    assert [a["status"] for a in answers[missing]] == ["refused"] and "999" in answers[missing][0]["reason"]
    assert [a["status"] for a in answers[promote]] == ["refused"] and "no challengers" in answers[promote][0]["reason"]

    probes = {p["id"]: p["proba"] for p in predictions.records if p["id"].startswith("probe-")}
    moving = [probes[f"probe-A-{i}"] for i in range(0, 300, 10)]
    still = [probes[f"probe-B-{i}"] for i in range(0, 200, 10)]
    again = [probes[f"probe-C-{i}"] for i in range(0, 200, 10)]
    assert len({orjson.dumps(p) for p in moving}) > 10  # learning: the probe's probabilities move
    assert len({orjson.dumps(p) for p in still}) == 1  # paused: predicted, not learned
    assert len({orjson.dumps(p) for p in again}) > 10  # resumed

    assert sorted(letter["reason"] for letter in letters) == ["bad_signature", "unsigned_command"]


def test_a_command_survives_a_sigkill_and_a_restart_exactly_once(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> None:
    """The service is killed right after it answered a pause: restarted on its recovery directory, the key is paused once, not lost, not twice."""
    topics = {name: f"ctk-{name}-{unique}" for name in ("in", "pred", "metrics", "dlq", "control")}
    config = {"bootstrap_servers": kafka_bootstrap}
    ensure_topics(config, list(topics.values()), 1)
    producer = make_producer(config)
    env = {
        **os.environ,
        "STREAM_LEARNER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_LEARNER_REDIS__URL": redis_url,
        "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": KEY.decode(),
        "STREAM_LEARNER_APP": f"ctk-{unique}",
        "STREAM_LEARNER_KAFKA__CONTROL_TOPIC": topics["control"],
    }
    command = [
        sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--input-topic", topics["in"],
        "--predictions-topic", topics["pred"], "--metrics-topic", topics["metrics"], "--dead-letter-topic", topics["dlq"],
        "--model", "logreg", "--drift-detector", "none", "--recovery-dir", str(tmp_path / "recovery"), "--epoch-seconds", "0.2", "--quiet",
    ]  # fmt: skip
    predictions, metrics = Topic(kafka_bootstrap, topics["pred"]), Topic(kafka_bootstrap, topics["metrics"])
    pause = Command(f"pause-{unique}", "k", "pause-learning", None, time.time())
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    second = None
    try:
        for value in _events("A", 300, seed=1):
            producer.send(topics["in"], key=b"k", value=value)
        producer.flush()
        predictions.until(lambda r: len(r) >= 330)
        producer.send(topics["control"], key=b"k", value=sign_command(pause, KEY))
        producer.flush()
        metrics.until(lambda r: bool(answers_to(r, pause.id)))
        os.killpg(first.pid, signal.SIGKILL)  # the service and its Kafka children, at once
        first.communicate(timeout=30)  # reaped, its stderr pipe read and closed

        second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        for value in _events("B", 200, seed=2):
            producer.send(topics["in"], key=b"k", value=value)
        producer.flush()
        predictions.until(lambda r: sum(p["id"].startswith("B-") for p in r) >= 180)
        records = metrics.drain(2.0)
    finally:
        producer.close()
        predictions.close()
        metrics.close()
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            if process is not None and process.stderr is not None and not process.stderr.closed:
                process.communicate(timeout=30)

    statuses = [a["status"] for a in answers_to(records, pause.id)]
    assert statuses[0] == "applied" and set(statuses[1:]) <= {"applied", "duplicate"}  # read again after the kill: applied to a state without it, or a duplicate
    still = {orjson.dumps(p["proba"]) for p in predictions.records if p["id"].startswith("probe-B-")}
    assert len(still) == 1  # the restarted key is paused: the command was not lost
