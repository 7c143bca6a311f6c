"""Cumulative training, streamed: the upper bound the other strategies are measured against.

Avalanche's ``Cumulative`` trains, at experience ``t``, one epoch over the
union of every experience so far: ``t + 1`` times as many updates as the new
data alone, each mini-batch mixing new and old samples. The stream cannot
wait for a whole experience, so this strategy spends the same budget per
micro-batch: with ``p`` past concepts, each micro-batch of ``b`` new events is
mixed with ``p * b`` samples drawn (without replacement, cycling) from every
event of the past concepts, shuffled, and trained as ``p + 1`` updates of
``b`` samples. Memory is bounded: at most ``max_size`` events are kept
(a reservoir over everything seen beyond that), and ``max_rounds`` bounds the
updates per micro-batch when drift detection marks many concepts.

>>> c = Cumulative(max_size=100)
>>> c.rounds, len(c)
(1, 0)
"""

from __future__ import annotations

from typing import Any

import torch

from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TorchStrategy, TrainStep


class Cumulative(TorchStrategy):
    """Cumulative upper bound: each micro-batch also replays past concepts, as many updates as Avalanche's Cumulative.

    Args:
        max_size: most events kept over all concepts (beyond it, a uniform reservoir sample of all seen); raise it, memory permitting, to get closer to full cumulative training.
        max_rounds: most updates per micro-batch (one per concept seen, the current one included); bounds the time when drift detection marks many concepts.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"max_size": 40, "max_rounds": 3}

    def __init__(self, max_size: int = 20_000, max_rounds: int = 10) -> None:
        if int(max_size) < 1 or int(max_rounds) < 1:
            raise ConfigError(f"cumulative needs max_size and max_rounds of at least 1 (got {max_size}, {max_rounds})")
        self.max_size = int(max_size)
        self.max_rounds = int(max_rounds)
        self.past = 0
        self.seen = 0
        self._current: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.memory = (torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        self._order = torch.zeros(0, dtype=torch.long)
        self._cursor = 0
        self._size = 0

    @property
    def rounds(self) -> int:
        """Updates per micro-batch: one per concept seen, at most ``max_rounds``."""
        return min(self.past + 1, self.max_rounds)

    def __len__(self) -> int:
        return self._size

    def train_step(self, step: TrainStep) -> Any:
        b = max(1, step.new)
        x, y, t = step.x, step.y, step.task
        extra = self._draw((self.rounds - 1) * b)
        if extra is not None:
            x, y, t = torch.cat([x, extra[0].to(x.device)]), torch.cat([y, extra[1].to(y.device)]), torch.cat([t, extra[2].to(t.device)])
            perm = torch.randperm(len(y))
            x, y, t = x[perm], y[perm], t[perm]
        model, optimizer, criterion = step.model, step.optimizer, step.criterion
        losses = []
        for start in range(0, len(y), b):
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x[start : start + b]), y[start : start + b])
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        self._remember(step.x[: step.new], step.y[: step.new], step.task[: step.new])
        return torch.stack(losses).mean()

    def on_boundary(self, x: Any, y: Any, task: Any) -> None:
        """The current concept's events join the past (their order is reshuffled when next drawn)."""
        if not self._current:
            return
        parts = [self.memory, *self._current]
        self.memory = _joined([p for p in parts if len(p[1])])
        self._current = []
        self.past += 1
        self._order = torch.zeros(0, dtype=torch.long)
        self._cursor = 0

    def _draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``k`` past samples, without replacement, cycling through a shuffled order."""
        n = len(self.memory[1])
        if k <= 0 or n == 0:
            return None
        picked = []
        while k > 0:
            if self._cursor >= len(self._order):
                self._order, self._cursor = torch.randperm(n), 0
            take = self._order[self._cursor : self._cursor + k]
            self._cursor += len(take)
            k -= len(take)
            picked.append(take)
        idx = torch.cat(picked)
        return self.memory[0][idx], self.memory[1][idx], self.memory[2][idx]

    def _remember(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        """Keep every event up to ``max_size``; beyond, a uniform reservoir over everything seen."""
        x, y, t = x.detach().cpu().clone(), y.detach().cpu().clone(), t.detach().cpu().clone()  # never views of the learner's rows
        free = max(0, min(len(y), self.max_size - len(self)))
        if free:
            self._current.append((x[:free], y[:free], t[:free]))
            self._size += free
            self.seen += free
        for i in range(free, len(y)):
            self.seen += 1
            j = int(torch.randint(self.seen, (1,)))
            if j < self.max_size:
                self._replace(j, x[i], y[i], t[i])

    def _replace(self, j: int, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        n = len(self.memory[1])
        if j < n:
            target, j = self.memory, j
        else:
            if len(self._current) > 1:
                self._current = [_joined(self._current)]
            target, j = self._current[0], j - n
        target[0][j], target[1][j], target[2][j] = x, y, t

    def state_dict(self) -> dict[str, Any]:
        current = [torch.cat([p[i] for p in self._current]) if self._current else self.memory[i][:0] for i in range(3)]
        return {
            "past": self.past,
            "seen": self.seen,
            "memory": [m.clone() for m in self.memory],
            "current": [c.clone() for c in current],
            "order": self._order.clone(),
            "cursor": self._cursor,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.past, self.seen, self._cursor = state["past"], state["seen"], state["cursor"]
        x, y, t = state["memory"]
        self.memory = (x.clone(), y.clone(), t.clone())
        x, y, t = state["current"]
        self._current = [(x.clone(), y.clone(), t.clone())] if len(y) else []
        self._size = len(self.memory[1]) + len(y)
        self._order = state["order"].clone()


def _joined(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``(x, y, task)`` parts concatenated, in order."""
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])
