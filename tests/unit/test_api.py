"""The Python API: an Engine fed from Python behaves as the service's learner step, and run() is the embedded run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from river import datasets

import stream_learner
from stream_learner.errors import StreamLearnerError


def test_pairs_get_the_predictions_of_an_embedded_run_of_the_same_stream(tmp_path: Path) -> None:
    summary = stream_learner.run("river:phishing", model="hoeffding_tree", out=tmp_path)
    served = [json.loads(line)["prediction"] for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    engine = stream_learner.Engine(model="hoeffding_tree")
    fed = [o.record["prediction"] for o in engine.learn_many(datasets.Phishing()) if o.kind == "prediction"]
    assert len(fed) == summary["events"] == len(served) == 1250
    assert fed == served
    assert engine.metrics()["accuracy"] == pytest.approx(summary["accuracy"])


def test_dicts_are_validated_as_records_are_and_keyed() -> None:
    engine = stream_learner.Engine(detector=None)
    events = [
        {"features": {"x": 1.0}, "label": True, "key": "a"},
        {"features": {"x": 0.0}, "label": False, "key": "b"},
        {"features": [1, 2], "label": True, "key": "c"},
        {"label": True},  # no features
        {"features": {"x": 1.0}, "label": {"nested": 1}},
        {"features": {"x": 2.0}, "label": True, "key": "a", "id": "given"},
        {"features": {"x": float("nan")}, "label": True},  # JSON has no NaN: the service could not receive it either
    ]
    outputs = list(engine.learn_many(events))
    kinds = [o.kind for o in outputs]
    assert kinds.count("prediction") == 4 and kinds.count("dead_letter") == 3
    assert {o.record["reason"] for o in outputs if o.kind == "dead_letter"} == {"invalid_event"}
    assert "finite number" in outputs[-1].record["error"]
    assert sorted(engine.learners) == ["a", "b", "c"]
    assert engine.metrics("a")["labelled"] == 2 and engine.metrics("b")["labelled"] == 1
    assert [o.record["id"] for o in outputs if o.kind == "prediction"] == ["python:0:0", "python:0:1", "python:0:2", "given"]


def test_a_task_switch_is_one_drift_record_and_a_new_concept() -> None:
    engine = stream_learner.Engine(detector=None)
    events = [{"features": {"x": float(i % 2)}, "label": bool(i % 2), "task": i // 50} for i in range(100)]
    outputs = list(engine.learn_many(events))
    drifts = [o.record for o in outputs if o.kind == "drift"]
    assert [(d["detector"], d["at_event"], d["concept"]) for d in drifts] == [("task", 50, 1)]
    assert engine.metrics()["concepts"] == 2


def test_learn_one_and_predict_one_are_river_like() -> None:
    engine = stream_learner.Engine(model="hoeffding_tree", detector=None)
    assert engine.predict_one({"x": 1.0}) is None  # nothing learned yet
    for i in range(200):
        engine.learn_one({"x": float(i % 2)}, bool(i % 2))
    assert engine.metrics()["labelled"] == 200
    assert engine.predict_one({"x": 1.0}) is True and engine.predict_one({"x": 0.0}) is False
    assert engine.metrics()["events"] == 200  # predicting learned nothing
    assert engine.predict_proba_one({"x": 1.0})[True] > 0.5
    with pytest.raises(ValueError, match="features must be a dict"):
        engine.learn_one([1.0], True)  # type: ignore[arg-type]


def test_a_wrong_model_fails_when_the_engine_is_built() -> None:
    with pytest.raises(StreamLearnerError):
        stream_learner.Engine(model="no_such_model")
    with pytest.raises(TypeError, match="no_such_option"):
        stream_learner.Engine(no_such_option=1)


def test_finish_gives_each_keys_final_metrics() -> None:
    engine = stream_learner.Engine(detector=None)
    list(engine.learn_many([({"x": 1.0}, True)] * 10, key="k"))
    final = list(engine.finish())
    assert [(o.kind, o.record["key"], o.record["labelled"]) for o in final] == [("metrics", "k", 10)]


def test_load_model_gives_the_latest_snapshot_of_a_key_to_predict_and_go_on_learning(tmp_path: Path) -> None:
    stream = list(datasets.Phishing())
    events = [{"features": x, "label": y, "key": "shop-1" if i % 2 else "shop-2"} for i, (x, y) in enumerate(stream)]
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    stream_learner.run(f"file:{source}", model="hoeffding_tree", out=tmp_path / "out")
    same = stream_learner.Engine(model="hoeffding_tree")
    list(same.learn_many(events))
    loaded = stream_learner.load_model(tmp_path / "out" / "snapshots", "shop-1")
    assert loaded.metrics("shop-1")["labelled"] == same.metrics("shop-1")["labelled"] == 625
    assert [loaded.predict_proba_one(x, key="shop-1") for x, _ in stream[:50]] == [same.predict_proba_one(x, key="shop-1") for x, _ in stream[:50]]
    more = [e for e in events if e["key"] == "shop-1"][:40]
    assert [o.record["prediction"] for o in loaded.learn_many(more) if o.kind == "prediction"] == [
        o.record["prediction"] for o in same.learn_many(more) if o.kind == "prediction"
    ]
    assert loaded.metrics("shop-1")["labelled"] == 665
    with pytest.raises(StreamLearnerError, match="no valid snapshot of model key 'nobody'"):
        stream_learner.load_model(tmp_path / "out" / "snapshots", "nobody")
    with pytest.raises(StreamLearnerError, match="no snapshot directory"):
        stream_learner.load_model(tmp_path / "nowhere")


def test_input_drift_without_labels_is_a_feature_drift_record_and_a_boundary() -> None:
    rng = random.Random(2)
    engine = stream_learner.Engine(detector=None, feature_drift={"window": 200, "every": 100}, boundaries="feature")
    events = [{"features": {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}} for _ in range(600)]
    events += [{"features": {"a": rng.gauss(3, 1), "b": rng.gauss(0, 1)}} for _ in range(600)]
    outputs = list(engine.learn_many(events))
    moved = [o.record for o in outputs if o.kind == "feature_drift"]
    assert len(moved) == 1 and [f["name"] for f in moved[0]["features"]] == ["a"]
    assert [o.record["detector"] for o in outputs if o.kind == "drift"] == ["feature"]
    assert sum(1 for o in outputs if o.kind == "prediction") == 1200 and engine.metrics()["concepts"] == 2


def _band(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    """A concept no linear model can learn: the label is whether ``a`` falls in a middle band."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        x = {"a": rng.random(), "b": rng.random()}
        pairs.append((x, 0.3 < x["a"] < 0.7))
    return pairs


