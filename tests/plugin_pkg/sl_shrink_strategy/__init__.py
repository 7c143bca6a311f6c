"""A third-party strategy: pull every weight towards zero, harder after each boundary."""

from __future__ import annotations

from typing import Any

from strategies import TorchStrategy, TrainStep


class Shrink(TorchStrategy):
    """L2 pull towards zero whose strength doubles at each boundary (a test plug-in)."""

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """What stream_learner.checks runs it with: strong enough that a lost boundary count shows."""
        return {"strength": 0.05}

    def __init__(self, strength: float = 0.001) -> None:
        self.strength = float(strength)
        self.boundaries = 0

    def penalty(self, step: TrainStep) -> Any:
        scale = self.strength * 2**self.boundaries
        return scale * sum((p**2).sum() for p in step.model.parameters())

    def on_boundary(self, x: Any, y: Any, task: Any) -> None:
        self.boundaries += 1

    def state_dict(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.boundaries = state["boundaries"]
