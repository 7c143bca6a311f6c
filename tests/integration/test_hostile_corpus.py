"""The hostile corpus (``tests/hostile_corpus.py``) through the service as users run it: a JSONL file, and Kafka.

Each run is one ``stream-learner run`` process over valid events with every
kind of hostile record between them. It must exit 0 having read every
record, and every input must end as exactly one prediction (by id) or one
dead letter (by origin offset) with the reason the corpus names: none
lost, none duplicated. Every record of the labels topic is a dead letter
or counted in its key's ``delayed_labels``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hostile_corpus
import pytest
from hostile_corpus import SCHEMA_GUARD, Record
from kafka import KafkaProducer
from test_kafka_e2e import read_topic

from connectors.kafka import ensure_topics
from connectors.redis_store import RedisSnapshotStore

pytestmark = pytest.mark.integration

SIGNING_KEY = "hostile-signing-key"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "stream_learner.app.cli", "run", "--model", "hoeffding_tree", "--json", "--metrics-every", "100000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


@dataclass
class Run:
    """One run's inputs and outputs."""

    inputs: list[Record]
    offsets: list[int]  # each input's offset in its source
    topic: str  # the inputs' origin topic
    process: subprocess.CompletedProcess[str]
    predictions: list[dict[str, Any]]
    dead: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    labels: list[Record]
    labels_topic: str | None = None
    label_offsets: list[int] | None = None

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.process.stdout.strip().splitlines()[-1])

    def outputs(self) -> list[list[str]]:
        """Per input, what it became: ``prediction`` (once per prediction with its id) and each dead letter's reason."""
        by_id = Counter(p["id"] for p in self.predictions)
        by_offset: dict[int, list[str]] = {}
        for d in self.dead:
            if d["origin"]["topic"] == self.topic:
                by_offset.setdefault(d["origin"]["offset"], []).append(d["reason"])
        out = []
        for record, offset in zip(self.inputs, self.offsets):
            became = list(by_offset.get(offset, []))
            if record.id is not None:
                became += ["prediction"] * by_id[record.id]
            out.append(became)
        return out

    def last_metrics(self) -> dict[str, dict[str, Any]]:
        return {m["key"]: m for m in self.metrics if m["type"] == "metrics"}


def check_every_input_ends_once(run: Run) -> None:
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    summary = run.summary
    assert summary["events"] == len(run.inputs)  # read to the end: never stopped early
    outputs = run.outputs()
    wrong = [(r.kind, want, got) for r, got in zip(run.inputs, outputs) for want in [r.outcome] if want != SCHEMA_GUARD and got != [want]]
    assert wrong == []
    assert all(len(got) == 1 for got in outputs)  # the schema cases too: one output each, whatever it is
    ids = [p["id"] for p in run.predictions]
    assert len(ids) == len(set(ids)) == summary["predictions"]  # none duplicated
    input_dead = [d for d in run.dead if d["origin"]["topic"] == run.topic and d["origin"]["offset"] >= 0]  # offset -1: a delayed label's
    assert len(ids) + len(input_dead) == len(run.inputs)  # none lost
    assert all(len(json.dumps(d)) < 1_000_000 for d in run.dead)


def check_schema_cases(run: Run) -> None:
    outputs = run.outputs()
    assert [(r.kind, got) for r, got in zip(run.inputs, outputs) if r.outcome == SCHEMA_GUARD] == [
        (r.kind, ["schema"]) for r in run.inputs if r.outcome == SCHEMA_GUARD
    ]


