"""GDumb (Prabhu et al., ECCV 2020), Avalanche's ``GDumbPlugin`` streamed: learn only from a class-balanced memory.

Every micro-batch enters the class-balanced memory
(:class:`~strategies._memory.ClassBalancedMemory`, Avalanche's storage policy
for GDumb). The network never trains on the stream itself:

* at each boundary it is reset to its initial weights (an output row added
  for a later class keeps the weights it was created with) and trained from
  scratch for ``epochs`` epochs over the memory, in shuffled batches of
  ``batch_size`` (Avalanche's GDumb: reset, then train on the buffer);
* between boundaries, so that the network keeps up with new classes before
  the next boundary, each micro-batch is followed by ``steps`` updates, each
  on the next ``batch_size`` events of a pass over the memory that takes the
  classes in turn (so each update is class-balanced; it draws nothing
  random). The benchmark evaluates at a task's end, before the boundary
  that retrains; one update a micro-batch left the network there well below
  Avalanche's retrained one (``benchmarks/README.md``), two do not.

At an oracle boundary this is what Avalanche's ``Naive`` with ``GDumbPlugin``
does at the end of each experience; each epoch's shuffle draws from the
learner's torch RNG what Avalanche's shuffling loader draws, so with the
whole experience as one micro-batch the two end with the same parameters
(``tests/unit/test_avalanche_equivalence.py``).

>>> GDumb(mem_size=50, epochs=3).epochs
3
"""

from __future__ import annotations

from typing import Any

import torch

from strategies._memory import ClassBalancedMemory, loader_order
from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TorchStrategy, TrainStep


class GDumb(TorchStrategy):
    """GDumb (Avalanche GDumbPlugin): a class-balanced memory; at each boundary the network is retrained from scratch on it.

    Args:
        mem_size: capacity of the class-balanced memory in events, split evenly over the classes seen; the network learns only from it.
        epochs: passes over the memory when the network is retrained from its initial weights at a boundary; raise it if it underfits, lower it if boundaries are slow.
        batch_size: events per update, in the retraining at a boundary and in the updates after each micro-batch.
        steps: updates on class-balanced batches of the memory after each micro-batch, so the network keeps up with new classes between boundaries; more costs time per micro-batch.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"mem_size": 20, "epochs": 2, "batch_size": 5}

    def __init__(self, mem_size: int = 200, epochs: int = 10, batch_size: int = 10, steps: int = 2) -> None:
        if int(mem_size) < 1 or int(epochs) < 1 or int(batch_size) < 1 or int(steps) < 1:
            raise ConfigError(f"GDumb's mem_size, epochs, batch_size and steps must be at least 1 (got {mem_size}, {epochs}, {batch_size}, {steps})")
        self.epochs = int(epochs)
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.memory = ClassBalancedMemory(int(mem_size))
        self.initial: list[torch.Tensor] = []
        self.model: Any = None
        self.optimizer: Any = None
        self.criterion: Any = None
        self.cursor = 0  # where the pass over the memory between boundaries stands

    def setup(self, model: Any, optimizer: Any, criterion: Any, device: Any) -> None:
        """Keep the initial weights; a grown layer's new rows join them as they were created."""
        self.model, self.optimizer, self.criterion = model, optimizer, criterion
        params = [p.detach().clone() for p in model.parameters()]
        if not self.initial:
            self.initial = params
            return
        for i, (kept, now) in enumerate(zip(self.initial, params)):
            if kept.shape != now.shape:
                now[tuple(slice(0, s) for s in kept.shape)] = kept
                self.initial[i] = now

    def train_step(self, step: TrainStep) -> Any:
        self.memory.add(step.x[: step.new], step.y[: step.new], step.task[: step.new])
        x, y, _ = self.memory.tensors()
        x, y = x.to(step.x.device), y.to(step.y.device)
        order = self.memory.interleaved()
        losses = []
        for _ in range(self.steps):
            if self.cursor >= len(order):
                self.cursor = 0
            idx = order[self.cursor : self.cursor + self.batch_size]
            self.cursor += len(idx)
            losses.append(self._update(x[idx], y[idx]))
        return torch.stack(losses).mean()

    def _update(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.criterion(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def on_boundary(self, x: Any, y: Any, task: Any) -> None:
        """Reset the network to its initial weights and train it on the memory for ``epochs`` epochs."""
        if self.model is None or len(self.memory) == 0:
            return
        with torch.no_grad():
            for p, v in zip(self.model.parameters(), self.initial):
                p.copy_(v)
        self.optimizer.state.clear()  # a reset network starts without momentum
        mx, my, _ = self.memory.tensors()
        device = next(self.model.parameters()).device
        mx, my = mx.to(device), my.to(device)
        for _ in range(self.epochs):
            order = loader_order(len(my))
            for start in range(0, len(my), self.batch_size):
                idx = order[start : start + self.batch_size]
                self._update(mx[idx], my[idx])
        self.cursor = 0

    def __len__(self) -> int:
        return len(self.memory)

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "initial": [p.clone() for p in self.initial], "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self.initial = [p.to(next(self.model.parameters()).device).clone() for p in state["initial"]]
        self.cursor = state["cursor"]
