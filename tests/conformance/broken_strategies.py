"""Strategies that each break one rule the checks enforce (registered only while tests/conformance/test_checks.py runs)."""

from __future__ import annotations

from typing import Any, ClassVar

from river import base

from strategies import RiverStrategy, TorchStrategy, TrainStep


class Forgetful(TorchStrategy):
    """A penalty that grows at each boundary, but no state_dict: a restored learner starts its count again."""

    def __init__(self) -> None:
        self.boundaries = 0

    def penalty(self, step: TrainStep) -> Any:
        return 0.05 * 4**self.boundaries * sum((p**2).sum() for p in step.model.parameters())

    def on_boundary(self, x: Any, y: Any, task: Any) -> None:
        self.boundaries += 1


class Hoarder(TorchStrategy):
    """Keeps every concept's window, for ever."""

    def __init__(self) -> None:
        self.windows: list[Any] = []

    def on_boundary(self, x: Any, y: Any, task: Any) -> None:
        self.windows.append(x.clone())

    def state_dict(self) -> dict[str, Any]:
        return {"windows": list(self.windows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.windows = list(state["windows"])


class Shared(TorchStrategy):
    """Counts boundaries in a class attribute, which every copy shares."""

    seen: ClassVar[list[int]] = []

    def on_boundary(self, x: Any, y: Any, task: Any) -> None:
        self.seen.append(len(y))

    def state_dict(self) -> dict[str, Any]:
        return {"seen": len(self.seen)}


class Flickering(base.Classifier):
    """A classifier whose probabilities shift each time it is asked."""

    def __init__(self, model: base.Classifier) -> None:
        self.model = model
        self.asked = 0

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        self.model.learn_one(x, y)

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[Any, float]:
        self.asked += 1
        proba = self.model.predict_proba_one(x)
        return {k: v / (1 + self.asked) for k, v in proba.items()}


class Impure(RiverStrategy):
    """Wraps the model in one whose predictions change the model."""

    def wrap(self, model: Any) -> Any:
        return Flickering(model)


class RiverBoundaryRaises(RiverStrategy):
    """At a boundary: teaches the model a bogus example, then raises."""

    def on_boundary(self, model: Any) -> Any:
        model.learn_one({"f0": 1e6, "f1": -1e6}, True)
        raise RuntimeError("consolidation failed")


class TorchBoundaryRaises(TorchStrategy):
    """At a boundary: shifts every weight of the model, then raises."""

    def setup(self, model: Any, optimizer: Any, criterion: Any, device: Any) -> None:
        self.model = model

    def on_boundary(self, x: Any, y: Any, task: Any) -> None:
        import torch

        with torch.no_grad():
            for parameter in self.model.parameters():
                parameter.add_(1.0)
        raise RuntimeError("consolidation failed")
