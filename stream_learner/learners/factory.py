"""Building the learner a spec names: the model name's prefix picks the family.

The adapters import :mod:`stream_learner.learners.base`; this module imports
them, so the base never imports its own subclasses. Each family's builder
imports its adapter only when called, so a river run never imports torch.
"""

from __future__ import annotations

from typing import Callable

from stream_learner.errors import ConfigError
from stream_learner.learners.base import Learner, LearnerSpec


def _torch(spec: LearnerSpec) -> Learner:
    from stream_learner.learners.torch import build_torch_learner

    return build_torch_learner(spec)


def _river(spec: LearnerSpec) -> Learner:
    from stream_learner.learners.river import RiverLearner, build_river_learner

    learner = build_river_learner(spec)
    if not spec.strategy:
        return learner
    from stream_learner.learners.strategy import RiverStrategyLearner, load_strategies

    return RiverStrategyLearner(learner.model, load_strategies(spec.strategy, spec.strategy_params, "river"), RiverLearner)


PREFIXES: dict[str, Callable[[LearnerSpec], Learner]] = {"torch:": _torch}
"""Model-name prefix -> the builder of that family; any other name is a river model."""


def build_learner(spec: LearnerSpec) -> Learner:
    """Build the learner a spec names.

    ``torch:NAME`` specs build a torch learner (torch is imported only then);
    a ``strategy`` is loaded through the ``stream_learner.strategies`` entry points.

    >>> build_learner(LearnerSpec("logreg")).family
    'river'
    >>> build_learner(LearnerSpec("logreg", strategy_params={"lam": 1}))
    Traceback (most recent call last):
    stream_learner.errors.ConfigError: strategy parameters were given without a strategy (--strategy NAME)
    """
    if spec.strategy_params and not spec.strategy:
        raise ConfigError("strategy parameters were given without a strategy (--strategy NAME)")
    builder = next((b for prefix, b in PREFIXES.items() if spec.model.startswith(prefix)), _river)
    return builder(spec)
