"""Continual-learning strategies: built-ins, and the protocol third-party ones implement.

Every strategy, built-in or not, is a class registered under the
``stream_learner.strategies`` entry-point group (see ``pyproject.toml``).
A third-party package declares, for example::

    [project.entry-points."stream_learner.strategies"]
    mine = "mypkg.strategy:Mine"

and ``mypkg.strategy.Mine`` subclasses :class:`TorchStrategy` (hooks that
*return* a penalty, replay samples, ...) or :class:`RiverStrategy`.

>>> {"naive", "ewc", "replay", "gem", "cumulative"} <= {info.name for info in available()}
True
"""

from stream_learner.learners.strategy import RiverStrategy, StrategyInfo, TorchStrategy, TrainStep, available, load_strategies

__all__ = ["RiverStrategy", "StrategyInfo", "TorchStrategy", "TrainStep", "available", "load_strategies"]
