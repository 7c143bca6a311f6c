"""The continual-learning strategy contract, and loading strategies by name.

A strategy is a small object whose hooks *return* what they contribute (a
penalty, extra replay samples, a replacement model); the learner combines
the contributions, so strategies need no ordering rules between them.
Two families of hooks exist, one per learner family:

* :class:`TorchStrategy`: called by the torch learner at each micro-batch
  (``replay_samples``, ``before_step``, ``penalty``, ``after_backward``,
  ``after_step``, optionally ``train_step`` for a strategy that owns the
  whole update) and at each boundary (``on_boundary`` with a bounded window
  of the concept that just ended). Its state is ``state_dict()``: tensors
  and plain containers only, so snapshots load with ``weights_only=True``.
* :class:`RiverStrategy`: ``wrap(model)`` once, ``on_boundary(model)`` may
  return a replacement model.

Strategies are found through the ``stream_learner.strategies`` entry-point
group (:data:`GROUP`); the built-ins register there too. ``a+b`` combines
strategies. The loader never imports a strategy package by name, only
through the entry points, so the core stays below the strategies layer.

>>> class Quiet(TorchStrategy):
...     '''Does nothing, quietly.'''
>>> Quiet().penalty(None) is None, sorted(Quiet.families)
(True, ['torch'])
>>> split_params({"ewc.ewc_lambda": 3, "mem_size": 10}, ["ewc", "replay"])
{'ewc': {'ewc_lambda': 3}, '*': {'mem_size': 10}}
"""

from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, Iterable

from stream_learner.errors import ConfigError, SnapshotError, StrategyLoadError
from stream_learner.state import expect_version, from_river_blob, river_blob

logger = logging.getLogger(__name__)

GROUP = "stream_learner.strategies"
"""The entry-point group every strategy (built-in or third-party) registers under."""

TORCH_HOOKS = ("setup", "replay_samples", "before_step", "penalty", "after_backward", "after_step", "on_boundary", "state_dict", "load_state_dict")
RIVER_HOOKS = ("wrap", "on_boundary", "state_dict", "load_state_dict")
STEP_HOOKS = ("replay_samples", "before_step", "penalty", "after_backward", "after_step")
"""The torch hooks called at every micro-batch; the learner calls only those a strategy overrides."""


@dataclass
class TrainStep:
    """What a torch strategy sees of one micro-batch update.

    ``x``, ``y`` and ``task`` hold the micro-batch followed by any replay
    samples; ``new`` is how many leading rows are the stream's own events.
    ``logits`` and ``loss`` are set once the forward pass has run. Hooks read
    these; they return their contribution instead of assigning here.
    """

    model: Any
    optimizer: Any
    criterion: Any
    x: Any
    y: Any
    task: Any
    new: int
    logits: Any = None
    loss: Any = None


class TorchStrategy:
    """Base of strategies for the ``torch`` family; every hook defaults to doing nothing.

    Subclasses set ``families``, a one-line docstring (shown by
    ``stream-learner strategies``) and override the hooks they need.
    Constructor arguments are the strategy's parameters (``--strategy-param``).
    """

    families: ClassVar[frozenset[str]] = frozenset({"torch"})

    def setup(self, model: Any, optimizer: Any, criterion: Any, device: Any) -> None:
        """The learner built its model, or rebuilt the optimizer after growing the output layer."""

    def replay_samples(self, step: TrainStep) -> tuple[Any, Any, Any] | None:
        """Extra ``(x, y, task)`` rows to train on with this micro-batch, or ``None``."""
        return None

    def before_step(self, step: TrainStep) -> None:
        """Before the forward pass (e.g. A-GEM's reference gradient)."""

    def train_step(self, step: TrainStep) -> Any:
        """Perform the whole update and return its loss, or ``None`` to let the learner do it.

        Only a meta-learning strategy (La-MAML) does this; at most one strategy
        of a combination may.
        """
        return None

    def penalty(self, step: TrainStep) -> Any:
        """A loss term to add (EWC, LwF), or ``None``."""
        return None

    def after_backward(self, step: TrainStep) -> None:
        """After ``backward``, before the optimizer step; the one hook that may project gradients (A-GEM)."""

    def after_step(self, step: TrainStep) -> None:
        """After the optimizer step."""

    def on_boundary(self, x: Any, y: Any, task: Any) -> None:
        """A concept ended; ``x, y, task`` are a bounded window of its most recent labelled events."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers only (loaded with ``weights_only=True``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (after :meth:`setup`)."""


