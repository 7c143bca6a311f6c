"""The checks every strategy must pass, built-in or third-party (river's ``check_estimator`` is the model).

``check_strategy`` runs every check on a registered strategy, for every
learner family it claims, and raises :class:`CheckFailed` (an
``AssertionError``) naming the first check that fails::

    from stream_learner.checks import check_strategy
    from mypkg.strategy import Mine

    check_strategy(Mine)  # or check_strategy("mine"), its entry-point name

``list_checks`` lists them, for ``pytest.mark.parametrize``::

    @pytest.mark.parametrize("check", list_checks(Mine), ids=str)
    def test_mine(check):
        check()

The strategy must be installed (declared under the ``stream_learner.strategies``
entry points; ``pip install -e .`` during development): snapshots rebuild it by
that name. It runs with the parameters its ``unit_test_params()`` classmethod
returns (small settings so the checks stay fast; none if it has no such
method), or with ``params`` when given.

>>> [str(check) for check in list_checks("reset")]  # doctest: +NORMALIZE_WHITESPACE
['reset-river-predicting_before_learning_works', 'reset-river-predicting_is_pure',
 'reset-river-snapshot_round_trip_is_exact', 'reset-river-clones_are_independent',
 'reset-river-memory_stays_bounded', 'reset-river-boundary_mid_batch_is_as_one_per_call']
"""

from __future__ import annotations

import copy
import math
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from stream_learner.learners.base import Learner, LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.from_state import learner_from_state
from stream_learner.learners.strategy import GROUP, available, load_class
from stream_learner.state import decode, encode

__all__ = ["MODELS", "Check", "CheckFailed", "check_strategy", "list_checks"]

MODELS = {
    "torch": LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=1),
    "river": LearnerSpec("logreg", seed=1),
}
"""The small model each family's checks run the strategy with."""

Example = tuple[dict[str, float], bool]


class CheckFailed(AssertionError):
    """A strategy failed a check; the message names the check, the strategy and the learner family."""


def _expect(condition: bool, message: str) -> None:
    """Like ``assert``, but kept under ``python -O``."""
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class Check:
    """One check of one strategy with one learner family; call it to run it."""

    name: str
    strategy: str
    family: str
    spec: LearnerSpec
    function: Callable[[LearnerSpec], None]

    def __str__(self) -> str:
        return f"{self.strategy}-{self.family}-{self.name}"

    def __call__(self) -> None:
        try:
            self.function(self.spec)
        except Exception as exc:  # a strategy's own error fails the check that ran into it, by name
            why = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
            raise CheckFailed(f"check {self.name!r} failed for strategy {self.strategy!r} with a {self.family} learner: {why}") from exc


def _events(n: int, concept: int, seed: int) -> list[Example]:
    """``n`` seeded events of one concept: the sign of ``f0``, flipped in odd concepts."""
    rng = random.Random(seed * 1000 + concept)
    out = []
    for _ in range(n):
        x = {f"f{j}": rng.gauss(0.0, 1.0) for j in range(5)}
        out.append((x, (x["f0"] > 0) != (concept % 2 == 1)))
    return out


def _feed(learner: Learner, concepts: range, per_concept: int = 20, seed: int = 0) -> None:
    """Test-then-train on each concept's events, a boundary after each."""
    for c in concepts:
        for x, y in _events(per_concept, c, seed):
            learner.predict(x)
            learner.learn(x, y)
        learner.on_boundary(c + 1)


def _probe() -> list[dict[str, float]]:
    return [x for x, _ in _events(8, 99, 5)]


def _predictions(learner: Learner) -> list[Any]:
    out = []
    for x in _probe():
        label, proba = learner.predict(x)
        out.append((label, None if proba is None else {k: round(v, 6) for k, v in proba.items()}))
    return out


def _state(learner: Any) -> bytes:
    return pickle.dumps(learner)


