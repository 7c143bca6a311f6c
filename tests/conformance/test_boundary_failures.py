"""One rule for a strategy that fails at a boundary, whatever marked it (an explicit task, a drift, a new label).

The model is put back as it was before the boundary (so it predicts exactly
as a model that never had one), the failure is logged once and counted in
``failures`` (the metrics records carry it), every event is still predicted
and learned, and no event becomes a dead letter: the boundary is no event's fault.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec

MODELS = {
    "river": LearnerSpec("logreg", seed=1),
    "torch": LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=1),
}
N = 600


def _stream(kind: str) -> list[Event]:
    """``N`` seeded events whose concept changes at a third and two thirds, in the way ``kind`` marks it."""
    rng = random.Random(11)
    events = []
    for i in range(N):
        part = 3 * i // N
        x = {f"f{j}": rng.gauss(0.0, 1.0) for j in range(5)}
        positive = x["f0"] > 0
        if kind == "new_label":  # each part brings two classes never seen before
            label: Any = 2 * part + positive
        else:  # the sign of f0, flipped in the middle part
            label = positive != (part == 1)
        task = "ab"[part % 2] if kind == "task" else None  # a, b, then a again
        events.append(Event(f"e{i}", "k", x, label, task, 0, i))
    return events


def _config(kind: str, spec: LearnerSpec, boundaries: bool) -> EngineConfig:
    return EngineConfig(
        learner=spec,
        detector="adwin" if kind == "drift" and boundaries else None,
        new_label_gap=100 if kind == "new_label" and boundaries else 0,
        metrics_every=100,
    )


def _run(step: KeyedLearner, events: list[Event]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    predictions, dead = [], []
    for start in range(0, len(events), 50):  # boundaries fall mid-batch
        out = step.process(events[start : start + 50], now=0.0)
        predictions += list(out.predictions)
        dead += out.dead_letters
    return predictions, dead


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("kind", ["task", "drift", "new_label"])
def test_a_strategy_failing_at_a_boundary_is_rolled_back_counted_and_logged_once(
    broken: None, caplog: pytest.LogCaptureFixture, kind: str, family: str
) -> None:
    caplog.set_level(logging.WARNING)
    events = _stream(kind)
    spec = MODELS[family]
    failing = LearnerSpec(spec.model, spec.params, seed=spec.seed, strategy=f"checks_{family}_boundary_raises")
    step = KeyedLearner("k", _config(kind, failing, boundaries=True))
    predictions, dead = _run(step, events)

    boundaries = step.drifts if kind != "task" else 2
    assert boundaries >= 1 and step.concepts == (1 + boundaries if kind != "task" else 2)
    assert (len(predictions), step.events, step.learned, dead) == (N, N, N, [])
    assert step.failures == boundaries and step.metrics_record(0.0)["failures"] == boundaries
    logged = [r.getMessage() for r in caplog.records if "consolidation failed" in r.getMessage()]
    assert logged == [
        f"model key 'k': the boundary of concept {p['concept']} failed (RuntimeError: consolidation failed); the stream goes on" for p in _firsts(predictions)
    ]

    # the model is exactly one that never had a boundary: the failed ones were undone
    plain = KeyedLearner("k", _config(kind, spec, boundaries=False))
    expected, _ = _run(plain, events)
    assert [p["prediction"] for p in predictions] == [p["prediction"] for p in expected]
    for got, want in zip(predictions, expected):
        assert got["proba"] == pytest.approx(want["proba"], abs=1e-5)


def _firsts(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first prediction of each concept after the first one (where a boundary was taken)."""
    return [p for previous, p in zip(predictions, predictions[1:]) if p["concept"] != previous["concept"]]
