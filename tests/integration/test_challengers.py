"""Challengers in shadow and promotion on evidence through the real run: a JSONL file embedded, and Kafka with Redis.

The stream's concept is a band (``0.3 < x1 < 0.7``): a Hoeffding tree learns
it, a logistic regression cannot, so the tree challenging a logistic champion
must be promoted, once, early; only the champion's predictions are
published, one per event; the snapshot in the store restores the slot with
the tree as champion; and the Kafka run promotes at the same event, on the
same evidence, as the embedded run of the same bytes.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_eviction import read as read_records
from test_eviction import run_file, without_ts
from test_kafka_e2e import SIGNING_KEY, produce_all, read_topic, settings_for

from connectors.files import JsonlFileSource
from connectors.kafka import make_producer
from connectors.local_store import LocalSnapshotStore
from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.kafka_run import run_kafka
from stream_learner.app.runner import RunOptions, run
from stream_learner.control import Command, sign_command
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event, MetricsRecord, PromotionRecord, ShadowPrediction
from stream_learner.learners.base import LearnerSpec
from stream_learner.slot import Slot, restore_step
from stream_learner.snapshot import load_latest_valid

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("stream-learner"))

EVENTS = 1500
ENGINE = EngineConfig(
    learner=LearnerSpec("logreg"),
    challengers=(LearnerSpec("hoeffding_tree"),),
    detector=None,
    metrics_every=250,
    promotion_window=200,
    min_champion_events=200,
)


def band(seed: int = 3, n: int = EVENTS) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        x1, x2 = rng.random(), rng.random()
        events.append({"id": f"e-{i}", "features": {"x1": x1, "x2": x2}, "label": 0.3 < x1 < 0.7})
    return events


def check_outputs(predictions: list[dict[str, Any]], outputs: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    """One prediction per event, one promotion (logreg -> tree), every candidate's metrics; the promotion record."""
    assert [p["id"] for p in predictions] == [e["id"] for e in events]
    [promotion] = [r for r in outputs if r["type"] == "promotion"]
    PromotionRecord.model_validate(promotion)
    assert (promotion["champion"], promotion["challenger"], promotion["applied"]) == ("logreg", "hoeffding_tree", True)
    assert promotion["at_event"] in (200, 400) and promotion["evidence"]["p_value"] < ENGINE.promotion_alpha
    metrics = [r for r in outputs if r["type"] == "metrics"]
    for record in metrics:
        MetricsRecord.model_validate(record)
    last = {r["candidate"]: r for r in metrics}
    assert last["hoeffding_tree"]["champion"] and not last["logreg"]["champion"]
    assert last["hoeffding_tree"]["accuracy"] > last["logreg"]["accuracy"] + 0.1
    # from the event after the decision on, the stream is published from the tree: its predictions are a standalone tree's on the same events
    tree = KeyedLearner("default", EngineConfig(learner=LearnerSpec("hoeffding_tree"), detector=None))
    out = tree.process([Event(e["id"], "default", e["features"], e["label"], None, 0, i) for i, e in enumerate(events)], 0.0)
    at = promotion["at_event"]
    assert [p["prediction"] for p in predictions][at:] == [row[1] for row in out.predictions.rows][at:]  # type: ignore[union-attr]
    return promotion


