"""Every registered strategy with every learner family it claims (river's ``checks`` are the model).

For each pair: predicting before any learning works, predicting is pure,
a snapshot round-trips exactly (same next predictions and same next
update), clones are independent, and the state stays bounded over a long
stream with many boundaries.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace
from typing import Any

import pytest
import torch

from stream_learner.learners.base import LearnerSpec, build_learner
from strategies.registry import available

MODELS = {
    "torch": LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=1),
    "river": LearnerSpec("logreg", seed=1),
}
SMALL: dict[str, tuple[str, dict[str, Any]]] = {
    "replay": ("replay", {"mem_size": 20}),
    "agem": ("agem", {"sample_size": 8, "patterns_per_experience": 10, "max_experiences": 3}),
    "lamaml": ("lamaml", {"n_inner_updates": 2, "second_order": False, "max_buffer_size": 20, "buffer_mb_size": 5}),
    "ewc": ("ewc", {"mode": "separate", "max_anchors": 2}),
    "avalanche": ("avalanche:avalanche.training.plugins.MASPlugin", {"lambda_reg": 1.0}),
    "ensemble": ("ensemble", {"n_models": 2}),
    "gem": ("gem", {"patterns_per_experience": 10, "max_experiences": 3}),
    "cumulative": ("cumulative", {"max_size": 40, "max_rounds": 3}),
}
"""Small settings (and the plugin the generic adapter runs) so the suite stays fast."""

CASES = [pytest.param(info.name, family, id=f"{info.name}-{family}") for info in available() for family in info.families if family in MODELS]


def _spec(name: str, family: str) -> LearnerSpec:
    strategy, params = SMALL.get(name, (name, {}))
    return replace(MODELS[family], strategy=strategy, strategy_params=params)


def _events(n: int, concept: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    g = torch.Generator().manual_seed(seed * 1000 + concept)
    xs = torch.randn(n, 5, generator=g)
    return [({f"f{j}": float(v) for j, v in enumerate(row)}, bool((row[0] > 0) ^ (concept % 2 == 1))) for row in xs]


def _feed(learner: Any, concepts: range, per_concept: int = 20, seed: int = 0) -> None:
    for c in concepts:
        for x, y in _events(per_concept, c, seed):
            learner.predict(x)
            learner.learn(x, y)
        learner.on_boundary(c + 1)


def _probe() -> list[dict[str, float]]:
    return [x for x, _ in _events(8, 99, 5)]


def _predictions(learner: Any) -> list[Any]:
    out = []
    for x in _probe():
        label, proba = learner.predict(x)
        out.append((label, None if proba is None else {k: round(v, 6) for k, v in proba.items()}))
    return out


def _state(learner: Any) -> bytes:
    return pickle.dumps(learner)


@pytest.mark.parametrize(("name", "family"), CASES)
def test_predicting_before_learning_works(name: str, family: str) -> None:
    learner = build_learner(_spec(name, family))
    label, proba = learner.predict(_probe()[0])
    assert proba is None or isinstance(proba, dict)
    learner.on_boundary(1)  # a boundary before any learning is harmless too
    learner.learn(*_events(1, 0, 0)[0])


@pytest.mark.parametrize(("name", "family"), CASES)
def test_predicting_is_pure(name: str, family: str) -> None:
    learner = build_learner(_spec(name, family))
    _feed(learner, range(2))
    before = _state(learner)
    first = _predictions(learner)
    assert _predictions(learner) == first
    if family == "torch":
        assert _state(learner) == before
    # whatever a library caches while predicting, what the learner does next is unchanged
    untouched = pickle.loads(before)
    _feed(learner, range(2, 3), seed=3)
    _feed(untouched, range(2, 3), seed=3)
    assert _predictions(learner) == _predictions(untouched)


@pytest.mark.parametrize(("name", "family"), CASES)
def test_snapshot_round_trip_is_exact(name: str, family: str) -> None:
    learner = build_learner(_spec(name, family))
    _feed(learner, range(3))
    for x, y in _events(7, 3, 0):  # leave a partial micro-batch pending
        learner.learn(x, y)
    restored = pickle.loads(_state(learner))
    assert _predictions(restored) == _predictions(learner)
    _feed(learner, range(3, 5), seed=1)
    _feed(restored, range(3, 5), seed=1)
    assert _predictions(restored) == _predictions(learner)
    if family == "torch":
        for p, q in zip(learner.model.parameters(), restored.model.parameters()):
            assert torch.equal(p, q)


@pytest.mark.parametrize(("name", "family"), CASES)
def test_clones_are_independent(name: str, family: str) -> None:
    learner = build_learner(_spec(name, family))
    _feed(learner, range(2))
    clone = copy.deepcopy(learner)
    predictions = _predictions(learner)
    before = _state(learner)
    _feed(clone, range(2, 4), seed=2)
    assert _state(learner) == before and _predictions(learner) == predictions
    fresh = learner.clone() if hasattr(learner, "clone") else build_learner(_spec(name, family))
    assert fresh.predict(_probe()[0]) == build_learner(_spec(name, family)).predict(_probe()[0])


@pytest.mark.parametrize(("name", "family"), CASES)
def test_memory_stays_bounded_over_a_long_stream(name: str, family: str) -> None:
    learner = build_learner(_spec(name, family))
    _feed(learner, range(8), per_concept=15)
    early = len(_state(learner))
    _feed(learner, range(8, 32), per_concept=15)
    late = len(_state(learner))
    assert late <= early * 1.15 + 4096, f"state grew from {early} to {late} bytes over 24 more boundaries"