def test_an_engine_with_a_challenger_promotes_it_when_it_is_better_and_serves_it(tmp_path: Path) -> None:
    engine = stream_learner.Engine("logreg", detector=None, challengers=["hoeffding_tree"], min_champion_events=200, promotion_window=300)
    outputs = list(engine.learn_many(_band(3000, seed=3)))
    promotions = [o.record for o in outputs if o.kind == "promotion"]
    assert [(p["champion"], p["challenger"], p["applied"]) for p in promotions] == [("logreg", "hoeffding_tree", True)]
    assert promotions[0]["evidence"]["challenger_error"] < promotions[0]["evidence"]["champion_error"]
    assert engine.metrics()["candidate"] == "hoeffding_tree"  # the champion's metrics name it
    probe = {"a": 0.5, "b": 0.5}
    assert engine.predict_one(probe) is True  # the tree serves: inside the band


def test_a_slot_snapshot_loads_as_its_champion(tmp_path: Path) -> None:
    stream_learner.run("synthetic:sea", model="logreg", max_events=2000, out=tmp_path, challengers=["hoeffding_tree"])
    model = stream_learner.load_model(tmp_path / "snapshots")
    assert model.metrics()["labelled"] == 2000 and model.config.learner.model in ("logreg", "hoeffding_tree")
