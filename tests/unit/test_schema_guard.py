"""The per-key schema guard: an event or delayed label that contradicts what its key has learned is a dead letter, before the model sees it.

Each test counts what comes out (predictions, dead letters and their
reason) and checks that the rejected record changed nothing: what every
later event gets is what it gets in a run without that record.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from river.datasets import synth

from stream_learner.delayed import LabelRecord
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import MAX_FEATURES, Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.schema import Schema
from stream_learner.settings import RunSettings


def _events(pairs: list[tuple[dict[str, Any], Any]]) -> list[Event]:
    return [Event(f"e{i}", "default", x, y, None, 0, i) for i, (x, y) in enumerate(pairs)]


def _agrawal(n: int = 600) -> list[tuple[dict[str, Any], Any]]:
    return list(itertools.islice(synth.Agrawal(seed=42), n))


def _outputs(step: KeyedLearner, events: list[Any]) -> tuple[dict[str, tuple[Any, Any]], list[dict[str, Any]]]:
    """Predictions by id (label and probabilities) and dead letters, events fed in batches of 50."""
    predictions: dict[str, tuple[Any, Any]] = {}
    dead: list[dict[str, Any]] = []
    for i in range(0, len(events), 50):
        out = step.process(events[i : i + 50], now=0.0)
        predictions.update((p["id"], (p["prediction"], p["proba"])) for p in out.predictions)
        dead += out.dead_letters
    return predictions, dead


def _run(model: str, pairs: list[tuple[dict[str, Any], Any]], **config: Any) -> tuple[KeyedLearner, dict[str, tuple[Any, Any]], list[dict[str, Any]]]:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec(model), **config))
    predictions, dead = _outputs(step, _events(pairs))
    return step, predictions, dead


def _same_later_predictions(bad: dict[str, tuple[Any, Any]], clean: dict[str, tuple[Any, Any]], at: int) -> None:
    """The events after position ``at`` (ids shifted by the one inserted record) got exactly what they get without it."""
    after = {f"e{int(i[1:]) - 1}": p for i, p in bad.items() if int(i[1:]) > at}
    assert after and after == {i: p for i, p in clean.items() if int(i[1:]) >= at}


@pytest.mark.parametrize("model", ["hoeffding_tree", "logreg"])
def test_one_string_label_among_integers_is_a_schema_dead_letter_and_changes_nothing(model: str) -> None:
    pairs = _agrawal()
    poisoned = pairs[:300] + [(pairs[300][0], "yes")] + pairs[300:]
    step, predictions, dead = _run(model, poisoned)
    assert (len(predictions), len(dead)) == (600, 1)
    assert dead[0]["reason"] == "schema" and dead[0]["origin"]["offset"] == 300
    assert dead[0]["error"] == "schema: label is str ('yes') but this key's labels are int"
    assert (step.events, step.learned) == (600, 600)
    clean_step, clean, _ = _run(model, pairs)
    _same_later_predictions(predictions, clean, 300)
    assert clean_step.metrics.accuracy == step.metrics.accuracy


def test_the_old_failure_mode_is_what_the_guard_prevents() -> None:
    """Without the guard's dead letter, the string label reaches the tree and breaks it for good (river's behaviour)."""
    step, _, _ = _run("hoeffding_tree", _agrawal(300))
    x = _agrawal(301)[300][0]
    with pytest.raises(TypeError):
        step.learner.learn(x, "yes")
        for _ in range(200):  # the tree tries to split on the mixed classes at its next grace period
            step.learner.learn(x, 1)
            step.learner.predict(x)


@pytest.mark.parametrize(
    ("labels", "bad", "known"),
    [
        ([0, 1], True, "int"),  # True == 1 and hashes alike: a bool would be taken for the class 1
        ([True, False], 1, "bool"),
        ([True, False], "no", "bool"),
        (["a", "b"], 0, "str"),
        (["a", "b"], 1.5, "str"),
    ],
)
def test_a_label_of_another_kind_is_a_dead_letter_naming_both_types(labels: list[Any], bad: Any, known: str) -> None:
    pairs = [({"x": float(i)}, labels[i % 2]) for i in range(20)]
    step, predictions, dead = _run("hoeffding_tree", pairs[:10] + [({"x": 3.0}, bad)] + pairs[10:])
    assert (len(predictions), [d["reason"] for d in dead]) == (20, ["schema"])
    assert dead[0]["error"] == f"schema: label is {type(bad).__name__} ({bad!r}) but this key's labels are {known}"
    assert step.schema.classes == {labels[0]: type(labels[0]), labels[1]: type(labels[1])}


def test_integers_and_floats_are_one_kind_of_label_and_new_classes_are_learned() -> None:
    pairs = [({"x": float(i % 3)}, [0, 1, 2.0, 1.0, 3][i % 5]) for i in range(50)]
    step, predictions, dead = _run("hoeffding_tree", pairs)
    assert (len(predictions), dead) == (50, [])
    assert step.schema.classes == {0: int, 1: int, 2.0: float, 3: int}  # 1.0 is the class 1


def test_a_regression_model_takes_numbers_only() -> None:
    pairs = [({"x": float(i)}, i * 0.5) for i in range(30)]
    poisoned = pairs[:10] + [({"x": 1.0}, True), ({"x": 1.0}, "12")] + pairs[10:]
    step, predictions, dead = _run("linreg", poisoned, detector=None)
    assert (len(predictions), len(dead)) == (30, 2)
    assert [d["error"] for d in dead] == [
        "schema: label is bool (True) but a regression model learns numbers",
        "schema: label is str ('12') but a regression model learns numbers",
    ]
    _, clean, _ = _run("linreg", pairs, detector=None)
    assert {f"e{int(i[1:]) - 2}": p for i, p in predictions.items() if int(i[1:]) > 11} == {i: p for i, p in clean.items() if int(i[1:]) >= 10}


@pytest.mark.parametrize(
    ("feature", "error"),
    [
        ({"salary": "high"}, "schema: feature 'salary' is str ('high') but this key has learned it as a number"),
        ({"colour": 7}, "schema: feature 'colour' is int (7) but this key has learned it as a string (categorical)"),
    ],
)
def test_a_feature_that_changes_kind_is_a_dead_letter_labelled_or_not(feature: dict[str, Any], error: str) -> None:
    pairs = [({"salary": float(i), "colour": "red" if i % 2 else "blue"}, i % 2) for i in range(40)]
    changed = {**pairs[20][0], **feature}
    poisoned = pairs[:20] + [(changed, 1), (changed, None)] + pairs[20:]
    step, predictions, dead = _run("hoeffding_tree", poisoned)
    assert (len(predictions), [d["error"] for d in dead]) == (40, [error, error])
    assert step.schema.numeric == {"salary"} and step.schema.categorical == {"colour"}
    _, clean, _ = _run("hoeffding_tree", pairs)
    assert {f"e{int(i[1:]) - 2}": p for i, p in predictions.items() if int(i[1:]) > 21} == {i: p for i, p in clean.items() if int(i[1:]) >= 20}


def test_new_features_of_either_kind_are_allowed_and_their_kind_is_fixed_by_the_first_labelled_event() -> None:
    pairs = [({"x": float(i)}, i % 2) for i in range(10)]
    later = [({"x": 1.0, "city": "Oslo"}, None), ({"x": 1.0, "city": 3}, 1), ({"x": 1.0, "city": "Rome"}, 0)]
    step, predictions, dead = _run("hoeffding_tree", pairs + later)
    # the prediction-only event checked "city" but fixed nothing; the first labelled one made it numeric
    assert (len(predictions), [d["error"] for d in dead]) == (12, ["schema: feature 'city' is str ('Rome') but this key has learned it as a number"])
    assert step.schema.numeric == {"x", "city"}


def _late_label_run(labels: list[LabelRecord | None]) -> tuple[KeyedLearner, list[dict[str, Any]], list[dict[str, Any]]]:
    """Forty labelled events, then two unlabelled ones, then the given delayed labels; a label window joins them."""
    step = KeyedLearner("default", EngineConfig(label_window=100, metrics_every=1))
    pairs = [({"x": float(i)}, i % 2) for i in range(40)] + [({"x": 1.0}, None), ({"x": 2.0}, None)]
    out = step.process(_events(pairs), now=0.0)
    late = step.process([r for r in labels if r is not None], now=1.0)
    return step, out.dead_letters + late.dead_letters, late.metrics


def test_a_delayed_label_of_another_kind_is_a_dead_letter_and_its_prediction_waits_for_a_good_one() -> None:
    step, dead, metrics = _late_label_run([LabelRecord("e40", "default", "yes"), LabelRecord("e40", "default", 1), LabelRecord("e41", "default", 0)])
    assert [d["reason"] for d in dead] == ["schema"]
    assert dead[0]["error"] == "schema: label is str ('yes') but this key's labels are int"
    assert '"label":"yes"' in dead[0]["raw"] and '"id":"e40"' in dead[0]["raw"]
    assert step.learned == 42 and step.pending.counts()["matched"] == 2
    clean, _, clean_metrics = _late_label_run([LabelRecord("e40", "default", 1), LabelRecord("e41", "default", 0)])
    assert step.learner.predict({"x": 1.5}) == clean.learner.predict({"x": 1.5})
    assert metrics[-1]["accuracy"] == clean_metrics[-1]["accuracy"]


def test_a_delayed_label_that_came_before_its_event_is_checked_again_when_joined() -> None:
    step = KeyedLearner("default", EngineConfig(label_window=100))
    arrived = step.process([LabelRecord("early", "default", "yes")], now=0.0)  # nothing learned yet: it fits, and waits
    step.process(_events([({"x": float(i)}, i % 2) for i in range(20)]), now=0.0)
    out = step.process([Event("early", "default", {"x": 3.0}, None, None, 0, 20)], now=1.0)
    assert arrived.dead_letters == [] and [p["id"] for p in out.predictions] == ["early"]  # the event is predicted
    assert [d["error"] for d in out.dead_letters] == ["schema: label is str ('yes') but this key's labels are int"]
    assert step.learned == 20 and step.schema.classes == {0: int, 1: int}
    late = step.process([LabelRecord("late", "default", "no")], now=1.0)  # one that arrives now is refused at once
    assert [d["reason"] for d in late.dead_letters] == ["schema"]


def test_the_schema_is_part_of_a_snapshot_and_restored_with_it() -> None:
    config = EngineConfig(learner=LearnerSpec("hoeffding_tree"))
    step, _, _ = _run("hoeffding_tree", [({"x": float(i), "c": "ab"[i % 2]}, i % 2) for i in range(30)])
    restored = KeyedLearner.restore(step.snapshot().payload, config)
    assert (restored.schema.classes, restored.schema.numeric, restored.schema.categorical) == ({0: int, 1: int}, {"x"}, {"c"})
    out = restored.process([Event("e30", "default", {"x": 1.0, "c": "a"}, "one", None, 0, 30)], now=0.0)
    assert [d["reason"] for d in out.dead_letters] == ["schema"] and not out.predictions


def test_a_string_label_among_integers_is_rejected_for_a_torch_learner_too() -> None:
    spec = "torch:mlp"
    pairs = [({"a": float(i % 5), "b": float(i % 3)}, i % 3) for i in range(120)]
    config = {"detector": None}
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec(spec, {"batch_size": 8, "hidden": [8]}), **config))
    predictions, dead = _outputs(step, _events(pairs[:60] + [({"a": 1.0, "b": 1.0}, "yes")] + pairs[60:]))
    assert (len(predictions), [d["reason"] for d in dead]) == (120, ["schema"])
    assert step.learner.classes == [0, 1, 2]
    clean = KeyedLearner("default", EngineConfig(learner=LearnerSpec(spec, {"batch_size": 8, "hidden": [8]}), **config))
    clean_predictions, _ = _outputs(clean, _events(pairs))
    _same_later_predictions(predictions, clean_predictions, 60)


def test_problem_accepts_what_is_new_and_finds_every_contradiction() -> None:
    schema = Schema("classification")
    assert schema.problem({"n": "2"}, "x") is None  # nothing learned yet: anything goes
    schema.learn({"n": 1.0, "c": "x"}, 1)
    assert schema.problem({"n": 2, "c": "y", "new": "z", "other": 3.5}, 0) is None and schema.problem({"n": True}, 1.0) is None
    assert schema.problem({"n": "2"}, None) == "feature 'n' is str ('2') but this key has learned it as a number"
    assert schema.problem({"c": False}, None) == "feature 'c' is bool (False) but this key has learned it as a string (categorical)"
    assert schema.problem({"n": 1.0}, False) == "label is bool (False) but this key's labels are int"
    long = "y" * 100
    assert schema.problem({"n": 1.0}, long) == f"label is str ('{long[:36]}...) but this key's labels are int"


def test_the_quick_test_sends_what_it_cannot_decide_to_the_full_check() -> None:
    """Labels 1 and 1.0 (one class, two types), a huge integer (sum() overflows), strings in categorical features: all learned, none rejected."""
    pairs = [({"n": float(i), "c": "ab"[i % 2]}, [1, 1.0, 0][i % 3]) for i in range(30)] + [({"n": 10**30, "c": "a"}, 0), ({"n": 1.0, "c": "b"}, 1.0)]
    step, predictions, dead = _run("hoeffding_tree", pairs)
    assert (len(predictions), dead, step.learned) == (32, [], 32)
    assert step.schema.classes == {1: int, 0: int}


@pytest.mark.parametrize("model", ["hoeffding_tree", "logreg"])
def test_a_record_with_thousands_of_new_features_is_a_schema_dead_letter_and_changes_nothing(model: str) -> None:
    """A Hoeffding tree that learned one record of 40,000 features held 1.5 GB more and predicted 100x slower after it."""
    pairs = _agrawal()
    poisoned = pairs[:300] + [({**pairs[300][0], **{f"f{i}": 1.0 for i in range(5_000)}}, pairs[300][1])] + pairs[300:]
    step, predictions, dead = _run(model, poisoned)
    assert (len(predictions), len(dead)) == (600, 1)
    assert (dead[0]["reason"], dead[0]["origin"]["offset"]) == ("schema", 300)
    assert dead[0]["error"] == "schema: the event brings 5,000 features this key has not learned, 5,009 in all: over the limit of 1,000 (--max-features)"
    assert (step.events, step.learned, len(step.schema.numeric) + len(step.schema.categorical)) == (600, 600, 9)
    clean_step, clean, _ = _run(model, pairs)
    _same_later_predictions(predictions, clean, 300)
    assert clean_step.metrics.accuracy == step.metrics.accuracy


def test_max_features_counts_what_the_key_learned_and_what_the_event_brings() -> None:
    schema = Schema("classification", max_features=3)
    schema.learn({"a": 1.0, "c": "x"}, 1)
    assert schema.problem({"a": 2.0, "c": "y", "b": 1.0}, 1) is None  # the third: at the limit
    assert schema.problem({"b": 1.0, "d": "z"}, None) == "the event brings 2 features this key has not learned, 4 in all: over the limit of 3 (--max-features)"
    assert schema.problem({"a": 1.0, "c": "x"}, 0) is None  # what it learned always fits
    schema.learn({"b": 1.0}, 1)
    assert schema.problem({"d": "z"}, 1) is not None  # unlabelled or labelled, a fourth is refused
    assert schema.problem({"a": "text"}, 1) == "feature 'a' is str ('text') but this key has learned it as a number"  # a contradiction first


def test_a_key_restored_under_a_lower_max_features_keeps_what_it_learned_and_learns_no_more() -> None:
    step, _, _ = _run("logreg", [({f"x{j}": float(i + j) for j in range(5)}, i % 2) for i in range(20)])
    lower = EngineConfig(learner=LearnerSpec("logreg"), max_features=3)
    restored = KeyedLearner.restore(step.snapshot().payload, lower)
    out = restored.process([Event("e20", "default", {f"x{j}": 1.0 for j in range(5)}, 1, None, 0, 20)], now=0.0)
    assert (len(out.predictions), out.dead_letters) == (1, [])
    out = restored.process([Event("e21", "default", {"x0": 1.0, "new": 2.0}, 1, None, 0, 21)], now=0.0)
    assert [d["reason"] for d in out.dead_letters] == ["schema"] and not out.predictions


def test_the_run_setting_defaults_to_the_engine_s_limit() -> None:
    assert RunSettings().max_features == EngineConfig().max_features == MAX_FEATURES == 1000