def _restored(learner: Any, spec: LearnerSpec) -> Any:
    """``learner`` as a snapshot gives it back: its state, encoded and decoded (plain data only), restored by its family's ``from_state``."""
    return learner_from_state(decode(encode(learner.state_dict())), spec)


def predicting_before_learning_works(spec: LearnerSpec) -> None:
    """A fresh learner snapshots, predicts, takes a boundary, then learns."""
    learner = _restored(build_learner(spec), spec)
    _label, proba = learner.predict(_probe()[0])
    _expect(proba is None or isinstance(proba, dict), f"a prediction's probabilities are a dict or None, not {type(proba).__name__}")
    learner.on_boundary(1)
    learner.learn(*_events(1, 0, 0)[0])


def predicting_is_pure(spec: LearnerSpec) -> None:
    """Predicting twice gives the same answers and changes nothing the learner does next."""
    learner = build_learner(spec)
    _feed(learner, range(2))
    before = _state(learner)
    first = _predictions(learner)
    _expect(_predictions(learner) == first, "predicting the same events twice gave different predictions")
    if spec.model.startswith("torch:"):
        _expect(_state(learner) == before, "predicting changed the learner's state")
    # whatever a library caches while predicting, what the learner does next is unchanged
    untouched = pickle.loads(before)
    _feed(learner, range(2, 3), seed=3)
    _feed(untouched, range(2, 3), seed=3)
    _expect(_predictions(learner) == _predictions(untouched), "a learner that had predicted learned differently from one that had not")


def snapshot_round_trip_is_exact(spec: LearnerSpec) -> None:
    """A learner restored from its snapshot's state predicts and learns exactly as the original, a partial micro-batch pending."""
    learner = build_learner(spec)
    _feed(learner, range(3))
    for x, y in _events(7, 3, 0):
        learner.learn(x, y)
    restored = _restored(learner, spec)
    _expect(_predictions(restored) == _predictions(learner), "the restored learner predicts differently")
    _feed(learner, range(3, 5), seed=1)
    _feed(restored, range(3, 5), seed=1)
    _expect(_predictions(restored) == _predictions(learner), "the restored learner learned differently from the original")
    if spec.model.startswith("torch:"):
        _expect(_state(restored) == _state(learner), "the restored learner's state differs from the original's after the same events")


def clones_are_independent(spec: LearnerSpec) -> None:
    """A deep copy learning leaves the original as it was; ``clone()`` is a fresh learner."""
    learner = build_learner(spec)
    _feed(learner, range(2))
    clone = copy.deepcopy(learner)
    predictions = _predictions(learner)
    before = _state(learner)
    _feed(clone, range(2, 4), seed=2)
    _expect(_state(learner) == before and _predictions(learner) == predictions, "a copy's learning changed the original")
    fresh = learner.clone() if hasattr(learner, "clone") else build_learner(spec)
    _expect(fresh.predict(_probe()[0]) == build_learner(spec).predict(_probe()[0]), "clone() is not a fresh learner")


def memory_stays_bounded(spec: LearnerSpec) -> None:
    """The pickled state grows by at most 15% (plus 4 KiB) over 24 more concepts."""
    learner = build_learner(spec)
    _feed(learner, range(8), per_concept=15)
    early = len(_state(learner))
    _feed(learner, range(8, 32), per_concept=15)
    late = len(_state(learner))
    _expect(late <= early * 1.15 + 4096, f"the state grew from {early} to {late} bytes over 24 more boundaries")