@pytest.fixture(scope="module")
def file_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("hostile-file")
    inputs, _ = hostile_corpus.stream(kafka=False)
    path = tmp / "hostile.jsonl"
    path.write_bytes(hostile_corpus.jsonl(inputs))
    out = tmp / "out"
    process = _cli("--source", f"file:{path}", "--out", str(out), env={"STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY})

    def read(name: str) -> list[dict[str, Any]]:
        file = out / name
        return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []

    return Run(inputs, list(range(len(inputs))), str(path), process, read("predictions.jsonl"), read("dead_letters.jsonl"), read("metrics.jsonl"), [])


def test_through_a_file_every_input_ends_as_one_prediction_or_one_dead_letter(file_run: Run) -> None:
    assert len({r.kind for r in file_run.inputs}) >= 60
    check_every_input_ends_once(file_run)


def test_through_a_file_schema_changes_are_schema_dead_letters(file_run: Run) -> None:
    check_schema_cases(file_run)


def _produce(bootstrap: str, topic: str, records: list[Record]) -> list[int]:
    """Every record to partition 0 of ``topic``, in order; their offsets."""
    ensure_topics({"bootstrap_servers": [bootstrap]}, [topic], 1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=8_000_000, max_in_flight_requests_per_connection=1, linger_ms=5)
    try:
        futures = [producer.send(topic, value=r.value, key=r.key, headers=list(r.headers), partition=0) for r in records]
        producer.flush()
        return [f.get(timeout=60).offset for f in futures]
    finally:
        producer.close()


@pytest.fixture(scope="module")
def kafka_run(kafka_bootstrap: str, redis_url: str) -> Any:
    unique = os.urandom(5).hex()
    topics = {name: f"hostile-{name}-{unique}" for name in ("in", "labels", "pred", "metrics", "dlq")}
    inputs, labels = hostile_corpus.stream(kafka=True)
    offsets = _produce(kafka_bootstrap, topics["in"], inputs)
    label_offsets = _produce(kafka_bootstrap, topics["labels"], labels)
    app = f"hostile-{unique}"
    process = _cli(
        "--source", "kafka", "--bootstrap-servers", kafka_bootstrap, "--app", app,
        "--input-topic", topics["in"], "--labels-topic", topics["labels"], "--predictions-topic", topics["pred"],
        "--metrics-topic", topics["metrics"], "--dead-letter-topic", topics["dlq"], "--stop-when-idle", "3",
        env={"STREAM_LEARNER_REDIS__URL": redis_url, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY, "STREAM_LEARNER_SNAPSHOT__RESUME": "false"},
    )  # fmt: skip
    try:
        yield Run(
            inputs, offsets, topics["in"], process,
            read_topic(kafka_bootstrap, topics["pred"]), read_topic(kafka_bootstrap, topics["dlq"]), read_topic(kafka_bootstrap, topics["metrics"]),
            labels, topics["labels"], label_offsets,
        )  # fmt: skip
    finally:
        store = RedisSnapshotStore.from_url(redis_url, app=app)
        for key in store.keys():
            store.delete(key)


def test_through_kafka_every_input_ends_as_one_prediction_or_one_dead_letter(kafka_run: Run) -> None:
    assert len({r.kind for r in kafka_run.inputs + kafka_run.labels}) >= 60
    check_every_input_ends_once(kafka_run)


def test_through_kafka_every_label_record_is_a_dead_letter_or_counted(kafka_run: Run) -> None:
    """A label the key's schema refuses is the engine's dead letter (checked with the schema cases), else counted once."""
    by_offset: dict[int, list[str]] = {}
    for d in kafka_run.dead:
        if d["origin"]["topic"] == kafka_run.labels_topic:
            by_offset.setdefault(d["origin"]["offset"], []).append(d["reason"])
    assert kafka_run.label_offsets is not None
    became = [by_offset.get(offset, []) for offset in kafka_run.label_offsets]  # what the decoder made of each
    decoded = [[] if r.outcome in ("counted", SCHEMA_GUARD) else [r.outcome] for r in kafka_run.labels]
    assert [(r.kind, got) for r, got, want in zip(kafka_run.labels, became, decoded) if got != want] == []
    counts = [m["delayed_labels"] for m in kafka_run.last_metrics().values()]
    received = sum(c["received"] for c in counts)
    assert received == sum(r.outcome == "counted" for r in kafka_run.labels)
    assert all(c["matched"] + c["expired"] + c["unmatched"] + c["waiting"] == c["received"] and c["waiting"] == 0 for c in counts)
    late = kafka_run.last_metrics()["late"]["delayed_labels"]
    assert late["matched"] >= 1 and late["unmatched"] >= 2  # the unknown id and the second label of late-15


def test_through_kafka_schema_changes_are_schema_dead_letters(kafka_run: Run) -> None:
    check_schema_cases(kafka_run)
    late = [d for d in kafka_run.dead if d["reason"] == "schema" and d["origin"]["offset"] < 0]  # the delayed "yes" for schema-late
    assert len(late) == 1 and '"yes"' in late[0]["raw"]


def test_max_record_bytes_is_the_run_s_limit(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    small, big = hostile_corpus.ev("small"), hostile_corpus.ev("big", features={"a": 1.0, "pad": "p" * 2000})
    path.write_bytes(small + b"\n" + big + b"\n")
    process = _cli("--source", f"file:{path}", "--out", str(tmp_path / "out"), "--max-record-bytes", "1000")
    assert process.returncode == 0, process.stderr
    [letter] = [json.loads(line) for line in (tmp_path / "out" / "dead_letters.jsonl").read_text().splitlines()]
    assert letter["reason"] == "too_large" and letter["raw_bytes"] == len(big) and letter["raw"] == big[:1000].decode()
    assert [json.loads(line)["id"] for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()] == ["small"]
    refused = _cli("--source", f"file:{path}", "--out", str(tmp_path / "out2"), "--max-record-bytes", "0")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "stream-learner run: error: argument --max-record-bytes: expected at least 1 byte (see stream-learner run --help)"
    ]
    assert not (tmp_path / "out2").exists()
