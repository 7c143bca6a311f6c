from __future__ import annotations

import pickle
from typing import Any

import pytest
from river import linear_model, tree

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.events import DriftRecord, Event, MetricsRecord, Prediction
from stream_learner.learners.base import LearnerSpec


def _events(pairs: list[tuple[dict[str, Any], Any]], task: Any = None, start: int = 0) -> list[Event]:
    return [Event(f"e{i}", "default", x, y, task, 0, i) for i, (x, y) in enumerate(pairs, start=start)]


def test_predictions_are_test_then_train_like_a_plain_river_loop(drift_pairs) -> None:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec("hoeffding_tree")))
    out = step.process(_events(drift_pairs), now=0.0)
    model = tree.HoeffdingTreeClassifier()
    expected = []
    for x, y in drift_pairs:
        expected.append(model.predict_one(x))
        model.learn_one(x, y)
    assert [p["prediction"] for p in out.predictions] == expected
    assert [p["model_version"] for p in out.predictions[:3]] == [0, 1, 2]


def test_outputs_honour_their_contracts(drift_pairs) -> None:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec("hoeffding_tree"), metrics_every=500))
    out = step.process(_events(drift_pairs), now=5.0)
    for p in out.predictions[:50]:
        proba = p["proba"] and {str(k): v for k, v in p["proba"].items()}
        Prediction.model_validate({**p, "proba": proba})
    assert out.predictions[0]["proba"] is None and out.predictions[-1]["proba"]
    kinds = {r["type"] for r in out.metrics}
    assert kinds == {"metrics", "drift"}
    for r in out.metrics:
        (MetricsRecord if r["type"] == "metrics" else DriftRecord).model_validate(r)


def test_unlabelled_events_are_predicted_but_not_learned() -> None:
    step = KeyedLearner("default", EngineConfig())
    out = step.process(_events([({"x": 1.0}, None), ({"x": 2.0}, True), ({"x": 3.0}, None)]), now=0.0)
    assert len(out.predictions) == 3
    assert (step.events, step.learned, step.metrics.labelled) == (3, 1, 1)


def test_drift_detection_starts_a_new_concept(drift_pairs) -> None:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec("hoeffding_tree")))
    out = step.process(_events(drift_pairs), now=0.0)
    drifts = [r for r in out.metrics if r["type"] == "drift"]
    assert drifts and step.drifts == len(drifts)
    assert step.concepts == step.drifts + 1
    assert [d["concept"] for d in drifts] == list(range(1, len(drifts) + 1))
    first = drifts[0]["at_event"]
    assert out.predictions[first]["concept"] == 1 and out.predictions[first - 1]["concept"] == 0


def test_explicit_tasks_own_the_concepts_and_recurring_tasks_return_to_their_column() -> None:
    step = KeyedLearner("default", EngineConfig(detector=None))
    pairs = [({"x": float(i)}, i % 2 == 0) for i in range(30)]
    events = _events(pairs[:10], task="a") + _events(pairs[10:20], task="b", start=10) + _events(pairs[20:], task="a", start=20)
    out = step.process(events, now=0.0)
    assert [p["concept"] for p in out.predictions] == [0] * 10 + [1] * 10 + [0] * 10
    assert [(r["detector"], r["at_event"]) for r in out.metrics if r["type"] == "drift"] == [("task", 10), ("task", 20)]
    assert step.concepts == 2


def test_an_event_that_contradicts_the_schema_produces_a_dead_letter_and_goes_on() -> None:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec("river.linear_model.LogisticRegression")))
    out = step.process(_events([({"x": 1.0}, True), ({"x": "text"}, True), ({"x": 2.0}, False)]), now=0.0)
    assert [p["id"] for p in out.predictions] == ["e0", "e2"]
    assert len(out.dead_letters) == 1 and out.dead_letters[0]["reason"] == "schema"
    assert out.dead_letters[0]["origin"]["offset"] == 1


def test_restored_learner_behaves_identically_on_the_next_events(drift_pairs) -> None:
    config = EngineConfig(learner=LearnerSpec("hoeffding_tree"))
    events = _events(drift_pairs)
    step = KeyedLearner("default", config)
    step.process(events[:1500], now=0.0)
    restored = KeyedLearner.restore(step.snapshot().payload, config)
    a = step.process(events[1500:], now=0.0)
    b = restored.process(events[1500:], now=0.0)
    assert a.predictions == b.predictions and a.metrics == b.metrics
    assert (step.events, step.drifts) == (restored.events, restored.drifts)


