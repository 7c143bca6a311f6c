"""End to end through a real Kafka-protocol broker and a real Redis.

Inputs with a drift, some unlabelled, some labelled later on the labels
topic, some malformed -> the service -> every output topic read back: the
counts add up, the accuracy equals the embedded run on the same bytes, and
the Redis snapshots restore to a learner that predicts identically.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from connectors.kafka import ensure_topics, make_producer
from connectors.redis_store import RedisSnapshotStore
from connectors.synthetic import SyntheticSource
from stream_learner.app.kafka_run import run_kafka
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError
from stream_learner.learners.base import LearnerSpec
from stream_learner.settings import Settings, load_settings
from stream_learner.snapshot import load_latest_valid, read_header, seal

pytestmark = pytest.mark.integration

SIGNING_KEY = "e2e-signing-key"
ENGINE = EngineConfig(learner=LearnerSpec("logreg"), metrics_every=200, snapshot_every=500)  # a linear model: the SEA drifts are ones its error shows
PROBE = [{"0": x / 3, "1": y / 3, "2": (x * y) % 10} for x, y in itertools.product(range(30), range(30))][:200]


def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every message of a topic, decoded, in partition order.

    It reads at least up to the end offsets the broker reports when it starts (a slow first fetch on a loaded machine is
    no end of the topic), then until a poll brings nothing (the broker's end offsets may lag what it serves).
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps) if tps else {}
        deadline = time.monotonic() + 60
        records: list[dict[str, Any]] = []
        while True:
            polled = consumer.poll(timeout_ms=1500, max_records=10_000)
            if not polled and (all(consumer.position(tp) >= ends[tp] for tp in tps) or time.monotonic() > deadline):
                return records
            for messages in polled.values():
                records += [orjson.loads(m.value) for m in messages]
    finally:
        consumer.close()


def settings_for(bootstrap: str, redis_url: str, unique: str, **kafka: Any) -> Settings:
    return load_settings(
        overrides={
            "app": f"e2e-{unique}",
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topic": f"in-{unique}",
                "predictions_topic": f"pred-{unique}",
                "metrics_topic": f"metrics-{unique}",
                "dead_letter_topic": f"dlq-{unique}",
                "topic_partitions": 2,
                "idle_timeout_s": 1.5,
                **kafka,
            },
            "redis": {"url": redis_url},
            "snapshot": {"signing_key": SIGNING_KEY, "every_events": 500},
            "labels": {"window_size": 1000, "window_seconds": 600},
        },
        environ={},
    )


def build_stream(seed: int = 5) -> tuple[list[tuple[bytes | None, bytes]], list[tuple[bytes, bytes]], dict[str, int]]:
    """Input messages (key, value) and label messages, and what they should produce."""
    rng = random.Random(seed)
    source = SyntheticSource("sea", seed=seed, every=800, concepts=3)
    inputs: list[tuple[bytes | None, bytes]] = []
    labels: list[tuple[bytes, bytes]] = []
    expect = {"valid": 0, "malformed": 0, "labels": 0, "malformed_labels": 0, "late": 0}
    for event in itertools.islice(source.read_from(0), 2400):
        features = {str(k): v for k, v in event.features.items()}
        if rng.random() < 0.1:  # a second model key whose labels come later, on the labels topic
            doc = {"id": f"late-{event.offset}", "features": features, "key": "late"}
            inputs.append((b"late", orjson.dumps(doc)))
            expect["late"] += 1
            if rng.random() < 0.8:
                labels.append((b"late", orjson.dumps({"id": doc["id"], "label": event.label})))
        else:
            label = None if rng.random() < 0.05 else event.label  # some predict-only events
            inputs.append((b"default", orjson.dumps({"id": f"e-{event.offset}", "features": features, "label": label})))
        expect["valid"] += 1
        if event.offset % 97 == 0:
            inputs.append((None, rng.choice([b"not json", b'{"features": {}}', b'{"features": {"a": 1}, "label": [1]}', b"[1, 2]"])))
            expect["malformed"] += 1
    labels += [(b"late", orjson.dumps({"id": f"nobody-{i}", "label": True})) for i in range(15)]  # unmatched
    expect["labels"] = len(labels)
    labels += [(b"late", b'{"label": true}'), (b"late", b"{oops")]  # malformed labels
    expect["malformed_labels"] = 2
    return inputs, labels, expect


def produce_all(settings: Settings, inputs: list[tuple[bytes | None, bytes]], labels: list[tuple[bytes, bytes]] = ()) -> None:
    k = settings.kafka
    ensure_topics(k.client_config(), [k.input_topic, k.labels_topic or ""], k.topic_partitions)
    producer = make_producer(k.client_config())
    for key, value in inputs:
        producer.send(k.input_topic, key=key, value=value)
    for key, value in labels:
        producer.send(k.labels_topic, key=key, value=value)
    producer.flush()
    producer.close()


def last_metrics(records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return [r for r in records if r["type"] == "metrics" and r["key"] == key][-1]


def test_kafka_run_end_to_end(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, embedded_run) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, unique, labels_topic=f"labels-{unique}")
    inputs, labels, expect = build_stream()
    produce_all(settings, inputs, labels)

    summary = run_kafka(settings, ENGINE, handle_signals=False)

    k = settings.kafka
    predictions = read_topic(kafka_bootstrap, k.predictions_topic)
    metrics = read_topic(kafka_bootstrap, k.metrics_topic)
    dead = read_topic(kafka_bootstrap, k.dead_letter_topic)
    input_dead = [d for d in dead if d["origin"]["topic"] == k.input_topic]
    label_dead = [d for d in dead if d["origin"]["topic"] == k.labels_topic]
    # every input ends as a prediction or a dead letter, exactly once (no crash, so no repeats)
    assert len(predictions) == expect["valid"] and len({p["id"] for p in predictions}) == expect["valid"]
    assert len(input_dead) == expect["malformed"] and len(label_dead) == expect["malformed_labels"]
    assert len(inputs) == len(predictions) + len(input_dead) == summary["events"]
    assert all(d["error"].startswith(("invalid", "model error", "schema")) and d["raw"] for d in dead)
    # every delayed label is accounted for
    late = last_metrics(metrics, "late")
    counts = late["delayed_labels"]
    assert counts["matched"] + counts["expired"] + counts["unmatched"] + counts["waiting"] == expect["labels"]
    assert counts["waiting"] == 0 and counts["unmatched"] >= 15 and counts["matched"] > 0.5 * expect["late"]
    assert late["labelled"] == counts["matched"]
    assert {n: c for n, c in summary["delayed_labels"].items() if n != "pending"} == {n: c for n, c in counts.items() if n != "pending"}

    # the same input bytes through the embedded run (JSONL file): same learner, same accuracy
    embedded, local = embedded_run([value for _, value in inputs], ENGINE, SIGNING_KEY)
    assert embedded["predictions"] + embedded["dead_letters"] == len(inputs)
    embedded_metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    ours, theirs = last_metrics(metrics, "default"), last_metrics(embedded_metrics, "default")
    for name in ("events", "labelled", "accuracy", "accuracy_window", "drifts", "concepts"):
        assert ours[name] == theirs[name], name
    assert ours["drifts"] >= 1  # the stream drifts, and the service saw it

    # Redis holds the snapshots; the latest restores to a learner predicting like the embedded one
    store = RedisSnapshotStore.from_url(redis_url, app=settings.app)
    try:
        assert set(store.keys()) == {"default", "late"} and len(store.versions("default")) > 1
        header, payload, refusals = load_latest_valid(store, "default", SIGNING_KEY.encode())
        assert refusals == [] and header.events_seen == ours["events"]
        from_redis = KeyedLearner.restore(payload, ENGINE)
        from_file = KeyedLearner.restore(load_latest_valid(local, "default", SIGNING_KEY.encode())[1], ENGINE)
        assert [from_redis.learner.predict(x) for x in PROBE] == [from_file.learner.predict(x) for x in PROBE]
    finally:
        store.delete("default")
        store.delete("late")


def test_a_tampered_snapshot_is_refused_and_the_service_resumes_from_the_previous_one(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, embedded_run
) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, unique, poll_max_records=100, max_batch_records=100)
    inputs, _, _ = build_stream(seed=8)
    inputs = [(key, value) for key, value in inputs if key == b"default"][:1200]
    produce_all(settings, inputs[:1000])
    run_kafka(settings, ENGINE, handle_signals=False)  # snapshots after 500 and 1000 events, and a final one
    store = RedisSnapshotStore.from_url(redis_url, app=settings.app)
    try:
        versions = store.versions("default")
        assert len(versions) == 3
        headers = [read_header(store.load("default", v)) for v in versions]
        assert [h.events_seen for h in headers] == [500, 1000, 1000]
        newest, middle = (f"{store._keys('default')['v']}{v}" for v in versions[:0:-1])
        store.client.set(newest, store.client.get(newest)[:-3] + b"xyz")  # its bytes altered
        forged = seal(b"not a learner", signing_key=b"attacker", key="default", learner_kind="river", strategy="none", events_seen=1000, source_offsets={})
        store.client.set(middle, forged)  # a consistent envelope under a wrong signature

        produce_all(settings, inputs[1000:])  # 200 more events on the same topic
        summary = run_kafka(settings, ENGINE, handle_signals=False)

        assert summary["restored_keys"] == ["default"]
        refusals = summary["snapshot_refusals"]
        assert len(refusals) == 2 and "checksum" in refusals[0] and "signature" in refusals[1]
        # resumed from the 500-event version: skipped what it had learned, learned the other 700
        assert summary["predictions"] == 700
        header, payload, _ = load_latest_valid(store, "default", SIGNING_KEY.encode())
        assert header.events_seen == 1200
        _, local = embedded_run([value for _, value in inputs], ENGINE, SIGNING_KEY)
        uninterrupted = KeyedLearner.restore(load_latest_valid(local, "default", SIGNING_KEY.encode())[1], ENGINE)
        resumed = KeyedLearner.restore(payload, ENGINE)
        assert [resumed.learner.predict(x) for x in PROBE] == [uninterrupted.learner.predict(x) for x in PROBE]
    finally:
        store.delete("default")


def test_produce_and_run_from_the_command_line(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "STREAM_LEARNER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_LEARNER_KAFKA__INPUT_TOPIC": f"cli-in-{unique}",
        "STREAM_LEARNER_KAFKA__LABELS_TOPIC": f"cli-labels-{unique}",
        "STREAM_LEARNER_REDIS__URL": redis_url,
        "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY,
        "STREAM_LEARNER_APP": f"cli-{unique}",
    }
    cli = [sys.executable, "-m", "stream_learner.app.cli"]

    def call(*args: str) -> dict[str, Any]:
        done = subprocess.run([*cli, *args, "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    sent = call("produce", "--source", "synthetic:agrawal?every=300&concepts=2", "--delayed-fraction", "0.3", "--label-delay", "20")
    assert sent["events"] == 600 and sent["labels"] == sent["delayed"] > 100
    summary = call(
        "run", "--source", "kafka", "--predictions-topic", f"cli-pred-{unique}", "--metrics-topic", f"cli-metrics-{unique}",
        "--dead-letter-topic", f"cli-dlq-{unique}", "--stop-when-idle", "1.5", "--snapshot-every", "200",
    )
    assert summary["events"] == summary["predictions"] == 600 and summary["dead_letters"] == 0
    counts = summary["delayed_labels"]
    assert counts["matched"] + counts["expired"] + counts["unmatched"] + counts["waiting"] == sent["labels"]
    assert counts["matched"] == sent["labels"]  # the window is far larger than the delay
    assert summary["labelled"] == 600 and summary["snapshots"] >= 2
    listing = call("snapshots", "list")
    assert [entry["key"] for entry in listing] == ["default"]
    assert all(v["verified"] for v in listing[0]["versions"])
    shown = call("snapshots", "show", "default")
    assert shown["verified"] and shown["events_seen"] == 600
    oldest = next(v["version"] for v in listing[0]["versions"] if v["kind"] == "regular")  # a boundary version (its drift's) is no resume point
    assert call("snapshots", "restore", "default", str(oldest))["latest"] == oldest
    assert call("snapshots", "delete", "default", "--yes")["latest"] is None



def test_a_bad_model_on_the_kafka_path_is_a_config_error_and_stops_the_kafka_children(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, unique)
    assert multiprocessing.active_children() == []
    with pytest.raises(ConfigError, match="new-label boundaries need a classification model"):
        run_kafka(settings, EngineConfig(learner=LearnerSpec("linreg"), new_label_gap=10), handle_signals=False)
    assert multiprocessing.active_children() == []  # the children start first (to overlap their start-up) and are stopped
