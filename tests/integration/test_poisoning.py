"""Model poisoning: one record of the wrong kind cannot break a key's model, through the real CLI, file source and broker.

The reproduction of issue 14: 300 Agrawal events, one string label, 300
more, ``--model hoeffding_tree``. Before the schema guard every later event
was a ``model error`` dead letter and the run died in ``on_eof`` without its
final snapshot. Each test counts inputs, predictions and dead letters, and
compares what the events after the bad record got with a run without it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from river import base
from river.datasets import synth
from test_kafka_e2e import produce_all, read_topic, settings_for

from connectors.local_store import LocalSnapshotStore
from stream_learner.app.kafka_run import run_kafka
from stream_learner.app.runner import RunOptions, run
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import load_latest_valid

pytestmark = pytest.mark.integration

KEY = b"poisoning-test-key"


def _agrawal(n: int = 600) -> list[dict[str, Any]]:
    return [{"features": x, "label": y} for x, y in itertools.islice(synth.Agrawal(seed=42), n)]


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _cli_run(source: Path, out: Path, model: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {**os.environ, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": KEY.decode()}
    done = subprocess.run(
        [sys.executable, "-m", "stream_learner.app.cli", "run", "--source", f"file:{source}", "--model", model, "--out", str(out), "--json", *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    summary = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
    return done, summary


def _read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _by_offset(out: Path) -> dict[int, tuple[Any, Any]]:
    """Predictions by offset, probabilities to 6 decimals: a torch network predicts a batch of a different size (the poisoned run's) with its float32 sums in another order."""
    return {int(p["id"].rpartition(":")[2]): (p["prediction"], _rounded(p["proba"])) for p in _read(out / "predictions.jsonl")}


def _rounded(proba: dict[str, float] | None) -> dict[str, float] | None:
    return None if proba is None else {label: round(q, 6) for label, q in proba.items()}


def _final_snapshot(out: Path, engine: EngineConfig) -> KeyedLearner:
    found = load_latest_valid(LocalSnapshotStore(out / "snapshots"), "default", KEY)
    assert found is not None
    return KeyedLearner.restore(found[1], engine)


def _poisoned_run(tmp_path: Path, bad: dict[str, Any], model: str = "hoeffding_tree", *extra: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, Any], dict[int, Any]]:
    """Agrawal with ``bad`` inserted at offset 300, and the clean stream: (summary, dead letters, predictions by offset, clean predictions by offset)."""
    records = _agrawal()
    done, summary = _cli_run(_write(tmp_path / "bad.jsonl", records[:300] + [bad] + records[300:]), tmp_path / "out", model, *extra)
    assert done.returncode == 0, done.stderr
    clean_done, _ = _cli_run(_write(tmp_path / "clean.jsonl", records), tmp_path / "clean", model, *extra)
    assert clean_done.returncode == 0, clean_done.stderr
    return summary, _read(tmp_path / "out" / "dead_letters.jsonl"), _by_offset(tmp_path / "out"), _by_offset(tmp_path / "clean")


def _assert_nothing_changed(predictions: dict[int, Any], clean: dict[int, Any]) -> None:
    assert sorted(predictions) == [*range(300), *range(301, 601)]
    assert [predictions[i] for i in range(301, 601)] == [clean[i] for i in range(300, 600)]
    assert [predictions[i] for i in range(300)] == [clean[i] for i in range(300)]


def test_one_string_label_among_agrawal_integers_is_one_dead_letter_and_the_tree_stays_whole(tmp_path: Path) -> None:
    bad = {"features": _agrawal(301)[300]["features"], "label": "yes"}
    summary, dead, predictions, clean = _poisoned_run(tmp_path, bad)
    assert (summary["events"], summary["predictions"], summary["dead_letters"], summary["labelled"]) == (601, 600, 1, 600)
    assert [(d["reason"], d["error"], d["origin"]["offset"]) for d in dead] == [("schema", "schema: label is str ('yes') but this key's labels are int", 300)]
    _assert_nothing_changed(predictions, clean)
    final = _final_snapshot(tmp_path / "out", EngineConfig(learner=LearnerSpec("hoeffding_tree")))
    assert (final.events, final.learned, final.failures) == (600, 600, 0)


def test_a_feature_that_turns_into_a_string_is_one_dead_letter(tmp_path: Path) -> None:
    features = {**_agrawal(301)[300]["features"], "age": "fifty"}
    summary, dead, predictions, clean = _poisoned_run(tmp_path, {"features": features, "label": 1})
    assert (summary["events"], summary["predictions"], summary["dead_letters"]) == (601, 600, 1)
    assert [(d["reason"], d["error"]) for d in dead] == [("schema", "schema: feature 'age' is str ('fifty') but this key has learned it as a number")]
    _assert_nothing_changed(predictions, clean)


def test_a_torch_learner_is_guarded_by_the_same_step(tmp_path: Path) -> None:
    bad = {"features": _agrawal(301)[300]["features"], "label": "yes"}
    params = json.dumps({"batch_size": 16, "hidden": [16]})
    summary, dead, predictions, clean = _poisoned_run(tmp_path, bad, "torch:mlp", "--model-params", params)
    assert (summary["events"], summary["predictions"], summary["dead_letters"]) == (601, 600, 1)
    assert [d["reason"] for d in dead] == ["schema"]
    _assert_nothing_changed(predictions, clean)
    final = _final_snapshot(tmp_path / "out", EngineConfig(learner=LearnerSpec("torch:mlp", json.loads(params))))
    assert sorted(final.learner.classes) == [0, 1]


