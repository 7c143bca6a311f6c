"""Building the learner a spec names: the model name's prefix picks the family.

The adapters import :mod:`stream_learner.learners.base`; this module imports
them, so the base never imports its own subclasses. Each family's builder
imports its adapter only when called, so a river run never imports torch.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from stream_learner.errors import ConfigError
from stream_learner.learners.base import Learner, LearnerSpec


def _torch(spec: LearnerSpec, check: bool = True) -> Learner:
    from stream_learner.learners.torch import PRESETS as NETWORKS
    from stream_learner.learners.torch import build_torch_learner

    learner = build_torch_learner(spec)
    if check and spec.model.removeprefix("torch:") in NETWORKS:
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


def _river(spec: LearnerSpec, check: bool = True) -> Learner:
    from stream_learner.learners.river import RiverLearner, build_river_learner

    learner = build_river_learner(spec)
    if not spec.strategy:
        return learner
    from stream_learner.learners.strategy import RiverStrategyLearner, load_strategies

    return RiverStrategyLearner(learner.model, load_strategies(spec.strategy, spec.strategy_params, "river"), RiverLearner)


PREFIXES: dict[str, Callable[..., Learner]] = {"torch:": _torch}
"""Model-name prefix -> the builder of that family (``builder(spec, check=True)``; ``check=False`` skips what only validates); any other name is a river model."""


def build_learner(spec: LearnerSpec) -> Learner:
    """Build the learner a spec names.

    ``torch:NAME`` specs build a torch learner (torch is imported only then);
    a ``strategy`` is loaded through the ``stream_learner.strategies`` entry points.
    A spec of plain values (what the CLI and the settings give) is built
    once into a :class:`LearnerPrototype`, which makes every later learner
    of that spec (each new model key's) at less cost; another is built each time.

    >>> build_learner(LearnerSpec("logreg")).family
    'river'
    >>> build_learner(LearnerSpec("logreg", strategy_params={"lam": 1}))
    Traceback (most recent call last):
    stream_learner.errors.ConfigError: strategy parameters were given without a strategy (--strategy NAME)
    """
    memo = _memo_key(spec)
    if memo is None:
        return _build(spec)
    with _LOCK:
        prototype = _PROTOTYPES.get(memo)
        if prototype is not None:
            _PROTOTYPES.move_to_end(memo)
    if prototype is None:
        prototype = LearnerPrototype(spec)  # outside the lock: a first build may import a library for seconds
        with _LOCK:
            _PROTOTYPES[memo] = prototype
            while len(_PROTOTYPES) > _MAX_PROTOTYPES:
                _PROTOTYPES.popitem(last=False)
    return prototype.new()


def _build(spec: LearnerSpec, check: bool = True) -> Learner:
    """Build from the spec, validating it (``check``: also what only validates, such as building a preset network once)."""
    if spec.strategy_params and not spec.strategy:
        raise ConfigError("strategy parameters were given without a strategy (--strategy NAME)")
    builder = next((b for prefix, b in PREFIXES.items() if spec.model.startswith(prefix)), _river)
    return builder(spec, check=check)


class LearnerPrototype:
    """New learners of one spec, each the learner ``spec`` builds, at less than the cost of building it.

    The first is built from the spec, checks included. Each later one is
    built again without the checks or, for a river model whose building
    costs :data:`COPY_GAIN` times more than unpickling a copy of the first
    (timed once here: an adaptive random forest, ~10 times), such a copy.
    Not for less: an unpickled object keeps its attributes in a dictionary,
    which makes every later step of the model slower (a logistic
    regression's by about 15%, a forest's not measurably). ``copy`` forces
    one way (``None``: as timed). A spec without a seed is built each time:
    copies would share one random state, where learners built apart draw their own.

    >>> prototype = LearnerPrototype(LearnerSpec("logreg"), copy=True)
    >>> first, second = prototype.new(), prototype.new()
    >>> first.learn({"x": 1.0}, True)
    >>> first.predict({"x": 1.0})[0], second.predict({"x": 1.0})[0]
    (True, False)
    """

    def __init__(self, spec: LearnerSpec, copy: bool | None = None) -> None:
        self.spec = spec
        learner = _build(spec)
        self._pickled: bytes | None = None
        if spec.seed is None or learner.family != "river" or copy is False:
            return
        try:
            pickled = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a model that cannot be pickled: each is built
            return
        if copy is None and _seconds(lambda: _build(spec, check=False)) < COPY_GAIN * _seconds(lambda: pickle.loads(pickled)):
            return
        self._pickled = pickled

    @property
    def copies(self) -> bool:
        """Whether new learners are copies of the prototype (else they are built from the spec)."""
        return self._pickled is not None

    def new(self) -> Learner:
        """A new learner, as ``build_learner(spec)`` would build it."""
        if self._pickled is not None:
            learner: Learner = pickle.loads(self._pickled)
            return learner
        return _build(self.spec, check=False)


COPY_GAIN = 4
"""How many times costlier than a copy building a river learner must be for new keys to get copies (see :class:`LearnerPrototype`)."""


def _seconds(make: Callable[[], Any]) -> float:
    """The least time of three calls of ``make``."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        make()
        times.append(time.perf_counter() - started)
    return min(times)


_PROTOTYPES: OrderedDict[bytes, LearnerPrototype] = OrderedDict()  # the last _MAX_PROTOTYPES specs built, by value
_MAX_PROTOTYPES = 16
_LOCK = threading.Lock()  # Bytewax workers are threads


def _memo_key(spec: LearnerSpec) -> bytes | None:
    """The spec as an exact key (1, 1.0 and True apart), when it holds plain values only; ``None``: build it each time.

    A spec holding an object (a river optimizer, through the Python API)
    gives every learner that same object today, which a copy would not.
    """
    fields = (spec.model, spec.params, spec.seed, spec.strategy, spec.strategy_params)
    if not _plain(fields):
        return None
    return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)


def _plain(value: Any) -> bool:
    """Whether ``value`` is made of JSON-like values only (str-keyed dicts, lists, tuples, strings, numbers, booleans, None)."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if type(value) in (list, tuple):
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False
