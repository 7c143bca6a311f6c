"""Errors raised by the model itself: never a half-updated model, never a stopped stream.

The guarantee: a ``predict`` that raises makes its event a ``model_error``
dead letter and nothing is learned from it; a ``learn`` (or a boundary)
that raises puts the key's learner back as it was before that step, so the
model is exactly the model of a stream without that event; an evaluation
that fails is logged and counted, and the end of the stream still gives
its metrics and snapshot.
"""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import pytest
from river import base

from stream_learner.delayed import LabelRecord
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import Journal, LearnerSpec
from stream_learner.learners.river import RiverLearner
from stream_learner.learners.strategy import RiverStrategy, RiverStrategyLearner


class Tally(base.Classifier):
    """Predicts the most frequent label. ``learn_one`` updates its counts, then raises on ``boom``: a learn that fails half-way.

    ``predict_proba_one`` raises on ``bad``, and on everything once it has learned ``break_after`` examples.
    """

    def __init__(self, break_after: int | None = None) -> None:
        self.break_after = break_after
        self.counts: Counter[Any] = Counter()
        self.seen: list[float] = []

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        self.counts[y] += 1
        self.seen.append(x["x"])
        if x.get("boom"):
            raise RuntimeError("boom")

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        if x.get("bad") or (self.break_after is not None and len(self.seen) >= self.break_after):
            raise ValueError("cannot predict this")
        total = sum(self.counts.values())
        return {label: n / total for label, n in self.counts.items()}


def _events(pairs: list[tuple[dict[str, Any], Any]], start: int = 0) -> list[Event]:
    return [Event(f"e{start + i}", "default", x, y, None, 0, start + i) for i, (x, y) in enumerate(pairs)]


def _pairs(n: int) -> list[tuple[dict[str, Any], Any]]:
    return [({"x": float(i), "boom": 0.0, "bad": 0.0}, "ab"[i % 3 == 0]) for i in range(n)]


def _step(model: Any = None, **config: Any) -> KeyedLearner:
    return KeyedLearner("default", EngineConfig(detector=None, **config), learner_factory=lambda spec: RiverLearner(model if model is not None else Tally()))


def _feed(step: KeyedLearner, events: list[Any], batch: int = 10) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    predictions: dict[str, Any] = {}
    dead: list[dict[str, Any]] = []
    for i in range(0, len(events), batch):
        out = step.process(events[i : i + batch], now=0.0)
        predictions.update((p["id"], p["proba"]) for p in out.predictions)
        dead += out.dead_letters
    return predictions, dead


@pytest.mark.parametrize("max_log", [Journal.MAX_LOG, 7])  # 7: several checkpoints come before the failure
def test_a_learn_that_raises_half_way_leaves_the_model_as_if_the_event_never_came(monkeypatch: pytest.MonkeyPatch, max_log: int) -> None:
    monkeypatch.setattr(Journal, "MAX_LOG", max_log)
    pairs = _pairs(60)
    boom = ({"x": 1000.0, "boom": 1.0, "bad": 0.0}, "b")
    step = _step()
    predictions, dead = _feed(step, _events(pairs[:33] + [boom] + pairs[33:]))
    assert (len(predictions), [(d["reason"], d["error"], d["origin"]["offset"]) for d in dead]) == (60, [("model_error", "model error: RuntimeError: boom", 33)])
    clean = _step()
    clean_predictions, _ = _feed(clean, _events(pairs))
    model, clean_model = step.learner.model, clean.learner.model
    assert (model.counts, model.seen) == (clean_model.counts, clean_model.seen)  # 1000.0 and its count are gone
    assert [predictions[f"e{i + 1}"] for i in range(33, 60)] == [clean_predictions[f"e{i}"] for i in range(33, 60)]
    assert (step.events, step.learned, step.metrics.labelled) == (60, 60, 60)
    if max_log == 7:
        assert len(step.guard.journal.xs) < 60  # the rollback replayed from a checkpoint, not from the start


def test_a_predict_that_raises_makes_a_dead_letter_and_nothing_is_learned() -> None:
    pairs = _pairs(20)
    step = _step()
    predictions, dead = _feed(step, _events(pairs[:10] + [({"x": 500.0, "boom": 0.0, "bad": 1.0}, "a")] + pairs[10:]))
    assert (len(predictions), [d["error"] for d in dead]) == (20, ["model error: ValueError: cannot predict this"])
    assert 500.0 not in step.learner.model.seen and step.learned == 20


def test_a_delayed_label_whose_learn_raises_leaves_the_model_unchanged() -> None:
    step = _step(label_window=10)
    _feed(step, _events(_pairs(20) + [({"x": 7.5, "boom": 1.0, "bad": 0.0}, None)]))
    counts, seen = Counter(step.learner.model.counts), list(step.learner.model.seen)
    out = step.process([LabelRecord("e20", "default", "a")], now=1.0)
    assert [d["reason"] for d in out.dead_letters] == ["model_error"] and '"id":"e20"' in out.dead_letters[0]["raw"]
    assert (step.learner.model.counts, step.learner.model.seen, step.learned) == (counts, seen, 20)


class FailingBoundary(RiverStrategy):
    """At a boundary: changes the model, then raises."""

    def on_boundary(self, model: Any) -> Any:
        model.counts["corrupted"] += 1000
        raise RuntimeError("consolidation failed")


