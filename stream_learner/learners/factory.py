"""Building the learner a spec names: the model name's prefix picks the family.

The adapters import :mod:`stream_learner.learners.base`; this module imports
them, so the base never imports its own subclasses. Each family's builder
imports its adapter only when called, so a river run never imports torch.
"""

from __future__ import annotations

from typing import Any, Callable

from stream_learner.errors import ConfigError
from stream_learner.learners.base import Learner, LearnerSpec


def _torch(spec: LearnerSpec) -> Learner:
    from stream_learner.learners.torch import PRESETS as NETWORKS
    from stream_learner.learners.torch import build_torch_learner

    learner = build_torch_learner(spec)
    if spec.model.removeprefix("torch:") in NETWORKS:
        _check_network(spec, learner.factory, learner.factory_params)
    return learner


def _check_network(spec: LearnerSpec, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Build a preset network once, small, now: it is built for real at the first event, where a bad parameter would fail every event.

    Only the presets: a user's factory may be costly to call, or need the real input width.

    >>> build_learner(LearnerSpec("torch:mlp", {"hidden": "x"}))
    Traceback (most recent call last):
    stream_learner.errors.ConfigError: bad parameters for model 'torch:mlp': the network cannot be built: ValueError: invalid literal for int() with base 10: 'x'
    """
    try:
        factory(2, 2, **params)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"bad parameters for model {spec.model!r}: the network cannot be built: {type(exc).__name__}: {exc}") from None


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