def boundary_mid_batch_is_as_one_per_call(spec: LearnerSpec) -> None:
    """An explicit task change at event 100 of a 200-event batch: the engine's predictions and learner state are as one event per call.

    Both are also as the learner driven by hand with the boundary *before*
    event 100: the event that carries a new task is the new task's first,
    predicted and learned by the model after the boundary.
    """
    from stream_learner.engine import EngineConfig, KeyedLearner
    from stream_learner.events import Event

    pairs = _events(100, 0, 7) + _events(100, 1, 7)
    events = [Event(f"e{i}", "k", x, y, 0 if i < 100 else 1, 0, i) for i, (x, y) in enumerate(pairs)]
    config = EngineConfig(learner=spec, detector=None, metrics_every=50)
    whole, one_by_one = KeyedLearner("k", config), KeyedLearner("k", config)
    batched = list(whole.process(events, now=0.0).predictions)
    single = [p for event in events for p in one_by_one.process([event], now=0.0).predictions]
    by_hand = build_learner(spec)
    expected = []
    for i, (x, y) in enumerate(pairs):
        if i == 100:
            by_hand.on_boundary(1)
        expected.append(by_hand.predict(x))
        by_hand.learn(x, y)
    for name, got in (("in one batch", batched), ("one event per call", single)):
        _expect(len(got) == len(events), f"{len(events)} events gave {len(got)} predictions {name}")
        for i, (p, (label, proba)) in enumerate(zip(got, expected)):
            _expect(
                p["prediction"] == label and _close(p["proba"], proba),
                f"event {i} ({'after' if i >= 100 else 'before'} the boundary at event 100) fed {name} was predicted "
                f"{p['prediction']!r} {p['proba']}, but {label!r} {proba} by the learner with the boundary before event 100",
            )
        _expect([p["concept"] for p in got] == [0] * 100 + [1] * 100, f"predictions fed {name} carry the wrong concepts")
    state = _state(by_hand)
    _expect(_state(whole.learner) == state, "the learner fed one batch ends in another state than one fed one event at a time")
    _expect(_state(one_by_one.learner) == state, "the learner fed one event per call ends in another state than one fed one event at a time")
    _expect(whole.learned == one_by_one.learned == 200 and whole.concept == one_by_one.concept == 1, "the engine's counts differ")


def _close(a: dict[Any, float] | None, b: dict[Any, float] | None) -> bool:
    """Probabilities equal up to float rounding (the torch learner predicts a batch in one forward pass)."""
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], abs_tol=1e-5) for k in a)


CHECKS = (
    predicting_before_learning_works,
    predicting_is_pure,
    snapshot_round_trip_is_exact,
    clones_are_independent,
    memory_stays_bounded,
    boundary_mid_batch_is_as_one_per_call,
)


def _name_of(strategy: type | str) -> str:
    """The entry-point name a strategy class is registered under."""
    if isinstance(strategy, str):
        return strategy
    for info in available():
        if info.families and load_class(info.name) is strategy:
            return info.name
    raise CheckFailed(
        f"check 'registered' failed: {strategy.__module__}.{strategy.__qualname__} is not registered under the {GROUP!r} "
        "entry points (declare it in your package's pyproject.toml, then pip install it; -e while developing)"
    )


def list_checks(strategy: type | str, params: dict[str, Any] | None = None) -> list[Check]:
    """Every check of ``strategy`` (its class or entry-point name), for each learner family it claims.

    ``params`` are the strategy's parameters; by default what its
    ``unit_test_params()`` classmethod returns, else none.
    """
    name = _name_of(strategy)
    cls = load_class(name)
    if params is None:
        hook = getattr(cls, "unit_test_params", None)
        params = dict(hook()) if hook is not None else {}
    families = [f for f in sorted(cls.families) if f in MODELS]
    if not families:
        raise CheckFailed(f"strategy {name!r} claims no family these checks know ({', '.join(sorted(cls.families))}; known: {', '.join(MODELS)})")
    specs = {family: replace(MODELS[family], strategy=name, strategy_params=params) for family in families}
    return [Check(function.__name__, name, family, spec, function) for family, spec in specs.items() for function in CHECKS]


def check_strategy(strategy: type | str, params: dict[str, Any] | None = None) -> None:
    """Run every check of ``strategy``; raise :class:`CheckFailed` naming the first that fails."""
    for check in list_checks(strategy, params):
        check()