def test_a_boundary_that_raises_is_rolled_back_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    step = KeyedLearner("default", EngineConfig(detector=None, metrics_every=10), learner_factory=lambda spec: RiverStrategyLearner(Tally(), [FailingBoundary()], RiverLearner))
    pairs = _pairs(30)
    events = [Event(f"e{i}", "default", x, y, "first" if i < 15 else "second", 0, i) for i, (x, y) in enumerate(pairs)]
    predictions, dead = _feed(step, events)
    assert (len(predictions), dead, step.failures, step.concept) == (30, [], 1, 1)
    assert "corrupted" not in step.learner.model.counts and len(step.learner.model.seen) == 30
    assert step.metrics_record(0.0)["failures"] == 1
    assert "the boundary of concept 1 failed (RuntimeError: consolidation failed)" in caplog.text


def test_the_end_of_the_stream_with_a_broken_model_still_gives_metrics_and_a_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    step = _step(Tally(break_after=25))
    predictions, dead = _feed(step, _events(_pairs(40)))
    assert (len(predictions), len(dead)) == (25, 15) and {d["reason"] for d in dead} == {"model_error"}
    out = step.finish(now=1.0)
    assert out.snapshot is not None and KeyedLearner.restore(out.snapshot.payload, step.config).events == 25
    assert out.metrics[-1]["events"] == 25 and out.metrics[-1]["failures"] == 1
    assert "evaluating the concepts' samples failed (ValueError: cannot predict this)" in caplog.text


def test_a_snapshot_holds_no_journal_and_a_restored_learner_can_roll_back() -> None:
    step = _step()
    _feed(step, _events(_pairs(30)))
    assert b"Journal" not in step.snapshot().payload
    restored = KeyedLearner.restore(step.snapshot().payload, step.config)
    restored.process(_events([({"x": 99.0, "boom": 1.0, "bad": 0.0}, "a")], start=30), now=0.0)
    assert restored.learner.model.seen == step.learner.model.seen


def test_a_strategy_that_replaces_the_model_mid_batch_gets_the_rest_of_the_batch() -> None:
    """A boundary's new model learns the events after it in the same batch (the step kept calling the old one's methods)."""
    pairs = [({"x": v}, v > 0.5 if j < 500 else v < 0.5) for j, v in ((j, j * 37 % 100 / 100) for j in range(1000))]
    events = _events(pairs)
    config = EngineConfig(learner=LearnerSpec("logreg", strategy="reset"))
    whole, one_by_one = KeyedLearner("default", config), KeyedLearner("default", config)
    batched = whole.process(events, now=0.0).predictions
    single = [p for event in events for p in one_by_one.process([event], now=0.0).predictions]
    assert whole.drifts == one_by_one.drifts >= 1
    assert [p["prediction"] for p in batched] == [p["prediction"] for p in single]
    assert pickle.dumps(whole.learner.model) == pickle.dumps(one_by_one.learner.model)


class MicroBatches:
    """Buffers labelled examples and trains on every three; an update with a ``poison`` example among them raises (after counting half of them)."""

    family = "river"
    task = "classification"

    def __init__(self) -> None:
        self.counts: Counter[Any] = Counter()
        self.pending: list[tuple[dict[str, Any], Any]] = []

    def predict(self, x: dict[str, Any]) -> tuple[Any, dict[Any, float] | None]:
        return (self.counts.most_common(1)[0][0] if self.counts else None), None

    def learn(self, x: dict[str, Any], y: Any) -> None:
        self.pending.append((x, y))
        if len(self.pending) == 3:
            batch, self.pending = self.pending, []
            self.counts.update(y for _, y in batch[:2])
            if any(x.get("poison") for x, _ in batch):
                raise RuntimeError("update failed")
            self.counts.update(y for _, y in batch[2:])

    def on_boundary(self, concept: int) -> None:
        """Nothing to consolidate."""

    def drop_buffered(self) -> int:
        dropped, self.pending = len(self.pending), []
        return dropped


def test_a_failed_micro_batch_is_dropped_whole_and_the_next_ones_train() -> None:
    """Its earlier examples, buffered again by the rollback, would fail every later update; they are dropped, and its dead letter says so."""
    pairs = [({"x": float(i), "poison": float(i == 10)}, "ab"[i % 4 == 0]) for i in range(30)]
    step = KeyedLearner("default", EngineConfig(detector=None), learner_factory=lambda spec: MicroBatches())
    predictions, dead = _feed(step, _events(pairs))
    assert (len(predictions), [(d["origin"]["offset"], d["error"]) for d in dead]) == (
        29,
        [(11, "model error: RuntimeError: update failed (with its micro-batch's 2 earlier examples, not learned)")],
    )
    clean = MicroBatches()
    for x, y in pairs[:9] + pairs[12:]:
        clean.learn(x, y)
    assert (step.learner.counts, step.learner.pending) == (clean.counts, clean.pending)


def test_a_restored_torch_learner_rolls_back_to_the_state_it_was_restored_as() -> None:
    """Its optimizer's state may be the restored state's own tensors: learning must not change the checkpoint the rollback replays from."""
    config = EngineConfig(learner=LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5, "optimizer": "adam"}, seed=4), detector=None)
    first, later = _events(_pairs(20)), _events(_pairs(40)[20:], start=20)
    for event in first + later:
        event.features = {"x": event.features["x"] / 40.0}
    step = KeyedLearner("default", config)
    step.process(first, now=0.0)
    payload = step.snapshot().payload
    restored = KeyedLearner.restore(payload, config)
    restored.process(later, now=0.0)
    rolled_back = restored.guard.journal.rollback()  # the checkpoint, with every step since replayed
    probes = [{"x": i / 10.0} for i in range(10)]
    assert [rolled_back.predict(x) for x in probes] == [restored.learner.predict(x) for x in probes]
    replayed = KeyedLearner.restore(payload, config).learner
    for event in later:
        replayed.learn(event.features, event.label)
    assert [replayed.predict(x) for x in probes] == [restored.learner.predict(x) for x in probes]
