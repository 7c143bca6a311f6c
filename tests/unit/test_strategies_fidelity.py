"""The built-in strategies do what Avalanche's own plugins do at a boundary (the fidelity column's premises)."""

from __future__ import annotations

import copy
import random

import torch

from strategies._avalanche import _template_module, quietly, window_dataset
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner

_template_module()  # Avalanche's first import, without its import-time warnings


def _window(n: int, seed: int) -> object:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return window_dataset(x, (x[:, 0] > 0).long() + 2 * seed, torch.zeros(n, dtype=torch.long))


def test_agem_memory_and_reference_batches_are_avalanches_for_the_same_python_rng() -> None:
    from avalanche.training.plugins import AGEMPlugin

    from strategies.agem import _plugin_class

    ours = quietly(lambda: _plugin_class()(10, 7, 5, 3))
    theirs = quietly(lambda: AGEMPlugin(10, 7))
    outer = random.getstate()
    for k in range(2):
        ours.update_memory(_window(30, k))
    assert random.getstate() == outer  # the strategy's own RNG drew the subsets
    random.seed(3)
    for k in range(2):
        quietly(lambda k=k: theirs.update_memory(_window(30, k)))
    random.setstate(outer)
    for _ in range(9):  # 3 per experience, cycling through 10 stored events each
        a, b = ours.sample_from_memory(), theirs.sample_from_memory()
        assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_agem_snapshot_resumes_the_reference_batches_where_they_were() -> None:
    spec = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=2, strategy="agem", strategy_params={"sample_size": 6, "patterns_per_experience": 10})
    learner = build_learner(spec)
    g = torch.Generator().manual_seed(0)
    for c in range(2):
        for _ in range(25):
            x = torch.randn(3, generator=g)
            learner.learn({f"f{j}": float(v) for j, v in enumerate(x)}, 2 * c + int(x[0] > 0))
        learner.on_boundary(c + 1)
    for _ in range(15):
        learner.learn({"f0": 1.0, "f1": 0.0, "f2": 0.0}, 0)
    plugin = learner.strategies[0].plugins[0]
    assert plugin.draws == 3
    restored = copy.deepcopy(learner)
    restored.strategies[0].load_state_dict(learner.strategies[0].state_dict())
    a, b = plugin.sample_from_memory(), restored.strategies[0].plugins[0].sample_from_memory()
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def _ewc_learner(batch_size: int, **params: object) -> object:
    options = {"hidden": [8], "batch_size": batch_size, "scale": False, "lr": 0.5, "next_class_row": False}
    return build_learner(LearnerSpec("torch:mlp", options, seed=1, strategy="ewc", strategy_params=params))


def _learn(learner: object, n: int, flip: bool, g: torch.Generator) -> None:
    for _ in range(n):
        x = torch.randn(5, generator=g)
        learner.learn({f"f{j}": float(v) for j, v in enumerate(x)}, int((x[0] > 0) != flip))


def test_ewc_importances_are_computed_at_the_learners_micro_batch_size() -> None:
    from avalanche.training.plugins import EWCPlugin

    learner = _ewc_learner(7, rewind=0)
    _learn(learner, 70, False, torch.Generator().manual_seed(0))
    x = torch.stack([r for r, _, _ in learner.window])
    y = torch.tensor([c for _, c, _ in learner.window])
    model = copy.deepcopy(learner.model)
    learner.on_boundary(1)
    got = learner.strategies[0].plugins[0].importances[0]

    def expected(batch: int) -> dict[str, torch.Tensor]:
        m = copy.deepcopy(model)
        imps = EWCPlugin.compute_importances(None, m, torch.nn.CrossEntropyLoss(), torch.optim.SGD(m.parameters(), lr=0.1), window_dataset(x, y, torch.zeros_like(y)), "cpu", batch)
        return {k: v.data for k, v in imps.items()}

    assert all(torch.allclose(got[k].data, v) for k, v in expected(7).items())
    assert not all(torch.allclose(got[k].data, v) for k, v in expected(32).items())


def test_ewc_consolidates_the_concept_as_it_was_before_the_errors_rose() -> None:
    late, early = _ewc_learner(10), _ewc_learner(10)
    for learner in (late, early):
        _learn(learner, 300, False, torch.Generator().manual_seed(0))
    ended = [p.detach().clone() for p in late.model.parameters()]
    _learn(late, 30, True, torch.Generator().manual_seed(1))  # a detector fires 30 events into the next concept
    assert late.strategies[0].trail.concept_end(330)[0] == 300
    current = [p.detach().clone() for p in late.model.parameters()]
    late.on_boundary(1)
    early.on_boundary(1)
    plugin = late.strategies[0].plugins[0]
    assert all(torch.equal(plugin.saved_params[0][k].data, p) for k, p in zip(plugin.saved_params[0], ended))
    assert all(torch.equal(p, q) for p, q in zip(late.model.parameters(), current))  # the model keeps what it learned since
    reference = early.strategies[0].plugins[0].importances[0]
    assert all(torch.allclose(plugin.importances[0][k].data, reference[k].data) for k in reference)


def _agem_learner(**params: object) -> object:
    options = {"hidden": [8], "batch_size": 10, "scale": False, "lr": 0.5, "next_class_row": False}
    return build_learner(LearnerSpec("torch:mlp", options, seed=1, strategy="agem", strategy_params={"patterns_per_experience": 100, **params}))


def test_agem_memory_keeps_only_the_concept_that_ended_after_a_late_detection() -> None:
    late, oracle, blind = _agem_learner(), _agem_learner(), _agem_learner(rewind=0)
    for learner in (late, oracle, blind):
        _learn(learner, 300, False, torch.Generator().manual_seed(0))
    ended = torch.stack([r for r, _, _ in oracle.window])
    oracle.on_boundary(1)  # at the true change: the errors have not risen, nothing is cut
    for learner in (late, blind):
        _learn(learner, 30, True, torch.Generator().manual_seed(1))  # a detector fires 30 events into the next concept
        learner.on_boundary(1)
    (x, y, _), = late.strategies[0].memory
    assert len(y) == 100
    assert all((ended == row).all(1).any() for row in x)  # no event of the next concept
    reference = oracle.strategies[0].memory[0]
    assert all(torch.equal(u, v) for u, v in zip(late.strategies[0].memory[0], reference))  # the oracle boundary's very memory
    assert not all((ended == row).all(1).any() for row in blind.strategies[0].memory[0][0])  # rewind 0: late events enter


def test_agem_rewind_changes_nothing_at_an_oracle_boundary() -> None:
    on, off = _agem_learner(), _agem_learner(rewind=0)
    for c in range(2):
        for learner in (on, off):
            _learn(learner, 200, c == 1, torch.Generator().manual_seed(c))
            learner.on_boundary(c + 1)
    for a, b in zip(on.strategies[0].memory, off.strategies[0].memory):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