def test_a_record_with_40000_new_features_is_one_dead_letter_and_the_tree_stays_as_small(tmp_path: Path) -> None:
    """Learned, that one record made a Hoeffding tree 1.5 GB larger, its snapshot 156 MB, and every later event 100x slower."""
    features = {**_agrawal(301)[300]["features"], **{f"f{i}": 1.0 for i in range(40_000)}}
    summary, dead, predictions, clean = _poisoned_run(tmp_path, {"features": features, "label": 1})
    assert (summary["events"], summary["predictions"], summary["dead_letters"]) == (601, 600, 1)
    assert [(d["reason"], d["origin"]["offset"]) for d in dead] == [("schema", 300)]
    assert "40,000 features this key has not learned" in dead[0]["error"] and "(--max-features)" in dead[0]["error"]
    _assert_nothing_changed(predictions, clean)
    sizes = [len(LocalSnapshotStore(tmp_path / run / "snapshots").load_latest("default")[1] or b"") for run in ("out", "clean")]
    assert sizes[0] == pytest.approx(sizes[1], rel=0.05), sizes  # the final snapshot: the clean run's tree


def test_max_features_raises_the_limit_for_a_stream_that_needs_more(tmp_path: Path) -> None:
    records = [{"features": {f"pixel{j}": float((i * j) % 7) for j in range(1_500)}, "label": i % 2} for i in range(40)]
    done, summary = _cli_run(_write(tmp_path / "wide.jsonl", records), tmp_path / "default", "logreg")
    assert done.returncode == 0, done.stderr
    assert (summary["predictions"], summary["dead_letters"], summary["dead_letter_reasons"]["schema"]["count"]) == (0, 40, 40)
    assert summary["dead_letter_reasons"]["schema"]["example"].endswith("over the limit of 1,000 (--max-features)")  # the flag to raise
    done, summary = _cli_run(_write(tmp_path / "wide.jsonl", records), tmp_path / "raised", "logreg", "--max-features", "2000")
    assert done.returncode == 0, done.stderr
    assert (summary["predictions"], summary["dead_letters"]) == (40, 0)


class BrokenModel(base.Classifier):
    """A river classifier that cannot predict anything once it has learned 100 examples: a model broken for good."""

    def __init__(self) -> None:
        self.seen = 0

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        self.seen += 1

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        if self.seen >= 100:
            raise RuntimeError("this model is broken")
        return {0: 0.5, 1: 0.5}


def test_a_model_broken_for_good_still_ends_its_run_with_a_final_snapshot(tmp_path: Path) -> None:
    records = _agrawal(300)
    engine = EngineConfig(learner=LearnerSpec("test_poisoning.BrokenModel"), forgetting_every=50)
    summary = run(RunOptions(source=f"file:{_write(tmp_path / 'in.jsonl', records)}", engine=engine, out=tmp_path / "out", progress=False, console=False, signing_key=KEY))
    dead = _read(tmp_path / "out" / "dead_letters.jsonl")
    assert (summary["events"], summary["predictions"], summary["dead_letters"]) == (300, 100, 200)
    assert {d["reason"] for d in dead} == {"model_error"} and sorted(d["origin"]["offset"] for d in dead) == list(range(100, 300))
    final = _final_snapshot(tmp_path / "out", engine)
    assert (final.events, final.learned) == (100, 100) and final.failures >= 1
    assert _read(tmp_path / "out" / "metrics.jsonl")[-1]["failures"] == final.failures


def test_a_delayed_label_of_the_wrong_kind_through_the_broker_is_one_dead_letter(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    """400 Agrawal events, the last 100 unlabelled; a second run (restored from Redis) reads their labels, one of them a string."""
    settings = settings_for(kafka_bootstrap, redis_url, unique, labels_topic=f"labels-{unique}", topic_partitions=1)
    records = _agrawal(400)
    produce_all(settings, [(b"default", orjson.dumps({"id": f"e{i}", **r, "label": r["label"] if i < 300 else None})) for i, r in enumerate(records)])
    engine = EngineConfig(learner=LearnerSpec("hoeffding_tree"), metrics_every=100)
    run_kafka(settings, engine, handle_signals=False)
    labels = [(b"default", orjson.dumps({"id": f"e{i}", "label": records[i]["label"]})) for i in range(300, 400)]
    labels.insert(50, (b"default", orjson.dumps({"id": "e350", "label": "yes"})))  # before e350's own label: refused, e350 still waits
    produce_all(settings, [], labels)
    run_kafka(settings, engine, handle_signals=False)
    k = settings.kafka
    predictions = read_topic(kafka_bootstrap, k.predictions_topic)
    dead = read_topic(kafka_bootstrap, k.dead_letter_topic)
    metrics = [m for m in read_topic(kafka_bootstrap, k.metrics_topic) if m["type"] == "metrics"]
    assert (len(predictions), len({p["id"] for p in predictions})) == (400, 400)
    assert [(d["reason"], d["error"]) for d in dead] == [("schema", "schema: label is str ('yes') but this key's labels are int")]
    assert '"id":"e350"' in dead[0]["raw"]
    delayed = metrics[-1]["delayed_labels"]
    assert (delayed["matched"], delayed["unmatched"], delayed["waiting"], metrics[-1]["labelled"]) == (100, 0, 0, 400)
