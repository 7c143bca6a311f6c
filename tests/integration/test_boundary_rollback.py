"""Boundary versions through the real runs: every concept boundary of a key is a snapshot version, and ``rollback KEY concept:N`` brings its model back.

Each task flips the rule the labels follow, so each concept's model differs.
Unlabelled probe events (the same features each time) are predicted and
never learned: a probe at the end of a task is predicted by the model that
was live when that concept ended, which a rollback to the concept must
bring back exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from test_kafka_control import Topic, answers_to

from connectors.kafka import ensure_topics, make_producer
from connectors.local_store import LocalSnapshotStore
from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.assembly import rollback_reader
from stream_learner.control import Command, sign_command
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import ControlAnswer, Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import read_header

pytestmark = pytest.mark.integration

KEY = b"operators-secret"
PROBE = {"a": 0.2, "b": -0.1}
ENGINE = EngineConfig(learner=LearnerSpec("logreg"), detector=None, forgetting_every=0)


def _task(key: str, task: str, n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` labelled events of ``task`` (task ``b`` flips the rule), then one unlabelled probe."""
    rng = random.Random(seed)
    for i in range(n):
        x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
        yield {"id": f"{key}-{task}{seed}-{i}", "key": key, "features": x, "label": (x["a"] + 0.3 * x["b"] > 0) != (task == "b"), "task": task}
    yield {"id": f"{key}-probe-{task}{seed}", "key": key, "features": PROBE, "label": None}


def test_an_embedded_run_keeps_one_boundary_version_per_boundary_and_key(embedded_run: Callable[..., tuple[dict[str, Any], LocalSnapshotStore]]) -> None:
    streams = {key: [e for t, task in enumerate("aba") for e in _task(key, task, 200, seed=t + 10 * k)] for k, key in enumerate(("k1", "k2"))}
    mixed = [orjson.dumps(e) for pair in zip(*streams.values()) for e in pair]
    summary, store = embedded_run(mixed, ENGINE, "embedded-secret")
    assert summary["events"] == len(mixed)
    for key, stream in streams.items():
        boundaries = store.boundary_versions(key)
        assert [read_header(store.load(key, v)).concept for v in boundaries] == [0, 1]  # a -> b ends concept 0, b -> a ends concept 1
        assert store.latest(key) not in boundaries and store.latest(key) == store.versions(key)[-1]
        found = rollback_reader(store, b"embedded-secret")(key, "concept:1")
        assert found is not None and found[0] == boundaries[1]
        kept = KeyedLearner.from_state(found[1], ENGINE)
        reference = KeyedLearner(key, ENGINE)  # the model live at the end of concept 1: every event up to task b's probe
        end = next(i for i, e in enumerate(stream) if e["id"] == f"{key}-probe-b{1 + 10 * list(streams).index(key)}")
        reference.process([Event(e["id"], key, e["features"], e["label"], e.get("task"), 0, i) for i, e in enumerate(stream[: end + 1])], now=0.0)
        probes = [{"a": a / 10, "b": -a / 20} for a in range(-10, 11)]
        assert [kept.learner.predict(x) for x in probes] == [reference.learner.predict(x) for x in probes]


def test_a_signed_rollback_to_a_concept_on_the_control_topic_brings_its_model_back(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    topics = {name: f"bnd-{name}-{unique}" for name in ("in", "pred", "metrics", "dlq", "control")}
    config = {"bootstrap_servers": kafka_bootstrap}
    ensure_topics(config, list(topics.values()), 1)
    producer = make_producer(config)

    def send(topic: str, values: list[bytes]) -> None:
        for value in values:
            producer.send(topics[topic], key=b"k", value=value)
        producer.flush()

    env = {
        **os.environ,
        "STREAM_LEARNER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_LEARNER_REDIS__URL": redis_url,
        "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": "snapshots-secret",
        "STREAM_LEARNER_CONTROL__SIGNING_KEY": KEY.decode(),
        "STREAM_LEARNER_APP": f"bnd-{unique}",
    }
    service = subprocess.Popen(
        [
            sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--input-topic", topics["in"],
            "--predictions-topic", topics["pred"], "--metrics-topic", topics["metrics"], "--dead-letter-topic", topics["dlq"],
            "--control-topic", topics["control"], "--model", "logreg", "--drift-detector", "none", "--snapshot-every", "100",
            "--snapshot-seconds", "0", "--quiet",
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    store = RedisSnapshotStore.from_url(redis_url, app=f"bnd-{unique}")
    predictions, metrics = Topic(kafka_bootstrap, topics["pred"]), Topic(kafka_bootstrap, topics["metrics"])
    stream = [e for t, task in enumerate("abc") for e in _task("k", task, 300, seed=t)]
    probe = lambda name: f"k-probe-{name}"  # noqa: E731
    commands = [Command(f"{arg}-{unique}", "k", "rollback", arg, time.time()) for arg in ("concept:1", "concept:0", "concept:5")]
    try:
        send("in", [orjson.dumps(e) for e in stream])
        predictions.until(lambda r: len(r) >= len(stream))
        deadline = time.monotonic() + 60
        while len(store.boundary_versions("k")) < 2:  # the writer saves them off the hot path
            assert time.monotonic() < deadline, f"boundary versions: {store.boundary_versions('k')}"
            time.sleep(0.2)
        for command in commands:  # the two topics are read side by side: each waits for the one before
            send("control", [sign_command(command, KEY)])
            metrics.until(lambda r, c=command: bool(answers_to(r, c.id)))
            send("in", [orjson.dumps({**stream[-1], "id": f"k-probe-after-{command.arg}"})])  # the probe again, after the command
            predictions.until(lambda r, c=command: any(p["id"] == f"k-probe-after-{c.arg}" for p in r))
        records = predictions.records
        listing = subprocess.run(
            [sys.executable, "-m", "stream_learner.app.cli", "snapshots", "list", "k", "--json"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        producer.close()
        predictions.close()
        metrics.close()
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=120)
        for name in store.client.scan_iter(match=f"*bnd-{unique}*"):
            store.client.delete(name)
        store.close()
    assert service.returncode == 0, err[-3000:]

    proba = {p["id"]: p["proba"] for p in records}
    assert proba[probe("a0")] != proba[probe("b1")] != proba[probe("c2")]  # each concept's model differs
    applied = [answers_to(metrics.records, c.id) for c in commands]
    for found in applied:
        assert len(found) == 1
        ControlAnswer.model_validate(found[0])
    (to_1,), (to_0,), (to_5,) = applied
    assert to_1["status"] == to_0["status"] == "applied" and to_1["version"] != to_0["version"]
    assert proba["k-probe-after-concept:1"] == proba[probe("b1")]  # the model live at the end of concept 1, exactly
    assert proba["k-probe-after-concept:0"] == proba[probe("a0")]
    assert to_5["status"] == "refused" and "keeps no boundary version of concept 5" in to_5["reason"]
    assert proba["k-probe-after-concept:5"] == proba[probe("a0")]  # nothing changed

    assert listing.returncode == 0, listing.stderr
    (entry,) = json.loads(listing.stdout)
    boundary = [(v["version"], v["concept"]) for v in entry["versions"] if v["kind"] == "boundary"]
    assert boundary == [(to_0["version"], 0), (to_1["version"], 1)]
    assert entry["latest"] not in dict(boundary) and all(v["verified"] for v in entry["versions"])
