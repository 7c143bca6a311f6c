"""Strategies that skip Avalanche's per-step data plumbing give exactly what it gives (batches and RNG draws)."""

from __future__ import annotations

import random

import pytest
import torch

from strategies._avalanche import _template_module, quietly, window_dataset

_template_module()  # Avalanche's first import, without its import-time warnings


def _window(n: int, seed: int) -> object:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return window_dataset(x, (x[:, 0] > 0).long() + 2 * seed, torch.zeros(n, dtype=torch.long))


@pytest.mark.parametrize(("patterns", "sample_size", "sizes"), [(10, 7, [30, 30]), (10, 6, [30, 4, 25]), (7, 64, [5, 30, 9, 1]), (5, 3, [12, 3, 30])])
def test_agem_reference_batches_and_torch_rng_are_avalanches_loader(patterns: int, sample_size: int, sizes: list[int]) -> None:
    from avalanche.training.plugins import AGEMPlugin

    from strategies.agem import _plugin_class

    ours = quietly(lambda: _plugin_class()(patterns, sample_size, len(sizes), 3))
    theirs = quietly(lambda: AGEMPlugin(patterns, sample_size))
    outer = random.getstate()
    for k, n in enumerate(sizes):
        random.seed(3)
        ours.rng.seed(3)
        ours.update_memory(_window(n, k))
        quietly(lambda k=k, n=n: theirs.update_memory(_window(n, k)))
        torch.manual_seed(k)
        for _ in range(2 * k + 3):  # past each buffer's wrap-around, and a fresh start at every boundary
            before = torch.get_rng_state()
            a = ours.sample_from_memory()
            after = torch.get_rng_state()
            torch.set_rng_state(before)
            b = theirs.sample_from_memory()
            assert torch.equal(after, torch.get_rng_state())  # the loader's seed draw, at the first batch after a boundary
            assert len(a) == len(b) == 3
            assert all(u.dtype == v.dtype and torch.equal(u, v) for u, v in zip(a, b))
    random.setstate(outer)


def test_agem_draws_torch_rng_like_the_loader() -> None:
    from avalanche.training.plugins import AGEMPlugin

    from strategies.agem import _plugin_class

    ours = quietly(lambda: _plugin_class()(10, 7, 5, 3))
    theirs = quietly(lambda: AGEMPlugin(10, 7))
    ours.rng.seed(3)
    ours.update_memory(_window(30, 0))
    random.seed(3)
    quietly(lambda: theirs.update_memory(_window(30, 0)))
    states = []
    for plugin in (ours, theirs):
        torch.manual_seed(11)
        for _ in range(5):
            plugin.sample_from_memory()
        states.append(torch.get_rng_state())
    assert torch.equal(*states)


@pytest.mark.parametrize("drawn", [0, 1, 4, 7])
def test_agem_resume_continues_as_the_uninterrupted_plugin(drawn: int) -> None:
    from strategies.agem import _plugin_class

    def plugin() -> object:
        p = quietly(lambda: _plugin_class()(10, 6, 5, 3))
        for k, n in enumerate([30, 4, 25]):
            p.update_memory(_window(n, k))
        return p

    straight, resumed = plugin(), plugin()
    torch.manual_seed(5)
    for _ in range(drawn):
        straight.sample_from_memory()
    after_straight = [straight.sample_from_memory() for _ in range(6)], torch.get_rng_state()
    torch.manual_seed(5)
    for _ in range(drawn):
        resumed.sample_from_memory()
    resumed.resume(drawn)
    after_resumed = [resumed.sample_from_memory() for _ in range(6)], torch.get_rng_state()
    for a, b in zip(after_straight[0], after_resumed[0]):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert torch.equal(after_straight[1], after_resumed[1])


def _lamaml_learner() -> object:
    from stream_learner.learners.base import LearnerSpec
    from stream_learner.learners.factory import build_learner

    spec = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=4, strategy="lamaml", strategy_params={"max_buffer_size": 12, "buffer_mb_size": 5})
    return build_learner(spec)


def test_lamaml_buffer_batches_are_avalanches() -> None:
    from avalanche.training.supervised.lamaml_v2 import Buffer

    ours, theirs = _lamaml_learner(), _lamaml_learner()
    g = torch.Generator().manual_seed(0)
    events = []
    for c in range(3):
        events += [(torch.randn(3, generator=g), c) for _ in range(40)]
    for k, (x, c) in enumerate(events):
        for learner in (ours, theirs):
            learner.learn({f"f{j}": float(v) for j, v in enumerate(x)}, 2 * c + int(x[0] > 0))
            if k % 40 == 39:
                learner.on_boundary(c + 1)
            template = learner.strategies[0].template
            if learner is theirs and template is not None and type(template.buffer) is not Buffer:
                assert k < 39  # before the first boundary, so before the first buffer batch
                template.buffer.__class__ = Buffer  # Avalanche's own get_buffer_batch
    a, b = ours.strategies[0].template, theirs.strategies[0].template
    assert type(a.buffer) is not Buffer and type(b.buffer) is Buffer
    assert len(a.buffer) == 12 and a.clock.train_exp_counter == 3
    for (n, u), (_, v) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(u, v), n
    for n in a.alpha_params:
        assert torch.equal(a.alpha_params[n], b.alpha_params[n]), n
    torch.manual_seed(9)
    mine = a.buffer.get_buffer_batch()
    torch.manual_seed(9)
    avalanches = Buffer.get_buffer_batch(a.buffer)
    assert all(u.dtype == v.dtype and torch.equal(u, v) for u, v in zip(mine, avalanches))
