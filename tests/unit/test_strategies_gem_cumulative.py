"""The two strategies the forgetting suite added: GEM (Avalanche's plugin, bounded) and the streamed cumulative upper bound."""

from __future__ import annotations

import pytest
import torch

from stream_learner.errors import ConfigError
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.strategy import TrainStep


def _run(spec: LearnerSpec, concepts: int, per_concept: int = 30) -> object:
    learner = build_learner(spec)
    g = torch.Generator().manual_seed(0)
    for c in range(concepts):
        for _ in range(per_concept):
            x = torch.randn(5, generator=g)
            learner.learn({f"f{j}": float(v) for j, v in enumerate(x)}, 2 * c + int(x[0] > 0))
        learner.on_boundary(c + 1)
    return learner


def _spec(strategy: str, **params: object) -> LearnerSpec:
    return LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy=strategy, strategy_params=params)


def test_gem_keeps_the_last_experiences_and_projects_conflicting_gradients() -> None:
    learner = _run(_spec("gem", patterns_per_experience=7, max_experiences=2), concepts=4)
    gem = learner.strategies[0]
    assert len(gem.memory) == 2 and all(len(y) == 7 for _, y, _ in gem.memory) and gem.experiences == 2
    assert {int(c) for c in gem.memory[-1][1]} <= {6, 7}  # the newest memory is the last concept's
    # a gradient that would raise the loss on memory is projected (Avalanche's quadratic programme)
    x, y = torch.randn(5, 5, generator=torch.Generator().manual_seed(1)), torch.zeros(5, dtype=torch.long)  # towards class 0, away from the remembered 4-7
    step = TrainStep(learner.model, learner.optimizer, learner.criterion, x, y, torch.zeros(5, dtype=torch.long), 5)
    gem.before_step(step)
    learner.optimizer.zero_grad()
    learner.criterion(learner.model(x), y).backward()
    before = torch.cat([p.grad.flatten() for p in learner.model.parameters()])
    gem.after_backward(step)
    after = torch.cat([p.grad.flatten() for p in learner.model.parameters()])
    reference = gem.plugins[0].G
    assert reference.shape[0] == 2 and (reference @ before).min() < 0  # it conflicted
    assert (reference @ after).min() > (reference @ before).min() and not torch.equal(before, after)
    with pytest.raises(ConfigError, match="memory_strength must not be negative"):
        build_learner(_spec("gem", memory_strength=-1))


def test_cumulative_replays_every_past_concept_with_one_update_per_concept() -> None:
    learner = _run(_spec("cumulative"), concepts=3)
    cumulative = learner.strategies[0]
    assert cumulative.past == 3 and cumulative.rounds == 4 and len(cumulative) == 90
    updates = learner.updates
    for i in range(5):
        learner.learn({f"f{j}": float(i + j) for j in range(5)}, 0)
    assert learner.updates == updates + 1  # one learner step ...
    assert len(cumulative) == 95  # ... of which the strategy made four updates, and remembered the new events


def test_cumulative_memory_is_a_bounded_reservoir() -> None:
    learner = _run(_spec("cumulative", max_size=25, max_rounds=2), concepts=4)
    cumulative = learner.strategies[0]
    assert len(cumulative) == 25 and cumulative.seen == 120 and cumulative.rounds == 2
    labels = set(cumulative.memory[1].tolist())
    assert len(labels) > 2  # a uniform sample over everything seen, not only the first events
    with pytest.raises(ConfigError, match="max_size and max_rounds of at least 1"):
        build_learner(_spec("cumulative", max_size=0))
