"""The online strategies' pieces: the memory against Avalanche's storage policies, RAR against the update it is made of, SLDA's head."""

from __future__ import annotations

import copy

import torch

from strategies._avalanche import _template_module, quietly, window_dataset
from strategies._memory import ClassBalancedMemory
from strategies.rar import RAR
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.strategy import TrainStep
from stream_learner.learners.torch import MLP

_template_module()  # Avalanche's first import, without its import-time warnings


def _batches(n: int, classes: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    out = []
    for cs in classes:
        y = torch.tensor([cs[i % len(cs)] for i in range(n)])
        out.append((torch.randn(n, 3, generator=g), y, torch.zeros(n, dtype=torch.long)))
    return out


def _rows(dataset: object) -> tuple[torch.Tensor, list[int]]:
    items = list(dataset)  # type: ignore[call-overload]
    return torch.stack([i[0] for i in items]), [int(i[1]) for i in items]


def test_memory_keeps_what_avalanches_storage_policies_keep_for_the_same_draws() -> None:
    from avalanche.training.storage_policy import ClassBalancedBuffer, ReservoirSamplingBuffer

    batches = _batches(7, [[0, 1], [1], [2, 0], [3], [1, 2, 3], [0]])
    for balanced in (True, False):
        ours = ClassBalancedMemory(9, balanced=balanced)
        theirs = ClassBalancedBuffer(9, adaptive_size=True) if balanced else ReservoirSamplingBuffer(9)
        for k, (x, y, t) in enumerate(batches):
            torch.manual_seed(k)
            ours.add(x, y, t)
            torch.manual_seed(k)
            quietly(lambda x=x, y=y, t=t, theirs=theirs: theirs.update_from_dataset(window_dataset(x, y, t)))
            mx, my, _ = ours.tensors()
            tx, ty = _rows(theirs.buffer)
            assert torch.equal(mx, tx) and my.tolist() == ty
        assert len(ours) == 9
        if balanced:
            assert ours.sizes() == {0: 3, 1: 2, 2: 2, 3: 2}  # the remainder to the smallest class indices


def test_memory_snapshot_round_trips() -> None:
    memory = ClassBalancedMemory(5)
    for x, y, t in _batches(4, [[0, 1], [2]]):
        memory.add(x, y, t)
    restored = ClassBalancedMemory(5)
    restored.load_state_dict(copy.deepcopy(memory.state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(memory.tensors(), restored.tensors()))
    torch.manual_seed(0)
    memory.add(*_batches(4, [[3]])[0])
    torch.manual_seed(0)
    restored.add(*_batches(4, [[3]])[0])
    assert all(torch.equal(a, b) for a, b in zip(memory.tensors(), restored.tensors()))


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> TrainStep:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainStep(model, optimizer, torch.nn.CrossEntropyLoss(), x, y, torch.zeros(len(y), dtype=torch.long), new=len(y))


def test_rar_without_repeats_or_augmentation_is_one_replay_update() -> None:
    """repeats=1, noise=0, mask=0: one SGD step on the micro-batch with a uniform sample of the memory, as plain online replay does."""
    (x0, y0, _), (x1, y1, _) = _batches(6, [[0, 1], [1, 2]])
    rar = RAR(mem_size=4, batch_size_mem=3, repeats=1, noise=0.0, mask=0.0)
    torch.manual_seed(0)
    model = MLP(3, 3, hidden=[5])
    rar.train_step(_step(model, x0, y0))
    by_hand = copy.deepcopy(model)
    mx, my, _ = rar.memory.tensors()
    assert len(my) == 4
    torch.manual_seed(1)
    rar.train_step(_step(model, x1, y1))
    torch.manual_seed(1)
    idx = torch.randperm(4)[:3]
    optimizer = torch.optim.SGD(by_hand.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(by_hand(torch.cat([x1, mx[idx]])), torch.cat([y1, my[idx]])).backward()
    optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), by_hand.parameters()))


def test_rar_repeats_the_update_on_fresh_augmentations() -> None:
    (x0, y0, _), (x1, y1, _) = _batches(6, [[0, 1], [1, 2]])
    models = []
    for repeats, noise in ((1, 0.0), (3, 0.0), (3, 0.1)):
        torch.manual_seed(0)
        model = MLP(3, 3, hidden=[5])
        rar = RAR(mem_size=4, batch_size_mem=3, repeats=repeats, noise=noise, mask=0.0)
        rar.train_step(_step(model, x0, y0))
        rar.train_step(_step(model, x1, y1))
        models.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert not torch.equal(models[0], models[1]) and not torch.equal(models[1], models[2])


def test_slda_predicts_each_class_with_the_lda_rule_whatever_the_order_of_the_classes() -> None:
    """A linear network: SLDA works on the encoded inputs; classes seen one after another are all kept (no forgetting)."""
    spec = LearnerSpec("torch:linear", {"batch_size": 5, "scale": False, "next_class_row": False}, seed=0, strategy="slda")
    learner = build_learner(spec)
    g = torch.Generator().manual_seed(0)
    centres = {c: torch.randn(4, generator=g) * 4 for c in range(4)}
    for c in range(4):  # class-incremental: one class at a time
        for _ in range(20):
            x = centres[c] + torch.randn(4, generator=g) * 0.5
            learner.learn({f"f{j}": float(v) for j, v in enumerate(x)}, c)
    assert [learner.predict({f"f{j}": float(v) for j, v in enumerate(centres[c])})[0] for c in range(4)] == [0, 1, 2, 3]
    slda = learner.strategies[0]
    assert slda.counts.tolist() == [20.0] * 4 and slda.means.shape == (4, 4)  # the head grew with the classes
