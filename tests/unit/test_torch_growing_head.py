"""The growing output layer: the next-class row (``next_class_row``), and a boundary rewinding to parameters from before the layer grew."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_learner.errors import ConfigError
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.torch import NextClassLoss, TorchLearner, output_layer


def _learner(model: str = "torch:mlp", strategy: str | None = None, strategy_params: dict | None = None, **params: object) -> TorchLearner:
    spec = LearnerSpec(model, {"hidden": [8], "batch_size": 4, "scale": False, "next_class_row": True, **params}, seed=1, strategy=strategy, strategy_params=strategy_params or {})
    learner = build_learner(spec)
    assert isinstance(learner, TorchLearner)
    return learner


def _events(n: int, classes: list[int], seed: int = 0) -> list[tuple[dict[str, float], int]]:
    """Each class lights up its own column (plus noise), so classes are easy to tell apart."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        c = classes[i % len(classes)]
        row = torch.rand(6, generator=g) * 0.3
        row[c] += 1.0
        out.append(({f"f{j}": float(v) for j, v in enumerate(row)}, c))
    return out


def test_next_class_loss_is_cross_entropy_over_the_seen_classes_plus_a_push_on_the_next_row() -> None:
    logits = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    NextClassLoss()(logits, y).backward()
    seen = logits.detach()[:, :2].requires_grad_()
    torch.nn.functional.cross_entropy(seen, y).backward()
    assert torch.allclose(logits.grad[:, :2], seen.grad)  # the seen classes learn as with plain cross-entropy
    p_next = torch.softmax(logits.detach(), 1)[:, 2]  # the next row: its probability against the seen classes
    assert torch.allclose(logits.grad[:, 2], p_next / 2)  # (a mean over the two rows)


def test_a_new_class_starts_from_the_next_class_row_and_predictions_cover_the_seen_classes_only() -> None:
    learner = _learner()
    for x, y in _events(8, [0, 1]):
        learner.learn(x, y)
    head = output_layer(learner.model)[2]
    assert head.out_features == 3 and learner.criterion.__class__ is NextClassLoss
    next_row = head.weight[2].detach().clone()
    grown_before_step = []
    learner.strategies.append(type("Probe", (), {"setup": lambda self, model, *a: grown_before_step.append(output_layer(model)[2].weight.detach().clone())})())
    for x, y in _events(4, [2, 3], seed=1):
        learner.learn(x, y)
    weight = grown_before_step[-1]
    assert weight.shape[0] == 5  # classes 2 and 3 arrived: two rows for them and a new next-class row
    for row in (2, 3, 4):
        assert torch.equal(weight[row], next_row)
    label, proba = learner.predict(_events(1, [2])[0][0])
    assert set(proba) == {0, 1, 2, 3}


def test_a_fixed_head_keeps_plain_cross_entropy_over_all_its_outputs() -> None:
    learner = _learner("torch:benchmarks.scenarios:mlp", outputs=10)
    for x, y in _events(8, [0, 1]):
        learner.learn(x, y)
    assert output_layer(learner.model)[2].out_features == 10
    assert isinstance(learner.criterion, torch.nn.CrossEntropyLoss)


def test_the_option_off_grows_exactly_to_the_classes_seen() -> None:
    learner = _learner(next_class_row=False)
    for x, y in _events(8, [0, 1]):
        learner.learn(x, y)
    assert output_layer(learner.model)[2].out_features == 2 and isinstance(learner.criterion, torch.nn.CrossEntropyLoss)


def test_the_next_class_row_survives_a_snapshot() -> None:
    learner = _learner(strategy="replay", strategy_params={"mem_size": 10})
    events = _events(40, [0, 1, 2])
    for x, y in events[:20]:
        learner.learn(x, y)
    restored = TorchLearner.from_state(learner.state_dict(), learner.spec)
    assert isinstance(restored.criterion, NextClassLoss)
    for x, y in events[20:]:
        learner.learn(x, y)
        restored.learn(x, y)
    for p, q in zip(learner.model.parameters(), restored.model.parameters()):
        assert torch.equal(p, q)


