"""Per-event latency and the page's fine accuracy points, through the real runs: an embedded file run and a Kafka run on the real broker.

The latency histogram counts every published prediction once, each
between 0 and the run's wall time; the page's fine points are the accuracy
of each 100 labelled predictions of a key, exactly as its published
predictions and its events' labels say, and outnumber its metrics records.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_kafka_e2e import read_topic

from connectors.kafka import ensure_topics, make_producer
from stream_learner.app.accuracy_points import POINT_EVERY
from stream_learner.app.kafka_run import run_kafka
from stream_learner.app.runner import RunOptions, run
from stream_learner.app.telemetry import Telemetry
from stream_learner.engine import EngineConfig
from stream_learner.learners.base import LearnerSpec
from stream_learner.settings import load_settings

pytestmark = pytest.mark.integration

ENGINE = EngineConfig(learner=LearnerSpec("hoeffding_tree"), metrics_every=500)


class _Recording(Telemetry):
    """A Telemetry that also keeps every ``(seconds, count)`` latency it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[tuple[float, int]] = []

    def on_latency(self, latencies: list[tuple[float, int]]) -> None:
        self.told.extend(latencies)
        super().on_latency(latencies)


def _events(n: int, seed: int) -> list[dict[str, Any]]:
    """Two keys' events: a threshold concept on ``x`` (flipped half-way), one in ten unlabelled."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        x = rng.random()
        label = (x > 0.5) != (i >= n // 2)
        events.append({"id": f"e{i}", "key": "ab"[i % 3 == 0], "features": {"x": x, "noise": rng.random()}, "label": None if i % 10 == 7 else label})
    return events


def _check_latency(telemetry: _Recording, summary: dict[str, Any], wall: float) -> None:
    predictions = summary["predictions"]
    assert predictions > 0
    assert sum(n for _, n in telemetry.told) == predictions == telemetry.sample("stream_learner_event_latency_seconds_count")
    assert summary["latency"]["events"] == predictions
    assert all(0 <= seconds <= wall for seconds, _ in telemetry.told), (min(telemetry.told), max(telemetry.told), wall)
    assert 0 < summary["latency"]["p50_seconds"] <= summary["latency"]["p99_seconds"]
    page = telemetry.state()["latency"]
    assert page["events"] == predictions and sum(point[3] for point in page["points"]) == predictions  # every prediction in some interval's point


def _check_fine_points(telemetry: Telemetry, events: list[dict[str, Any]], predictions: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> None:
    labels = {e["id"]: e["label"] for e in events}
    for key in ("a", "b"):
        published = [p for p in predictions if p["key"] == key]  # in the key's order: one learner per key
        scored = [(position, p["prediction"] == labels[p["id"]]) for position, p in enumerate(published, start=1) if labels[p["id"]] is not None]
        expected = [
            [scored[end - 1][0], sum(right for _, right in scored[end - POINT_EVERY : end]) / POINT_EVERY]
            for end in range(POINT_EVERY, len(scored) + 1, POINT_EVERY)
        ]
        fine = telemetry.state(key)["keys"][key]["fine_points"]
        assert [p[0] for p in fine] == [p[0] for p in expected] and [p[1] for p in fine] == pytest.approx([p[1] for p in expected])
        records = [m for m in metrics if m["type"] == "metrics" and m["key"] == key]
        assert len(fine) > len(records) >= 2


@pytest.mark.parametrize("workers", [1, 2])
def test_an_embedded_run_measures_every_prediction_and_draws_finer_accuracy(tmp_path: Path, workers: int) -> None:
    events = _events(4000, seed=workers)
    lines = [json.dumps(e) for e in events]
    lines[100:100] = ["{not json", ""]  # dead letters: no prediction, no latency
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    telemetry = _Recording()
    started = time.time()
    summary = run(
        RunOptions(source=f"file:{path}", engine=ENGINE, out=tmp_path / "out", workers=workers, progress=False, console=False, telemetry=telemetry)
    )
    wall = time.time() - started
    assert summary["predictions"] == 4000 and summary["dead_letters"] == 2
    _check_latency(telemetry, summary, wall)
    predictions = [orjson.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_bytes().splitlines()]
    metrics = [orjson.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_bytes().splitlines()]
    _check_fine_points(telemetry, events, predictions, metrics)


def test_a_kafka_run_measures_every_prediction_from_the_consumer_batch(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    events = _events(3000, seed=5)
    topics = {name: f"lat-{name}-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    client = {"bootstrap_servers": kafka_bootstrap}
    ensure_topics(client, [topics["in"]], 1)
    producer = make_producer(client)
    for e in events:
        producer.send(topics["in"], key=e["key"].encode(), value=orjson.dumps(e))
    producer.send(topics["in"], value=b"{broken")
    producer.flush()
    producer.close()
    settings = load_settings(
        overrides={
            "app": f"lat-{unique}",
            "kafka": {
                "bootstrap_servers": kafka_bootstrap, "input_topic": topics["in"], "predictions_topic": topics["pred"],
                "metrics_topic": topics["metrics"], "dead_letter_topic": topics["dlq"], "idle_timeout_s": 1.5,
            },
            "redis": {"url": redis_url},
            "snapshot": {"signing_key": "latency-test"},
        },
        environ={},
    )  # fmt: skip
    telemetry = _Recording()
    started = time.time()
    summary = run_kafka(settings, ENGINE, handle_signals=False, telemetry=telemetry)
    wall = time.time() - started
    assert summary["predictions"] == 3000 and summary["dead_letters"] == 1
    _check_latency(telemetry, summary, wall)
    predictions = read_topic(kafka_bootstrap, topics["pred"])
    assert len(predictions) == 3000
    _check_fine_points(telemetry, events, predictions, read_topic(kafka_bootstrap, topics["metrics"]))
