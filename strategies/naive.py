"""Naive fine-tuning: the baseline every continual-learning strategy is measured against.

>>> strategy = Naive()
>>> strategy.penalty(None), strategy.on_boundary(None), sorted(Naive.families)
(None, None, ['river', 'torch'])
"""

from __future__ import annotations

from typing import Any

from stream_learner.learners.strategy import RiverStrategy, TorchStrategy


class Naive(TorchStrategy, RiverStrategy):
    """Plain fine-tuning on each micro-batch (torch) or event (river); nothing protects old concepts."""

    families = frozenset({"torch", "river"})

    def on_boundary(self, *args: Any) -> None:
        return None