def test_restored_learner_skips_events_it_has_already_learned(drift_pairs) -> None:
    config = EngineConfig()
    events = _events(drift_pairs)
    step = KeyedLearner("default", config)
    step.process(events[:100], now=0.0)
    restored = KeyedLearner.restore(step.snapshot().payload, config)
    out = restored.process(events[50:200], now=0.0)
    assert [p["id"] for p in out.predictions] == [f"e{i}" for i in range(100, 200)]
    assert restored.events == 200


def test_restore_refuses_a_snapshot_of_another_model() -> None:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec("logreg")))
    with pytest.raises(SnapshotError, match="holds model 'logreg'"):
        KeyedLearner.restore(step.snapshot().payload, EngineConfig(learner=LearnerSpec("hoeffding_tree")))
    with pytest.raises(SnapshotError, match="not a learner"):
        KeyedLearner.restore(pickle.dumps({"a": 1}), EngineConfig())


def test_snapshots_are_emitted_every_n_events_and_at_the_end(drift_pairs) -> None:
    step = KeyedLearner("default", EngineConfig(snapshot_every=1000))
    events = _events(drift_pairs)
    emitted = [step.process(events[i : i + 250], now=0.0).snapshot for i in range(0, 3000, 250)]
    assert [s.events_seen for s in emitted if s] == [1000, 2000, 3000]
    final = step.finish(now=0.0)
    assert final.snapshot.source_offsets == {0: 3000}
    assert final.metrics[0]["events"] == 3000


def test_regression_models_report_mae_and_refuse_binary_detectors() -> None:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec("linreg")))
    step.process(_events([({"x": float(i)}, 2.0 * i) for i in range(200)]), now=0.0)
    record = step.metrics_record(0.0)
    assert record["accuracy"] is None and record["mae"] is not None
    with pytest.raises(ConfigError, match="needs a classification model"):
        KeyedLearner("default", EngineConfig(learner=LearnerSpec("linreg"), detector="ddm"))


def test_unknown_models_and_bad_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        KeyedLearner("k", EngineConfig(learner=LearnerSpec("nope")))
    with pytest.raises(ConfigError, match="cannot import model"):
        KeyedLearner("k", EngineConfig(learner=LearnerSpec("river.nope.Model")))
    with pytest.raises(ConfigError, match="bad parameters for model 'logreg'"):
        KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg", {"bogus": 1})))
    with pytest.raises(ConfigError, match="neither a river classifier nor a river regressor"):
        KeyedLearner("k", EngineConfig(learner=LearnerSpec("river.preprocessing.StandardScaler")))


def test_dotted_path_with_params_builds_that_model() -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("river.linear_model.LogisticRegression", {"l2": 0.5})))
    assert isinstance(step.learner.model, linear_model.LogisticRegression) and step.learner.model.l2 == 0.5


def test_a_torch_learner_predicts_a_whole_batch_as_it_would_one_event_at_a_time() -> None:
    """The engine announces each batch (``lookahead``); the torch learner batches its forward passes."""
    import random

    rng = random.Random(3)
    events = []
    for i in range(400):
        label = rng.randrange(3) if i < 200 else rng.randrange(3, 5)  # new classes half-way: the output layer grows
        features = {f"f{j}": (label == j % 5) + rng.gauss(0, 0.3) for j in range(6)}
        events.append(Event(str(i), "k", features, label if i % 5 else None, None, 0, i))
    config = EngineConfig(learner=LearnerSpec("torch:mlp", {"batch_size": 8, "hidden": [16]}, seed=1), metrics_every=50)
    together, alone = KeyedLearner("k", config), KeyedLearner("k", config)
    together.process(events[:1], now=0.0)  # the model exists from the first event on
    alone.process(events[:1], now=0.0)
    passes = []
    forward = together.learner._predict_rows
    together.learner._predict_rows = lambda rows: passes.append(len(rows)) or forward(rows)
    batched = together.process(events[1:], now=0.0).predictions
    single = [p for e in events[1:] for p in alone.process([e], now=0.0).predictions]
    assert len(passes) < len(events) / 4  # one forward pass per stretch between updates, not one per event
    assert [p["prediction"] for p in batched] == [p["prediction"] for p in single]
    for b, s in zip(batched, single):
        assert b["proba"] == pytest.approx(s["proba"], abs=1e-5)
    assert together.learner.updates == alone.learner.updates > 20
    assert together.drifts == alone.drifts and together.metrics.correct == alone.metrics.correct