def _split_digits(seed: int) -> list[tuple[list[dict[int, float]], list[int], list[dict[int, float]], list[int]]]:
    """Split-Digits with pixels in [0, 1], the class pairs in another order than the benchmark suite's."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(0.7 * len(y))
    xtr, ytr, xte, yte = x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]
    tasks = []
    for pair in [(3, 7), (0, 9), (5, 1), (8, 2), (6, 4)]:
        tr = rng.permutation(np.flatnonzero(np.isin(ytr, pair)))
        te = np.flatnonzero(np.isin(yte, pair))
        tasks.append(([dict(enumerate(r)) for r in xtr[tr].tolist()], ytr[tr].tolist(), [dict(enumerate(r)) for r in xte[te].tolist()], yte[te].tolist()))
    return tasks


def _final_accuracy(model: str, strategy: str, params: dict, seed: int, next_class_row: bool = True) -> float:
    options = {"hidden": [128], "lr": 0.05, "batch_size": 16, "scale": False, "next_class_row": next_class_row}
    spec = LearnerSpec(model, options, seed=seed, strategy=strategy, strategy_params=params)
    learner = build_learner(spec)
    tasks = _split_digits(seed)
    for k, (xs, ys, _, _) in enumerate(tasks):
        if k:
            learner.on_boundary(k)
        for x, y in zip(xs, ys):
            learner.learn(x, y)
    return float(np.mean([np.mean([p == t for (p, _), t in zip(learner.predict_many(xt), yt)]) for _, _, xt, yt in tasks]))


def test_replay_with_a_growing_head_on_unscaled_inputs_keeps_more_than_the_last_task() -> None:
    """Issue #20: with the loss over the seen classes only, the growing head kept only the last of five tasks (0.23, seed 0).

    Collapse is about 0.2 here (one task of five); the same MLP with a fixed
    10-way head reaches 0.66 on this seed; with the next-class row 0.48.
    """
    assert _final_accuracy("torch:mlp", "replay", {"mem_size": 200}, seed=0) > 0.4


def test_ewc_rewinds_across_a_head_that_grew_inside_the_rewind_window() -> None:
    """Issue #20: a drift-detected boundary rewound EWC to parameters saved before new classes widened the head (RuntimeError: size mismatch)."""
    learner = _learner(strategy="ewc", strategy_params={"rewind": 100}, lr=0.5)
    for x, y in _events(120, [0, 1]):
        learner.learn(x, y)
    for x, y in _events(12, [0, 1], seed=1):  # the concept changes: the labels swap, the errors rise
        learner.learn(x, 1 - y)
    grown_at = learner.updates
    for x, y in _events(24, [2, 3], seed=2):  # then new classes arrive: the head grows
        learner.learn(x, y)
    trail = learner.strategies[0].trail
    keep, params = trail.concept_end(len(learner.window))
    assert params is not None and params[-1].shape[0] < output_layer(learner.model)[2].out_features  # saved before the growth
    current = [p.detach().clone() for p in learner.model.parameters()]
    learner.on_boundary(1)
    assert learner.strategies[0].anchors == 1 and learner.updates == grown_at + 6
    for p, q in zip(learner.model.parameters(), current):
        assert torch.equal(p, q)  # the model keeps what it learned since; only the consolidation was rewound


def test_next_class_loss_reduces_as_torchs_losses_do() -> None:
    logits, y = torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1])
    loss = NextClassLoss()
    per_event = NextClassLoss(reduction="none")(logits, y)
    assert per_event.shape == (5,)
    assert torch.allclose(per_event.mean(), loss(logits, y)) and torch.allclose(per_event.sum(), NextClassLoss("sum")(logits, y))
    loss.reduction = "none"  # what Avalanche's MIR plugin does for its per-sample losses
    assert torch.equal(loss(logits, y), per_event)


def broken_factory(n_inputs: int, n_classes: int) -> torch.nn.Module:
    """A user's network that cannot be built for the stream's inputs."""
    raise ValueError(f"expected 784 inputs, got {n_inputs}")


def test_a_factory_failing_at_the_first_build_is_a_configuration_error() -> None:
    learner = build_learner(LearnerSpec(f"torch:{__name__}:broken_factory", {"batch_size": 2}))
    learner.learn({"a": 1.0}, 0)
    with pytest.raises(ConfigError, match=r"cannot build the network for 1 inputs and 2 outputs: ValueError: expected 784 inputs, got 1"):
        learner.learn({"a": 0.0}, 1)
