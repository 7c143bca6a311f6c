"""Averaged gradient episodic memory, Avalanche's ``AGEMPlugin`` driven per micro-batch.

Avalanche's plugin keeps one dataset per experience forever and draws
``sample_size // experiences`` samples from each, which reaches zero (and
crashes) after ``sample_size`` experiences. Here its memory keeps the last
``max_experiences`` experiences as compact tensors, and the reference
batch is drawn from them with the learner's seeded RNG; the reference
gradient and the projection are Avalanche's own.

>>> AGEM(patterns_per_experience=10, sample_size=5, max_experiences=2).max_experiences
2
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from stream_learner.errors import ConfigError
from strategies._avalanche import AvalancheStrategy, dataset_tensors, quietly


@lru_cache(maxsize=1)
def _plugin_class() -> type:
    from avalanche.training.plugins import AGEMPlugin

    class StreamAGEMPlugin(AGEMPlugin):
        """A-GEM with a bounded, compact memory and seeded sampling."""

        def __init__(self, patterns_per_experience: int, sample_size: int, max_experiences: int) -> None:
            super().__init__(patterns_per_experience, sample_size)
            self.max_experiences = max_experiences

        @torch.no_grad()
        def update_memory(self, dataset: Any, num_workers: int = 0, **kwargs: Any) -> None:
            x, y, t = dataset_tensors(dataset)
            keep = torch.randperm(len(y))[: self.patterns_per_experience]
            self.buffers.append((x[keep], y[keep], t[keep]))
            del self.buffers[: -self.max_experiences]

        def sample_from_memory(self) -> list[torch.Tensor]:
            per = max(1, self.sample_size // len(self.buffers))
            parts = []
            for x, y, t in self.buffers:
                idx = torch.randperm(len(y))[:per]
                parts.append((x[idx], y[idx], t[idx]))
            return [torch.cat([p[i] for p in parts]) for i in range(3)]

    return StreamAGEMPlugin


class AGEM(AvalancheStrategy):
    """Averaged GEM (Avalanche AGEMPlugin): project gradients that would raise the loss on memory."""

    def __init__(self, patterns_per_experience: int = 100, sample_size: int = 64, max_experiences: int = 10) -> None:
        if int(patterns_per_experience) < 1 or int(sample_size) < 1 or int(max_experiences) < 1:
            raise ConfigError("A-GEM's patterns_per_experience, sample_size and max_experiences must be at least 1")
        self.patterns_per_experience = int(patterns_per_experience)
        self.sample_size = int(sample_size)
        self.max_experiences = int(max_experiences)

    def make_plugins(self) -> list[Any]:
        cls = _plugin_class()
        return [quietly(lambda: cls(self.patterns_per_experience, self.sample_size, self.max_experiences))]

    @property
    def memory(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The stored experiences, oldest first."""
        return [] if self.template is None else self.plugins[0].buffers

    def state_dict(self) -> dict[str, Any]:
        return {"experiences": self.experiences, "buffers": [list(b) for b in self.memory]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        device = self.template.device
        self.plugins[0].buffers = [tuple(t.to(device) for t in b) for b in state["buffers"]]