def test_concepts_are_evaluated_in_one_batched_call_with_the_one_by_one_accuracies() -> None:
    import random

    rng = random.Random(5)
    events = []
    for i in range(300):
        task = i // 100
        label = rng.randrange(2) + 2 * task
        events.append(Event(str(i), "k", {f"f{j}": (label == j) + rng.gauss(0, 0.5) for j in range(6)}, label, task, 0, i))
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("torch:mlp", {"batch_size": 5, "hidden": [8]}, seed=2)))
    step.process(events, now=0.0)
    learner = step.learner
    expected = {c: sum(learner.predict(x)[0] == y for x, y in s.items) / len(s.items) for c, s in step.forgetting._samples.items()}
    calls = []
    many = learner.predict_many
    learner.predict_many = lambda xs: calls.append(len(xs)) or many(xs)
    assert step.evaluate_concepts() == expected
    assert calls == [sum(len(s.items) for s in step.forgetting._samples.values())] and len(expected) == 3


def test_by_default_snapshots_follow_the_clock_not_the_event_count() -> None:
    import time

    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg")))
    events = [Event(str(i), "k", {"x": float(i % 2)}, bool(i % 2), None, 0, i) for i in range(30_000)]
    start = time.time()
    assert step.process(events[:20_000], now=start + 1).snapshot is None  # many events, little time
    taken = step.process(events[20_000:20_010], now=start + 31).snapshot  # 30 s later
    assert taken is not None and taken.events_seen == 20_010
    taken.discard()
    assert step.process(events[20_010:], now=start + 40).snapshot is None  # the clock restarted at the last one
    step.finish(now=start + 41)  # collects a rollback checkpoint the last batch may have forked (a slow machine's second passed)


def test_river_argmax_picks_what_river_predict_one_picks() -> None:
    """The learner's argmax equals river's ``max(proba, key=proba.get)``: ties, NaN, one to five labels."""
    import math
    import random

    from stream_learner.learners.river import argmax

    rng = random.Random(7)
    values = [0.0, 0.25, 0.5, 1.0, math.nan]
    for _ in range(5000):
        labels = rng.sample(["a", "b", "c", "d", "e", False, True, 3], rng.randint(1, 5))
        proba = {label: rng.choice(values) for label in labels}
        assert argmax(proba) == max(proba, key=proba.get), proba


def test_metrics_count_errors_in_learning_order_when_delayed_labels_interleave_with_labelled_events(drift_pairs) -> None:
    """Labelled events are scored inline and delayed labels on their own path: both must land in the window in the order learned."""
    from stream_learner.delayed import LabelRecord
    from stream_learner.metrics import Prequential

    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec("logreg"), label_window=1000, window=7, metrics_every=5, detector=None))
    events = _events(drift_pairs[:400])
    late = {e.id for e in events if int(e.id[1:]) % 3 == 0}  # every third label arrives later, a few events after its event
    items: list[Any] = []
    for i, e in enumerate(events):
        items.append(Event(e.id, e.key, e.features, None, None, 0, e.offset) if e.id in late else e)
        if i >= 4 and events[i - 4].id in late:
            items.append(LabelRecord(events[i - 4].id, "default", events[i - 4].label))
    predicted, records = {}, []
    for start in range(0, len(items), 37):  # batches that cut through the pairs
        out = step.process(items[start : start + 37], now=float(start))
        predicted.update((p["id"], p["prediction"]) for p in out.predictions)
        records += [r for r in out.metrics if r["type"] == "metrics"]
    reference, expected = Prequential("classification", window=7), []
    labels = {e.id: e.label for e in events}
    for item in items:  # the learning order: an event's own label at once, a delayed one where it arrives
        if type(item) is LabelRecord or item.label is not None:
            reference.update(labels[item.id], predicted[item.id])
            if reference.labelled % 5 == 0:
                expected.append((reference.labelled, reference.accuracy, reference.accuracy_window))
    assert len(expected) > 50 and reference.labelled == step.metrics.labelled
    assert [(r["labelled"], r["accuracy"], r["accuracy_window"]) for r in records] == expected
