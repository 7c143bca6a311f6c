"""Experience replay from an Avalanche storage policy (reservoir or class-balanced).

At each boundary the Avalanche storage policy (what ``ReplayPlugin`` runs
in its after-training-experience hook) is updated from the window of the
concept that ended; the buffer is then compacted
into its own tensors (Avalanche's buffer would otherwise keep every parent
window alive). Each micro-batch is trained together with
``batch_size_mem`` samples drawn, without replacement, from that buffer.

>>> Replay(mem_size=50, policy="class_balanced").policy
'class_balanced'
"""

from __future__ import annotations

from typing import Any

import torch

from strategies._avalanche import AvalancheStrategy, dataset_tensors, quietly, reservoir_weights, restore_reservoir, window_dataset
from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TrainStep


class Replay(AvalancheStrategy):
    """Experience replay (Avalanche storage policies) with a reservoir or class-balanced buffer.

    Args:
        mem_size: buffer capacity in events, filled at each boundary from the ended concept's window; larger remembers more of the past but costs memory and snapshot size.
        policy: reservoir keeps a uniform sample of past events; class_balanced splits the buffer evenly over the classes seen: use it when classes arrive one after another.
        batch_size_mem: buffer events replayed with each micro-batch; unset, as many as the micro-batch's new events; raise it to weigh the past more.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"mem_size": 20}

    POLICIES = ("reservoir", "class_balanced")

    def __init__(self, mem_size: int = 200, policy: str = "reservoir", batch_size_mem: int | None = None) -> None:
        if policy not in self.POLICIES:
            raise ConfigError(f"replay policy must be one of {', '.join(self.POLICIES)}, not {policy!r}")
        if int(mem_size) < 1:
            raise ConfigError(f"mem_size must be at least 1, not {mem_size}")
        if batch_size_mem is not None and int(batch_size_mem) < 1:
            raise ConfigError(f"batch_size_mem must be at least 1, not {batch_size_mem}")
        self.mem_size = int(mem_size)
        self.policy = policy
        self.batch_size_mem = None if batch_size_mem is None else int(batch_size_mem)
        self.memory = (torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        self.storage: Any = None

    def make_plugins(self) -> list[Any]:
        from avalanche.training.storage_policy import ClassBalancedBuffer, ReservoirSamplingBuffer

        if self.policy == "reservoir":
            self.storage = quietly(lambda: ReservoirSamplingBuffer(self.mem_size))
        else:
            self.storage = quietly(lambda: ClassBalancedBuffer(self.mem_size, adaptive_size=True))
        return []

    def replay_samples(self, step: TrainStep) -> tuple[Any, Any, Any] | None:
        x, y, t = self.memory
        n = len(y)
        if n == 0:
            return None
        k = min(n, self.batch_size_mem or step.new)
        idx = torch.randperm(n)[:k]
        return x[idx], y[idx], t[idx]

    def after_boundary(self) -> None:
        storage = self.storage
        quietly(lambda: storage.post_adapt(self.template, self.template.experience))
        if self.policy == "reservoir":
            x, y, t = dataset_tensors(storage.buffer)
            storage.buffer = window_dataset(x, y, t)
            self.memory = (x, y, t)
            return
        parts = []
        for group in storage.buffer_groups.values():
            gx, gy, gt = dataset_tensors(group.buffer)
            group.buffer = window_dataset(gx, gy, gt)
            parts.append((gx, gy, gt))
        self._set_memory(parts)

    def _set_memory(self, parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        parts = [p for p in parts if len(p[1])]
        if parts:
            self.memory = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]))

    def __len__(self) -> int:
        return len(self.memory[1])

    def state_dict(self) -> dict[str, Any]:
        storage = self.storage
        state = super().state_dict()
        if storage is None:
            return state
        if self.policy == "reservoir":
            state["buffer"] = [*self.memory, reservoir_weights(storage)]
        else:
            groups = {}
            for c, group in storage.buffer_groups.items():
                gx, gy, gt = dataset_tensors(group.buffer)
                groups[int(c)] = [gx, gy, gt, reservoir_weights(group), int(group.max_size)]
            state["groups"] = groups
            state["seen"] = sorted(int(c) for c in storage.seen_classes)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        from avalanche.training.storage_policy import ReservoirSamplingBuffer

        storage = self.storage
        if self.policy == "reservoir":
            x, y, t, w = state["buffer"]
            restore_reservoir(storage, x, y, t, w)
            self.memory = (x, y, t)
            return
        storage.buffer_groups = {}
        parts = []
        for c, (gx, gy, gt, w, size) in state["groups"].items():
            group = ReservoirSamplingBuffer(size)
            restore_reservoir(group, gx, gy, gt, w)
            storage.buffer_groups[c] = group
            parts.append((gx, gy, gt))
        storage.seen_classes = set(state["seen"])
        self._set_memory(parts)
