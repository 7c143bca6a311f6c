"""An A-GEM state from before its seeded memory RNG (no ``"rng"``, no ``"draws"``) still loads, upgraded by :mod:`stream_learner.state`."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.torch import TorchLearner
from stream_learner.state import agem_state, decode, encode, torch_learner_state

SPEC = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=2, strategy="agem", strategy_params={"sample_size": 6, "patterns_per_experience": 10})


def features(g: torch.Generator) -> dict[str, float]:
    return {f"f{j}": float(v) for j, v in enumerate(torch.randn(3, generator=g))}


def learn_concepts(learner: Any, concepts: range, per_concept: int, g: torch.Generator) -> list[Any]:
    """Predict then learn ``per_concept`` events of each concept, a boundary after each; the predictions."""
    predictions = []
    for c in concepts:
        for _ in range(per_concept):
            x = features(g)
            predictions.append(learner.predict(x))
            learner.learn(x, 2 * c + int(x["f0"] > 0))
        learner.on_boundary(c + 1)
    return predictions


def _trained() -> TorchLearner:
    learner = build_learner(SPEC)
    assert isinstance(learner, TorchLearner)
    learn_concepts(learner, range(2), 25, torch.Generator().manual_seed(0))
    for _ in range(15):  # reference batches drawn since the last boundary
        learner.learn({"f0": 1.0, "f1": 0.0, "f2": 0.0}, 0)
    assert learner.strategies[0].plugins[0].draws == 3
    return learner


def _without_rng(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as a release before the seeded memory RNG wrote it: its A-GEM state has neither ``rng`` nor ``draws``."""
    (agem,) = state["strategies"]
    old = {k: v for k, v in agem.items() if k not in ("rng", "draws")}
    return {**state, "strategies": [old]}


def test_an_old_agem_state_predicts_as_the_learner_that_wrote_it() -> None:
    learner = _trained()
    old = decode(encode(_without_rng(learner.state_dict())))
    restored = TorchLearner.from_state(old, SPEC)
    probes = [features(torch.Generator().manual_seed(9)) for _ in range(20)]
    assert [restored.predict(x) for x in probes] == [learner.predict(x) for x in probes]
    assert len(restored.strategies[0].memory) == len(learner.strategies[0].memory) == 2


def test_an_old_agem_state_resumes_with_the_rng_a_fresh_learner_of_its_seed_starts_with() -> None:
    fresh = build_learner(SPEC)
    assert isinstance(fresh, TorchLearner)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # one micro-batch: builds the network, and with it the strategy's plugin
        x = features(g)
        fresh.learn(x, int(x["f0"] > 0))
    starting_rng = fresh.strategies[0].plugins[0].rng.getstate()

    restored = TorchLearner.from_state(_without_rng(_trained().state_dict()), SPEC)
    plugin = restored.strategies[0].plugins[0]
    assert plugin.rng.getstate() == starting_rng
    assert plugin.draws == 0 and not plugin.seeded


def test_an_old_agem_state_goes_on_as_the_same_state_with_the_upgrade_written_out() -> None:
    state = _trained().state_dict()
    old = _without_rng(state)
    version, words, gauss = random.Random(2).getstate()
    explicit = {**old, "strategies": [{**old["strategies"][0], "draws": 0, "rng": [version, list(words), gauss]}]}
    a, b = TorchLearner.from_state(old, SPEC), TorchLearner.from_state(explicit, SPEC)
    more_a = learn_concepts(a, range(2, 4), 20, torch.Generator().manual_seed(5))
    more_b = learn_concepts(b, range(2, 4), 20, torch.Generator().manual_seed(5))
    for learner in (a, b):  # reference batches drawn after the last boundary
        learn_concepts(learner, range(4, 5), 10, torch.Generator().manual_seed(6))
        for _ in range(10):
            learner.learn({"f0": 1.0, "f1": 0.0, "f2": 0.0}, 0)
    assert len(more_a) == 40 and more_a == more_b
    plugin_a, plugin_b = a.strategies[0].plugins[0], b.strategies[0].plugins[0]
    assert plugin_a.draws == plugin_b.draws == 2
    assert plugin_a.rng.getstate() == plugin_b.rng.getstate() != random.Random(2).getstate()  # the memory's subsets drew from it
    assert all(torch.equal(u, v) for m, n in zip(a.strategies[0].memory, b.strategies[0].memory, strict=True) for u, v in zip(m, n, strict=True))


def test_a_current_agem_state_is_left_as_it_is() -> None:
    learner = _trained()
    state = learner.state_dict()
    (agem,) = state["strategies"]
    assert agem_state(agem, seed=2) is agem
    upgraded = torch_learner_state(state, [type(s) for s in learner.strategies])
    assert upgraded["strategies"][0] is agem


def test_an_agem_state_before_its_model_existed_is_left_as_it_is() -> None:
    assert agem_state({"experiences": 0, "batch": 1}, seed=2) == {"experiences": 0, "batch": 1}


@pytest.mark.parametrize("strategy", ["ewc", "mir"])
def test_other_strategies_current_states_are_not_touched(strategy: str) -> None:
    spec = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=2, strategy=strategy)
    learner = build_learner(spec)
    assert isinstance(learner, TorchLearner)
    learn_concepts(learner, range(2), 10, torch.Generator().manual_seed(0))
    state = learner.state_dict()
    upgraded = torch_learner_state(state, [type(s) for s in learner.strategies])
    assert all(a is b for a, b in zip(upgraded["strategies"], state["strategies"], strict=True))