def overrides(strategy: Any, hook: str) -> bool:
    """Whether ``strategy`` does something in ``hook`` (its class replaces :class:`TorchStrategy`'s no-op).

    >>> class Quiet(TorchStrategy):
    ...     def penalty(self, step): return None
    >>> overrides(Quiet(), "penalty"), overrides(Quiet(), "after_step")
    (True, False)
    """
    method = getattr(type(strategy), hook, None)
    return method is not None and method is not getattr(TorchStrategy, hook)


class RiverStrategy:
    """Base of strategies for the ``river`` family."""

    families: ClassVar[frozenset[str]] = frozenset({"river"})

    def wrap(self, model: Any) -> Any:
        """Return the estimator to learn with (e.g. an ensemble around ``model``)."""
        return model

    def on_boundary(self, model: Any) -> Any:
        """A new concept starts: return a replacement estimator, or ``None`` to keep ``model``."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What the strategy itself learned, as plain values (river objects as :func:`~stream_learner.state.river_blob`)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass(frozen=True)
class StrategyInfo:
    """One installed strategy, as ``stream-learner strategies`` lists it."""

    name: str
    families: tuple[str, ...]
    origin: str
    description: str
    target: str


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return dict(_installed_entry_points())  # a copy: callers may not change what the next one reads


def rescan_installed() -> None:
    """Read the installed strategies again on their next use: for a process that installs a plug-in while it runs (tests do)."""
    _installed_entry_points.cache_clear()


@functools.cache
def _installed_entry_points() -> dict[str, metadata.EntryPoint]:
    """The installed strategies' entry points, read once per process.

    Reading them scans every installed distribution (tens of milliseconds),
    and every torch learner built (each new key of a fleet, each restore)
    loads its strategies: a plug-in installed while a service runs is seen
    after its restart.
    """
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def _origin(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value.partition(".")[0]


def _describe(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def load_class(name: str, family: str | None = None) -> type[Any]:
    """Import one strategy class by its entry-point name and validate it.

    Raises:
        StrategyLoadError: unknown name, import failure, not a strategy, or
            (when ``family`` is given) a strategy that does not support it.
    """
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise StrategyLoadError(f"unknown strategy {name!r}; installed strategies: {known}")
    ep = eps[name]
    where = f"strategy plug-in {name!r} ({ep.value}, from package {_origin(ep)})"
    try:
        obj = ep.load()
    except Exception as exc:  # any failure of third-party code at import time
        raise StrategyLoadError(f"{where} failed to import: {type(exc).__name__}: {exc}") from None
    families = getattr(obj, "families", None)
    if not inspect.isclass(obj) or not isinstance(families, (frozenset, set, tuple, list)) or not families:
        raise StrategyLoadError(f"{where} is not a strategy: expected a class with a non-empty 'families' attribute, got {obj!r}")
    for fam in families:
        hooks = TORCH_HOOKS if fam == "torch" else RIVER_HOOKS if fam == "river" else ()
        missing = [h for h in hooks if not callable(getattr(obj, h, None))]
        if missing:
            raise StrategyLoadError(f"{where} is not a {fam} strategy: it lacks {', '.join(missing)}")
    if family is not None and family not in families:
        raise StrategyLoadError(f"{where} supports {', '.join(sorted(families))} models, not {family} models")
    return obj


def available() -> list[StrategyInfo]:
    """Every installed strategy, sorted by name; ones that fail to load say why in their description."""
    infos = []
    for name, ep in sorted(_entry_points().items()):
        try:
            cls = load_class(name)
            families = tuple(sorted(cls.families))
            description = _describe(cls)
        except StrategyLoadError as exc:
            families, description = (), f"(cannot load: {exc})"
        infos.append(StrategyInfo(name, families, _origin(ep), description, ep.value))
    return infos


def split_params(params: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """Group ``name.param`` keys by strategy; unqualified ones go under ``'*'``."""
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        head, dot, rest = key.partition(".")
        if dot and head in names:
            grouped.setdefault(head, {})[rest] = value
        else:
            grouped.setdefault("*", {})[key] = value
    return grouped


def _accepts(cls: type) -> tuple[set[str], bool]:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def load_strategies(spec: str, params: dict[str, Any], family: str) -> list[Any]:
    """Build the strategies ``spec`` names (``ewc``, ``ewc+replay``, ``avalanche:dotted.Plugin``).

    Each unqualified parameter goes to every strategy of the combination
    that accepts it; ``name.param`` goes to one. A parameter no strategy
    accepts is a :class:`ConfigError`.
    """
    parts = [p.strip() for p in spec.split("+")]
    if not all(parts):
        raise ConfigError(f"bad strategy {spec!r}: use a name, or names joined by '+' (e.g. ewc+replay)")
    names = [p.partition(":")[0] for p in parts]
    if len(set(names)) != len(names):
        raise ConfigError(f"strategy {spec!r} names the same strategy twice")
    grouped = split_params(params, names)
    shared = dict(grouped.get("*", {}))
    used: set[str] = set()
    strategies = []
    for part, name in zip(parts, names):
        cls = load_class(name, family)
        accepted, var_kw = _accepts(cls)
        kwargs = {k: v for k, v in shared.items() if var_kw or k in accepted}
        used.update(kwargs)
        own = grouped.get(name, {})
        unknown = [k for k in own if not var_kw and k not in accepted]
        if unknown:
            raise ConfigError(f"strategy {name!r} has no parameter {unknown[0]!r} (parameters: {', '.join(sorted(accepted)) or 'none'})")
        kwargs.update(own)
        arg = part.partition(":")[2]
        if arg:
            if "target" not in accepted:
                raise ConfigError(f"strategy {name!r} takes no ':' argument (got {part!r})")
            kwargs["target"] = arg
        try:
            strategies.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad parameters for strategy {name!r}: {exc}") from None
    unused = sorted(set(shared) - used)
    if unused:
        raise ConfigError(f"no strategy of {spec!r} takes parameter {unused[0]!r}")
    owners = [n for n, s in zip(names, strategies) if family == "torch" and overrides(s, "train_step")]
    if len(owners) > 1:
        raise ConfigError(f"strategies {' and '.join(owners)} each perform the whole update; they cannot be combined")
    return strategies


def describe(strategies: Iterable[Any]) -> str:
    """A short name for a list of strategy objects (for logs)."""
    return "+".join(type(s).__name__ for s in strategies) or "none"


class RiverStrategyLearner:
    """A river learner whose boundaries go through river strategies.

    >>> from stream_learner.learners.river import RiverLearner
    >>> from river import linear_model
    >>> class Forget(RiverStrategy):
    ...     '''Start afresh at each boundary.'''
    ...     def on_boundary(self, model):
    ...         return model.clone()
    >>> learner = RiverStrategyLearner(linear_model.LogisticRegression(), [Forget()], RiverLearner)
    >>> learner.learn({"x": 1.0}, True); learner.on_boundary(1)
    >>> learner.predict({"x": 1.0})
    (False, {False: 0.5, True: 0.5})
    """

    family = "river"

    def __init__(self, model: Any, strategies: list[Any], learner_cls: Any) -> None:
        for strategy in strategies:
            model = strategy.wrap(model)
        self.strategies = strategies
        self._learner_cls = learner_cls
        self._bind(learner_cls(model))

    def _bind(self, inner: Any) -> None:
        self.inner = inner
        self.task = inner.task
        self.predict = inner.predict
        self.learn = inner.learn

    @property
    def model(self) -> Any:
        """The river estimator currently learning."""
        return self.inner.model

    def state_dict(self) -> dict[str, Any]:
        """The current (wrapped) river model as one blob, and each strategy's state."""
        return {
            "version": 1,
            "family": self.family,
            "model": river_blob(self.inner.model),
            "strategies": [strategy.state_dict() for strategy in self.strategies],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], spec: Any) -> RiverStrategyLearner:
        """The learner :meth:`state_dict` describes; ``spec`` (a :class:`~stream_learner.learners.base.LearnerSpec`) names its strategies."""
        from stream_learner.learners.river import RiverLearner

        expect_version(state, "the river strategy learner", 1)
        strategies = load_strategies(spec.strategy, spec.strategy_params, "river")
        if len(strategies) != len(state["strategies"]):
            raise SnapshotError(f"the snapshot holds the state of {len(state['strategies'])} strategies, but this run asks for {spec.strategy!r}")
        for strategy, strategy_state in zip(strategies, state["strategies"]):
            strategy.load_state_dict(strategy_state)
        learner = cls.__new__(cls)
        learner.strategies = strategies
        learner._learner_cls = RiverLearner
        learner._bind(RiverLearner(from_river_blob(state["model"])))  # wrapped already: the strategies' wrap is not called again
        return learner

    def on_boundary(self, concept: int) -> None:
        model = self.inner.model
        replaced = False
        for strategy in self.strategies:
            new = strategy.on_boundary(model)
            if new is not None:
                model, replaced = new, True
        if replaced:
            self._bind(self._learner_cls(model))
