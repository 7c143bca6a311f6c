"""Every stateful part of the learner step round-trips through its state.

For each part: ``from_state`` of its ``state_dict()``, written and read back
as a snapshot stores it (:func:`stream_learner.state.encode` /
:func:`~stream_learner.state.decode`), behaves like the original on the
next events, and gives the same ``state_dict()`` again.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from state_checks import assert_same_state

from stream_learner.delayed import PendingWindow
from stream_learner.drift import DriftMonitor, NewLabelWatch
from stream_learner.errors import SnapshotError
from stream_learner.forgetting import ForgettingTracker
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.river import RiverLearner
from stream_learner.learners.strategy import RiverStrategyLearner
from stream_learner.metrics import Prequential
from stream_learner.schema import Schema
from stream_learner.state import decode, encode


def _stored(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as a snapshot gives it back."""
    return decode(encode(state))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_prequential_metrics_go_on_counting_where_they_stopped(task: str) -> None:
    rng = random.Random(3)
    pairs = [(rng.choice([0, 1]), rng.choice([0, 1])) if task == "classification" else (rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(300)]
    original = Prequential(task, window=37)
    for y, p in pairs[:150]:
        original.update(y, p)
    restored = Prequential.from_state(_stored(original.state_dict()))
    assert_same_state(restored.state_dict(), original.state_dict())
    for y, p in pairs[150:]:
        assert restored.update(y, p) == original.update(y, p)
    figures = lambda m: (m.labelled, m.correct, m.accuracy, m.accuracy_window, m.mae, m.rmse)  # noqa: E731
    assert figures(restored) == figures(original) and original.labelled == 300


@pytest.mark.parametrize("name", ["adwin", "kswin", "page_hinkley", "ddm"])
def test_a_drift_monitor_detects_at_the_same_errors_after_a_round_trip(name: str) -> None:
    rng = random.Random(5)
    errors = [float(rng.random() < 0.1) for _ in range(600)] + [float(rng.random() < 0.7) for _ in range(600)]
    original = DriftMonitor(name, seed=7)
    before = [i for i, e in enumerate(errors[:500]) if original.update(e)]
    restored = DriftMonitor.from_state(_stored(original.state_dict()))
    assert_same_state(restored.state_dict(), original.state_dict())
    after = [[i for i, e in enumerate(errors[500:]) if m.update(e)] for m in (original, restored)]
    assert after[0] == after[1] and after[0], (before, after)  # the change at 600 is found, at the same error by both
    restored.reset()  # builds afresh from the restored parameters
    assert restored.params == original.params


def test_a_new_label_watch_keeps_its_labels_and_count_and_takes_the_runs_gap() -> None:
    watch = NewLabelWatch(gap=3)
    for y in [0, 1, 0, 1]:
        watch.update(y)
    restored = NewLabelWatch.from_state(_stored(watch.state_dict()), gap=3)
    assert_same_state(restored.state_dict(), watch.state_dict())
    assert [restored.update(y) for y in [1, 2, 0]] == [watch.update(y) for y in [1, 2, 0]] == [False, True, False]
    assert NewLabelWatch.from_state(watch.state_dict(), gap=50).gap == 50


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_forgetting_tracker_samples_and_scores_as_the_original_would(task: str) -> None:
    rng = random.Random(9)
    events = [(c, {"x": rng.random()}, rng.choice([0, 1]) if task == "classification" else rng.random()) for c in (0, 1, 2) for _ in range(400)]
    original = ForgettingTracker(sample_size=20, max_concepts=2, max_rows=3, holdout=True, seed=1, task=task)
    predict = (lambda x: int(x["x"] > 0.5)) if task == "classification" else (lambda x: x["x"] / 2)
    for concept, x, y in events[:700]:
        original.observe(concept, x, y)
        if rng.random() < 0.01:
            original.evaluate(predict, current=concept)
    restored = ForgettingTracker.from_state(_stored(original.state_dict()))
    assert_same_state(restored.state_dict(), original.state_dict())
    for concept, x, y in events[700:]:
        assert restored.observe(concept, x, y) == original.observe(concept, x, y)  # the reservoirs' RNG goes on alike
    assert restored.evaluate(predict, current=2) == original.evaluate(predict, current=2)
    assert restored.summary() == original.summary() and original.evaluations > 2
    assert_same_state(restored.state_dict(), original.state_dict())


def test_a_pending_window_keeps_its_predictions_labels_ids_and_counts() -> None:
    original = PendingWindow(max_size=3, max_age=10.0)
    original.label("early", 1, now=0.0)
    for i in range(5):
        original.add(f"e{i}", {"x": i}, i % 2, now=float(i))
    original.label("e4", 1, now=5.0)
    original.label("e0", 0, now=5.0)  # expired: pushed out
    restored = PendingWindow.from_state(_stored(original.state_dict()))
    assert_same_state(restored.state_dict(), original.state_dict())
    for window in (original, restored):
        window.label("e4", 0, now=6.0)  # a duplicate: the first label won
        window.label("e3", 1, now=6.0)
        window.add("early", {"x": 9}, 0, now=7.0)
        window.expire(now=13.5)
    assert restored.counts() == original.counts() == {"received": 5, "matched": 3, "expired": 1, "unmatched": 1, "waiting": 0, "pending": 0}
    assert_same_state(restored.state_dict(), original.state_dict())


def test_a_schema_keeps_its_classes_with_their_types_and_its_feature_kinds() -> None:
    schema = Schema("classification")
    schema.learn({"n": 1.0, "c": "x", 3: 2}, 1)
    schema.learn({"m": True}, 2.5)
    restored = Schema.from_state(_stored(schema.state_dict()))
    assert_same_state(restored.state_dict(), schema.state_dict())
    assert (restored.classes, restored.numeric, restored.categorical) == ({1: int, 2.5: float}, {"n", "m", 3}, {"c"})
    for x, y in [({"n": "s"}, None), ({"c": 1.0}, 1), ({"n": 1.0}, "one"), ({"n": 1.0}, True), ({"n": 2.0, "new": "z"}, 2.5)]:
        assert restored.problem(x, y) == schema.problem(x, y) and restored.fits(x, y) == schema.fits(x, y)
    assert Schema.from_state(Schema("regression").state_dict()).problem({}, "a") == "label is str ('a') but a regression model learns numbers"


def _stream(n: int, seed: int = 2) -> list[tuple[dict[str, float], int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = {"a": rng.random(), "b": rng.random()}
        out.append((x, int(x["a"] > x["b"]) if i < n // 2 else int(x["a"] < 0.3)))
    return out


@pytest.mark.parametrize("model", ["logreg", "hoeffding_tree", "hat", "naive_bayes"])
def test_a_river_learner_predicts_and_learns_as_the_original_would(model: str) -> None:
    events = _stream(600)
    original = build_learner(LearnerSpec(model))
    for x, y in events[:300]:
        original.learn(x, y)
    restored = RiverLearner.from_state(_stored(original.state_dict()))
    assert_same_state(restored.state_dict(), original.state_dict())
    for x, y in events[300:]:
        assert restored.predict(x) == original.predict(x)
        restored.learn(x, y)
        original.learn(x, y)
    # (the models' states are not compared again here: river's Gaussian, in a tree's new leaves, draws an unseeded RNG)


@pytest.mark.parametrize("strategy, model", [("reset", "hat"), ("ensemble", "hoeffding_tree")])  # seeded: a reset's clone has the same RNG
def test_a_river_strategy_learner_keeps_its_wrapped_model_and_its_strategies(strategy: str, model: str) -> None:
    spec = LearnerSpec(model, strategy=strategy, strategy_params={"n_models": 2} if strategy == "ensemble" else {})
    events = _stream(600, seed=4)
    original = build_learner(spec)
    for x, y in events[:300]:
        original.learn(x, y)
    original.on_boundary(1)
    for x, y in events[300:400]:
        original.learn(x, y)
    restored = RiverStrategyLearner.from_state(_stored(original.state_dict()), spec)
    assert type(restored.model) is type(original.model)  # an ensemble is not wrapped twice
    assert_same_state(restored.state_dict(), original.state_dict())
    for i, (x, y) in enumerate(events[400:]):
        if i == 100:
            original.on_boundary(2)
            restored.on_boundary(2)
        assert restored.predict(x) == original.predict(x)
        restored.learn(x, y)
        original.learn(x, y)
    # (the models' states are not compared again here: river's Gaussian, in a tree's new leaves, draws an unseeded RNG)


def test_a_part_state_of_a_later_layout_is_refused_in_one_line() -> None:
    state = Prequential("classification").state_dict()
    with pytest.raises(SnapshotError, match=r"^the prequential metrics' state has version 2; this release reads version 1 \(a snapshot of a newer release\?\)$"):
        Prequential.from_state({**state, "version": 2})
