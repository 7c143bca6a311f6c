"""MIR: maximally interfered retrieval (Aljundi et al., NeurIPS 2019), Avalanche's ``MIRPlugin`` streamed.

Online, as the method was designed: each micro-batch is one of Avalanche's
online experiences. Before the backward pass, ``subsample`` events are drawn
from the memory as Avalanche's fresh replay loader draws them; a virtual SGD
step on the micro-batch's loss (the learner's learning rate) shows which of
them that step would hurt most, and the ``batch_size_mem`` most hurt are
replayed: their cross-entropy is added to the loss. After the update the
micro-batch enters the class-balanced memory
(:class:`~strategies._memory.ClassBalancedMemory`, Avalanche's storage policy
for MIR). As in Avalanche's plugin, the candidates leave out the classes of
the micro-batch just learned, and nothing is replayed until more than
``batch_size_mem`` candidates are stored.

The virtual step evaluates the network with the stepped parameters through
``torch.func.functional_call`` (Avalanche deep-copies the network; the
arithmetic is the same). Each micro-batch draws from the learner's torch RNG
what Avalanche's loop draws for one online experience, so the engine and
``Naive`` with ``MIRPlugin`` over micro-batch experiences end with the same
parameters (``tests/unit/test_avalanche_equivalence.py``).

>>> MIR(mem_size=50, subsample=20, batch_size_mem=5).subsample
20
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import functional_call

from strategies._memory import ClassBalancedMemory, experience_loader_draw, loader_batch
from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TorchStrategy, TrainStep


class MIR(TorchStrategy):
    """MIR (Avalanche MIRPlugin, online): replay the stored events a virtual update on the micro-batch would hurt most.

    Args:
        mem_size: capacity of the class-balanced memory in events, split evenly over the classes seen; raise it to keep more events per class.
        subsample: memory events scored by the virtual update per micro-batch (classes just learned left out); more finds worse-hit events but costs two passes over them.
        batch_size_mem: most-hurt candidates replayed per micro-batch (at most subsample); none until more than this many are stored; raise it to weigh the past more.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"mem_size": 20, "subsample": 10, "batch_size_mem": 4}

    def __init__(self, mem_size: int = 200, subsample: int = 50, batch_size_mem: int = 10) -> None:
        if int(mem_size) < 1 or int(subsample) < 1 or int(batch_size_mem) < 1:
            raise ConfigError(f"MIR's mem_size, subsample and batch_size_mem must be at least 1 (got {mem_size}, {subsample}, {batch_size_mem})")
        if int(batch_size_mem) > int(subsample):
            raise ConfigError(f"MIR's batch_size_mem ({batch_size_mem}) cannot exceed subsample ({subsample}): it picks among them")
        self.subsample = int(subsample)
        self.batch_size_mem = int(batch_size_mem)
        self.memory = ClassBalancedMemory(int(mem_size))
        self.last_classes: frozenset[int] = frozenset()  # the classes of the micro-batch last learned, left out of the candidates

    def _candidates(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        x, y, t = self.memory.tensors(exclude=self.last_classes)
        return (x, y, t) if len(y) > self.batch_size_mem else None

    def before_step(self, step: TrainStep) -> None:
        experience_loader_draw()

    def penalty(self, step: TrainStep) -> Any:
        candidates = self._candidates()
        if candidates is None:
            return None
        model = step.model
        idx = loader_batch(len(candidates[1]), self.subsample)
        x, y = candidates[0][idx].to(step.x.device), candidates[1][idx].to(step.y.device)
        names = [name for name, _ in model.named_parameters()]
        params = [p for _, p in model.named_parameters()]
        grads = torch.autograd.grad(step.loss, params, retain_graph=True, allow_unused=True)
        lr = step.optimizer.param_groups[0]["lr"]
        criterion = step.criterion

        def per_event(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            """The learner's loss of each event alone (any criterion; Avalanche sets its criterion's reduction to 'none')."""
            return torch.stack([criterion(out[i : i + 1], y[i : i + 1]) for i in range(len(y))])

        with torch.no_grad():
            stepped = {n: p if g is None else p - lr * g for n, p, g in zip(names, params, grads)}
            before = per_event(model(x), y)
            after = per_event(functional_call(model, stepped, (x,)), y)
            chosen = torch.argsort(after - before)[len(y) - self.batch_size_mem :]
        return step.criterion(model(x[chosen]), y[chosen])

    def after_step(self, step: TrainStep) -> None:
        new = step.new
        self.memory.add(step.x[:new], step.y[:new], step.task[:new])
        self.last_classes = frozenset(step.y[:new].unique().tolist())

    def __len__(self) -> int:
        return len(self.memory)

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "last_classes": sorted(self.last_classes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self.last_classes = frozenset(state["last_classes"])
