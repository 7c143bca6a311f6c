"""The embedded default end to end: the real dataflow, files out, local snapshots."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import orjson
import pytest
from river import linear_model, metrics, preprocessing, tree

from connectors.synthetic import SyntheticSource
from stream_learner.app.runner import RunOptions, run
from stream_learner.engine import EngineConfig
from stream_learner.events import DeadLetter, MetricsRecord, Prediction
from stream_learner.learners.base import LearnerSpec

pytestmark = pytest.mark.integration

SOURCE = "synthetic:agrawal?every=1500&concepts=3"
PLAIN_MODELS = {
    "logreg": lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
    "hoeffding_tree": lambda: tree.HoeffdingTreeClassifier(),
}


def _read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _plain_river_loop(model_name: str) -> tuple[dict[str, object], float]:
    model, accuracy = PLAIN_MODELS[model_name](), metrics.Accuracy()
    predictions = {}
    for event in itertools.islice(SyntheticSource("agrawal", seed=42, every=1500, concepts=3).read_from(0), 4500):
        y_pred = model.predict_one(event.features)
        accuracy.update(event.label, y_pred)
        model.learn_one(event.features, event.label)
        predictions[event.id] = y_pred
    return predictions, accuracy.get()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("model", ["logreg", "hoeffding_tree"])
def test_engine_predictions_equal_a_plain_river_loop(tmp_path: Path, model: str, workers: int) -> None:
    summary = run(
        RunOptions(source=SOURCE, engine=EngineConfig(learner=LearnerSpec(model)), out=tmp_path, workers=workers, progress=False, console=False)
    )
    expected, expected_accuracy = _plain_river_loop(model)
    got = {p["id"]: p["prediction"] for p in _read(tmp_path / "predictions.jsonl")}
    assert len(got) == 4500
    assert got == expected
    assert summary["accuracy"] == expected_accuracy
    assert summary["events"] == summary["predictions"] == summary["labelled"] == 4500
    assert summary["drifts"] >= 1 and summary["concepts"] == summary["drifts"] + 1


def test_every_line_of_a_bad_file_is_accounted_for(tmp_path: Path) -> None:
    good = [json.dumps({"features": {"a": i, "b": i % 3}, "label": i % 2 == 0}) for i in range(40)]
    bad = [
        "{not json",
        '{"features": {"a": NaN}, "label": true}',
        '{"features": {"a": "x"}, "label": true}',  # a string feature learned as a number: the schema rejects it
        '{"label": true}',
        '{"features": {"a": [1]}, "label": true}',
        '{"features": {"a": 1}, "label": {"x": 1}}',
        "",
        '"just a string"',
    ]
    lines = good[:20] + bad + good[20:]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    summary = run(RunOptions(source=f"file:{path}", out=tmp_path / "out", progress=False, console=False))
    predictions = _read(tmp_path / "out" / "predictions.jsonl")
    dead = _read(tmp_path / "out" / "dead_letters.jsonl")
    assert summary["events"] == len(lines) == 48
    assert summary["events"] == summary["predictions"] + summary["dead_letters"]
    assert (len(predictions), len(dead)) == (40, 8)
    assert sorted(d["origin"]["offset"] for d in dead) == list(range(20, 28))
    for letter in dead:
        DeadLetter.model_validate(letter)
        assert letter["error"] and letter["raw"] == lines[letter["origin"]["offset"]]
    reasons = {d["origin"]["offset"]: d["error"] for d in dead}
    assert reasons[21].startswith("invalid JSON") and reasons[22].startswith("schema: feature 'a' is str")
    assert reasons[23] == "invalid event: features: Field required"
    for p in predictions:
        Prediction.model_validate({**p, "proba": p["proba"]})


def test_metrics_file_holds_valid_metrics_and_drift_records(tmp_path: Path) -> None:
    run(RunOptions(source=SOURCE, engine=EngineConfig(learner=LearnerSpec("hoeffding_tree"), metrics_every=500), out=tmp_path, progress=False, console=False))
    records = _read(tmp_path / "metrics.jsonl")
    assert {r["type"] for r in records} == {"metrics", "drift"}
    final = [r for r in records if r["type"] == "metrics"][-1]
    MetricsRecord.model_validate(final)
    assert final["events"] == 4500


def test_resume_continues_from_the_latest_snapshot_and_appends_to_the_outputs(tmp_path: Path) -> None:
    engine = EngineConfig(learner=LearnerSpec("hoeffding_tree"), metrics_every=500)
    whole = run(RunOptions(source=SOURCE, engine=engine, out=tmp_path / "whole", progress=False, console=False))
    first = run(RunOptions(source=SOURCE, engine=engine, out=tmp_path / "split", max_events=2000, progress=False, console=False))
    second = run(RunOptions(source=SOURCE, engine=engine, out=tmp_path / "split", resume=True, progress=False, console=False))
    assert (first["events"], second["events"]) == (2000, 2500)
    assert second["accuracy"] == whole["accuracy"]
    assert second["labelled"] == 4500

    def untimed(path: Path) -> list[dict]:
        return [{**record, "ts": None} for record in _read(path)]

    # both runs' lines, the second's after the first's: what one uninterrupted run writes
    assert untimed(tmp_path / "split" / "predictions.jsonl") == untimed(tmp_path / "whole" / "predictions.jsonl")
    assert len(_read(tmp_path / "split" / "predictions.jsonl")) == 4500
    events = [m["events"] for m in _read(tmp_path / "split" / "metrics.jsonl") if m["type"] == "metrics"]
    assert events[0] == 500 and events[-1] == 4500 and 2000 in events


def test_resume_appends_after_the_last_complete_line(tmp_path: Path) -> None:
    """A line a crash cut short is dropped (it is no JSON), so the resumed run's records start on a line of their own."""
    run(RunOptions(source=SOURCE, out=tmp_path, max_events=100, progress=False, console=False))
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(path.read_bytes() + b'{"id": "cut sh')
    run(RunOptions(source=SOURCE, out=tmp_path, max_events=100, resume=True, progress=False, console=False))
    assert [p["id"] for p in _read(path)] == [f"{SOURCE.split('?')[0]}:0:{i}" for i in range(200)]


def test_max_events_bounds_a_source_passed_in(tmp_path: Path, drift_pairs) -> None:
    from connectors.memory import MemorySource

    summary = run(RunOptions(out=tmp_path, max_events=250, progress=False, console=False), source=MemorySource(drift_pairs))
    assert summary["events"] == summary["predictions"] == 250


def test_a_resumed_learner_names_this_runs_source_in_its_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    good = [json.dumps({"features": {"a": i}, "label": i % 2 == 0}) for i in range(30)]
    path.write_text("\n".join(good) + "\n")
    run(RunOptions(source=f"file:{path}", out=tmp_path / "out", progress=False, console=False))
    path.write_text("\n".join(good + ['{"features": {"a": "text"}, "label": true}']) + "\n")  # the restored schema rejects it
    summary = run(RunOptions(source=f"file:{path}", out=tmp_path / "out", resume=True, progress=False, console=False))
    assert (summary["events"], summary["dead_letters"]) == (1, 1)
    letter = _read(tmp_path / "out" / "dead_letters.jsonl")[-1]
    assert letter["reason"] == "schema" and letter["origin"] == {"topic": str(path), "partition": 0, "offset": 30}
