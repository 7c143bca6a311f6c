"""Input drift through Kafka: events with no labels at all, a feature that moves, the records on the metrics topic.

Two model keys on one input topic: on ``shift`` the feature ``f0`` moves by
three standard deviations half-way, on ``steady`` nothing moves. With
``--feature-drift --boundaries feature``, the service publishes one
``feature_drift`` record naming ``f0`` and one concept boundary for
``shift``, nothing for ``steady``, and predicts every event.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import orjson
import pytest
from test_kafka_e2e import read_topic

from connectors.kafka import ensure_topics, make_producer
from stream_learner.events import DriftRecord, FeatureDriftRecord

pytestmark = pytest.mark.integration

EVENTS = 1200  # per key


def test_a_feature_that_moves_without_labels_is_a_feature_drift_on_the_metrics_topic(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    rng = random.Random(7)
    topics = {name: f"fd-{name}-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    config = {"bootstrap_servers": kafka_bootstrap}
    ensure_topics(config, [topics["in"]], 1)
    producer = make_producer(config)
    for i in range(EVENTS):
        for key in ("shift", "steady"):
            mean = 3.0 if key == "shift" and i >= EVENTS // 2 else 0.0
            features = {"f0": rng.gauss(mean, 1.0), "f1": rng.gauss(0.0, 1.0), "colour": rng.choice("rgb")}
            producer.send(topics["in"], key=key.encode(), value=orjson.dumps({"id": f"{key}-{i}", "key": key, "features": features}))
    producer.flush()
    producer.close()
    env = {
        **os.environ,
        "STREAM_LEARNER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_LEARNER_REDIS__URL": redis_url,
        "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": "feature-drift-test",
        "STREAM_LEARNER_APP": f"fd-{unique}",
    }
    command = [
        sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--input-topic", topics["in"],
        "--predictions-topic", topics["pred"], "--metrics-topic", topics["metrics"], "--dead-letter-topic", topics["dlq"],
        "--feature-drift", '{"window": 300, "every": 100}', "--boundaries", "feature", "--stop-when-idle", "1.5", "--json",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["events"] == summary["predictions"] == 2 * EVENTS and summary["dead_letters"] == 0
    assert summary["feature_drifts"] == 1

    records = read_topic(kafka_bootstrap, topics["metrics"])
    moved = [r for r in records if r["type"] == "feature_drift"]
    assert len(moved) == 1
    FeatureDriftRecord.model_validate(moved[0])
    assert moved[0]["key"] == "shift" and moved[0]["features"][0]["name"] == "f0"
    assert EVENTS // 2 < moved[0]["at_event"] <= EVENTS // 2 + 600  # within two windows of the move
    boundaries = [r for r in records if r["type"] == "drift"]
    assert [(b["key"], b["detector"], b["concept"]) for b in boundaries] == [("shift", "feature", 1)]
    DriftRecord.model_validate(boundaries[0])
    predictions = read_topic(kafka_bootstrap, topics["pred"])
    assert len(predictions) == 2 * EVENTS
    assert {p["concept"] for p in predictions if p["key"] == "steady"} == {0}
