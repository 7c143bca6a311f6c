"""Gradient episodic memory, Avalanche's ``GEMPlugin`` driven per micro-batch.

Avalanche's plugin keeps ``patterns_per_experience`` samples of every
experience forever and solves a quadratic programme with one constraint per
experience at every update. Here its memory keeps the last
``max_experiences`` experiences (renumbered from 0, so the plugin's own loop
over ``range(experiences)`` stays valid); the reference gradients, the
quadratic programme (``quadprog`` through ``qpsolvers``) and the projection
are Avalanche's own.

>>> GEM(patterns_per_experience=10, max_experiences=2).max_experiences
2
"""

from __future__ import annotations

from typing import Any

from strategies._avalanche import AvalancheStrategy, quietly
from stream_learner.errors import ConfigError


class GEM(AvalancheStrategy):
    """Gradient episodic memory (Avalanche GEMPlugin): project gradients so no stored experience's loss rises.

    Args:
        patterns_per_experience: events kept per concept, a random subset of the ended concept's window; every update runs an extra pass over each concept's events.
        memory_strength: margin (0 or more; the paper's gamma) added to the projection's constraints; larger favours lowering the stored concepts' losses over the new concept.
        max_experiences: how many of the latest concepts keep their memory, one constraint each in the quadratic programme of every update; lower it if updates are slow.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"patterns_per_experience": 10, "max_experiences": 3}

    def __init__(self, patterns_per_experience: int = 100, memory_strength: float = 0.5, max_experiences: int = 10) -> None:
        if int(patterns_per_experience) < 1 or int(max_experiences) < 1:
            raise ConfigError("GEM's patterns_per_experience and max_experiences must be at least 1")
        if float(memory_strength) < 0:
            raise ConfigError(f"GEM's memory_strength must not be negative, not {memory_strength}")
        self.patterns_per_experience = int(patterns_per_experience)
        self.memory_strength = float(memory_strength)
        self.max_experiences = int(max_experiences)

    def make_plugins(self) -> list[Any]:
        from avalanche.training.plugins import GEMPlugin

        return [quietly(lambda: GEMPlugin(self.patterns_per_experience, self.memory_strength))]

    def after_boundary(self) -> None:
        """Keep the last ``max_experiences`` memories, renumbered from 0."""
        plugin = self.plugins[0]
        kept = sorted(plugin.memory_x)[-self.max_experiences :]
        plugin.memory_x = {i: plugin.memory_x[k] for i, k in enumerate(kept)}
        plugin.memory_y = {i: plugin.memory_y[k] for i, k in enumerate(kept)}
        plugin.memory_tid = {i: plugin.memory_tid[k] for i, k in enumerate(kept)}
        self.template.clock.train_exp_counter = len(kept)

    @property
    def memory(self) -> list[tuple[Any, Any, Any]]:
        """The stored experiences, oldest first, as ``(x, y, task)`` tensors."""
        if self.template is None:
            return []
        plugin = self.plugins[0]
        return [(plugin.memory_x[k], plugin.memory_y[k], plugin.memory_tid[k]) for k in sorted(plugin.memory_x)]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": [[x.clone(), y.clone(), t.clone()] for x, y, t in self.memory]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        plugin = self.plugins[0]
        device = self.template.device
        memory = [tuple(t.to(device) for t in m) for m in state["memory"]]
        plugin.memory_x = {i: m[0] for i, m in enumerate(memory)}
        plugin.memory_y = {i: m[1] for i, m in enumerate(memory)}
        plugin.memory_tid = {i: m[2] for i, m in enumerate(memory)}