def embedded(tmp_path: Path, events: list[dict[str, Any]], batch_size: int | None = None) -> tuple[Path, dict[str, Any]]:
    """The embedded run of ``events`` as a JSONL file (read ``batch_size`` records a batch; ``None``: the source's default): its output folder and summary."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    out = tmp_path / f"out-{batch_size}"
    options = RunOptions(engine=ENGINE, out=out, progress=False, console=False, signing_key=SIGNING_KEY.encode())
    if batch_size is None:
        return out, run(replace(options, source=f"file:{path}"))
    return out, run(options, source=JsonlFileSource(str(path), batch_size=batch_size))


def read(out: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def test_an_embedded_run_promotes_the_better_challenger_and_snapshots_the_slot(tmp_path: Path) -> None:
    events = band()
    out, summary = embedded(tmp_path, events)
    assert summary["predictions"] == EVENTS
    check_outputs(read(out, "predictions.jsonl"), read(out, "metrics.jsonl"), events)
    found = load_latest_valid(LocalSnapshotStore(out / "snapshots"), "default", SIGNING_KEY.encode())
    assert found is not None
    slot = restore_step(found[1], ENGINE)
    assert isinstance(slot, Slot) and slot.champion_name == "hoeffding_tree" and slot.events == EVENTS


@pytest.mark.parametrize("batch_size", [1_000, 10_000])
def test_an_embedded_run_publishes_the_same_records_in_batches_of_any_size(tmp_path: Path, batch_size: int) -> None:
    """A whole file in one batch of 10,000, or in batches of 1,000: the promotion is published at its event, the tree from the next one on, as in batches of 100."""
    events = band()
    small, _ = embedded(tmp_path, events, batch_size=100)
    large, summary = embedded(tmp_path, events, batch_size=batch_size)
    assert summary["predictions"] == EVENTS and summary["promotions"] == 1
    check_outputs(read(large, "predictions.jsonl"), read(large, "metrics.jsonl"), events)
    assert without_ts(read(large, "predictions.jsonl")) == without_ts(read(small, "predictions.jsonl"))
    assert sorted(map(orjson.dumps, without_ts(read(large, "metrics.jsonl")))) == sorted(map(orjson.dumps, without_ts(read(small, "metrics.jsonl"))))


def test_a_kafka_run_promotes_as_the_embedded_run_and_redis_holds_the_slot(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, unique, shadow_topic=f"shadow-{unique}")
    events = band()
    produce_all(settings, [(b"default", orjson.dumps(e)) for e in events])
    summary = run_kafka(settings, replace(ENGINE, shadow_predictions=True), handle_signals=False)
    assert summary["events"] == EVENTS
    k = settings.kafka
    promotion = check_outputs(read_topic(kafka_bootstrap, k.predictions_topic), read_topic(kafka_bootstrap, k.metrics_topic), events)
    shadow = read_topic(kafka_bootstrap, f"shadow-{unique}")  # the shadow topic: the challenger's prediction of every event
    assert sorted(r["id"] for r in shadow) == sorted(e["id"] for e in events) and {r["candidate"] for r in shadow} == {"hoeffding_tree", "logreg"}
    out, _ = embedded(tmp_path, events)
    [same] = [r for r in read(out, "metrics.jsonl") if r["type"] == "promotion"]
    assert {**promotion, "ts": 0} == {**same, "ts": 0}  # the same event, on the same evidence, however the run was batched
    store = RedisSnapshotStore.from_url(redis_url, app=settings.app)
    try:
        found = load_latest_valid(store, "default", SIGNING_KEY.encode())
        assert found is not None
        slot = restore_step(found[1], ENGINE)
        assert isinstance(slot, Slot) and slot.champion_name == "hoeffding_tree" and slot.events == EVENTS
    finally:
        store.delete("default")


def test_the_command_line_runs_challengers_and_a_resumed_run_keeps_the_promoted_champion(tmp_path: Path) -> None:
    """``stream-learner run --challenger ...`` as users type it; ``--resume`` on more events goes on from the slot, the tree still champion."""
    half = 1000
    events = band(n=2 * half)
    first, second = tmp_path / "first.jsonl", tmp_path / "all.jsonl"
    first.write_bytes(b"\n".join(orjson.dumps(e) for e in events[:half]) + b"\n")
    second.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")  # a file that grew: the resumed run reads on from its offsets
    options = ["--model", "logreg", "--challenger", "hoeffding_tree", "--promotion-window", "200", "--min-champion-events", "200"]
    options += ["--drift-detector", "none", "--metrics-every", "250", "--json", "--out", "o"]

    def cli(source: Path, *more: str) -> dict[str, Any]:
        result = subprocess.run([CLI, "run", "--source", f"file:{source}", *options, *more], capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    summary = cli(first)
    assert summary["predictions"] == half and summary["promotions"] == 1
    resumed = cli(second, "--resume")
    assert resumed["predictions"] == half and resumed.get("promotions", 0) == 0  # the second half only; no new promotion
    outputs = read(tmp_path / "o", "metrics.jsonl")
    human = subprocess.run([CLI, "run", "--source", f"file:{first}", *options[:-3], "--out", "h"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert human.returncode == 0, human.stderr  # the console shows the promotion and the champion's metrics only
    assert "promotion  key=default  at event " in human.stderr and ": hoeffding_tree replaces logreg (mcnemar" in human.stderr
    assert human.stderr.count("metrics  key=default") == len([r for r in read(tmp_path / "h", "metrics.jsonl") if r["type"] == "metrics" and r["champion"]])
    last = [r for r in outputs if r["type"] == "metrics"][-2:]
    assert {(r["candidate"], r["champion"], r["events"]) for r in last} == {("hoeffding_tree", True, 2 * half), ("logreg", False, 2 * half)}


def test_evicted_and_restored_slots_publish_what_resident_ones_do(tmp_path: Path) -> None:
    """Keys with challengers, evicted to the store and restored many times (at most 3 resident of 10): the same predictions, metrics and promotions."""
    engine = EngineConfig(
        learner=LearnerSpec("logreg"), challengers=(LearnerSpec("hoeffding_tree"),), metrics_every=20, snapshot_seconds=0,
        promotion_window=40, min_champion_events=40, promotion_alpha=0.05,
    )  # fmt: skip
    lines = [orjson.dumps({**e, "key": f"k{i % 10}"}) for i, e in enumerate(band(n=1200))]
    free = run_file(tmp_path, "free", lines, engine, batch_size=30)
    bound = run_file(tmp_path, "bound", lines, engine, max_resident_keys=3, batch_size=30)
    assert bound["evictions"]["count"] >= 50 and free["evictions"]["count"] == 0
    assert without_ts(read_records(tmp_path / "bound" / "predictions.jsonl")) == without_ts(read_records(tmp_path / "free" / "predictions.jsonl"))
    metrics = without_ts(read_records(tmp_path / "free" / "metrics.jsonl"))
    assert without_ts(read_records(tmp_path / "bound" / "metrics.jsonl")) == metrics
    assert any(r["type"] == "promotion" for r in metrics)  # the promotion path ran through evictions too


def test_an_operator_promotes_a_challenger_through_the_control_topic(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    """Auto-promotion off: only a signed ``promote`` command makes the tree champion, applied once (its replay a duplicate); an unsigned one is a dead letter."""
    settings = settings_for(kafka_bootstrap, redis_url, unique, control_topic=f"control-{unique}")
    engine = replace(ENGINE, auto_promote=False)
    events = band()
    produce_all(settings, [(b"default", orjson.dumps(e)) for e in events])
    promote = sign_command(Command("op-1", "default", "promote", "hoeffding_tree", time.time()), SIGNING_KEY.encode())
    unsigned = orjson.dumps({"id": "op-2", "key": "default", "action": "promote", "arg": "logreg", "issued_at": time.time()})
    producer = make_producer(settings.kafka.client_config())
    for value in (promote, unsigned, promote):
        producer.send(settings.kafka.control_topic, key=b"default", value=value)
    producer.flush()
    producer.close()

    run_kafka(settings, engine, handle_signals=False)
    k = settings.kafka
    outputs = read_topic(kafka_bootstrap, k.metrics_topic)
    answers = [(r["id"], r["status"]) for r in outputs if r["type"] == "control"]
    assert answers == [("op-1", "applied"), ("op-1", "duplicate")]
    assert [d["reason"] for d in read_topic(kafka_bootstrap, k.dead_letter_topic)] == ["unsigned_command"]
    assert not any(r["applied"] for r in outputs if r["type"] == "promotion")  # recommendations at most
    assert len(read_topic(kafka_bootstrap, k.predictions_topic)) == EVENTS
    store = RedisSnapshotStore.from_url(redis_url, app=settings.app)
    try:
        found = load_latest_valid(store, "default", SIGNING_KEY.encode())
        assert found is not None
        slot = restore_step(found[1], engine)
        assert isinstance(slot, Slot) and slot.champion_name == "hoeffding_tree"  # only the command could have promoted it
    finally:
        store.delete("default")


def test_a_kafka_run_never_promotes_a_worse_challenger(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    """The tree as champion, the logistic regression challenging it: never promoted, however many windows it is tested on."""
    settings = settings_for(kafka_bootstrap, redis_url, unique)
    engine = replace(ENGINE, learner=LearnerSpec("hoeffding_tree"), challengers=(LearnerSpec("logreg"),))
    produce_all(settings, [(b"default", orjson.dumps(e)) for e in band(seed=4, n=2 * EVENTS)])
    run_kafka(settings, engine, handle_signals=False)
    outputs = read_topic(kafka_bootstrap, settings.kafka.metrics_topic)
    assert not [r for r in outputs if r["type"] == "promotion"]
    last = {r["candidate"]: r for r in outputs if r["type"] == "metrics"}
    assert last["hoeffding_tree"]["champion"] and last["hoeffding_tree"]["events"] == 2 * EVENTS
    RedisSnapshotStore.from_url(redis_url, app=settings.app).delete("default")


def test_an_embedded_run_writes_the_challengers_predictions_when_asked(tmp_path: Path) -> None:
    """OUT/shadow_predictions.jsonl: the challenger's prediction for every event it is not champion of, naming it; the published ones are the champion's."""
    events = band()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    out = tmp_path / "out"
    run(RunOptions(source=f"file:{path}", engine=replace(ENGINE, shadow_predictions=True), out=out, progress=False, console=False, signing_key=SIGNING_KEY.encode()))
    published, shadow = read(out, "predictions.jsonl"), read(out, "shadow_predictions.jsonl")
    for record in shadow:
        ShadowPrediction.model_validate(record)
    by_id = {r["id"]: r for r in shadow}
    assert len(by_id) == len(shadow) == EVENTS  # one shadow prediction per event: the tree's before its promotion, logreg's after
    assert {r["candidate"] for r in shadow} == {"hoeffding_tree", "logreg"}
    [promotion] = [r for r in read(out, "metrics.jsonl") if r["type"] == "promotion"]
    switch = next(i for i, e in enumerate(events) if by_id[e["id"]]["candidate"] == "logreg")
    assert switch == promotion["at_event"]  # the event after the decision's is the first the tree is champion of
    assert all(by_id[e["id"]]["candidate"] == "logreg" for e in events[switch:])  # promoted once
    assert [p["id"] for p in published] == [e["id"] for e in events]
