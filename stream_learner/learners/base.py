"""The learner role: predict one, learn one, consolidate at a boundary."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from stream_learner.errors import ConfigError, parse_json_object

Task = Literal["classification", "regression"]


@runtime_checkable
class Learner(Protocol):
    """What the engine needs from a model adapter.

    ``predict`` must be pure (it never changes what the model will do next);
    ``learn`` updates the model with one labelled example;
    ``on_boundary`` is called when a new concept starts (drift or task switch).
    A learner must pickle: pickling is its snapshot.

    Optionally, ``lookahead(xs)`` is told the feature dicts of a batch
    before they are predicted one by one, so that a learner may predict
    them together (the torch learner does, up to its next update).
    """

    family: str
    task: Task

    def predict(self, x: dict[Any, Any]) -> tuple[Any, dict[Any, float] | None]:
        """Return ``(prediction, probabilities or None)``."""
        ...

    def learn(self, x: dict[Any, Any], y: Any) -> None:
        """Learn from one labelled example."""
        ...

    def on_boundary(self, concept: int) -> None:
        """A new concept starts; consolidate what was learned on the previous one."""
        ...


@dataclass(frozen=True)
class LearnerSpec:
    """What to build: a model spec (preset name or dotted path) and its parameters."""

    model: str = "logreg"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = 42
    strategy: str | None = None
    strategy_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        model: str,
        params_json: str | None = None,
        seed: int | None = 42,
        strategy: str | None = None,
        strategy_params: dict[str, Any] | None = None,
    ) -> LearnerSpec:
        """Build from CLI-style strings; bad JSON is a :class:`ConfigError`."""
        params = parse_json_object(params_json, "model parameters", '{"l2": 0.01}')
        return cls(model=model, params=params, seed=seed, strategy=strategy, strategy_params=dict(strategy_params or {}))


def build_learner(spec: LearnerSpec) -> Learner:
    """Build the learner a spec names.

    ``torch:NAME`` specs build a torch learner (torch is imported only then);
    a ``strategy`` is loaded through the ``stream_learner.strategies`` entry points.

    >>> build_learner(LearnerSpec("logreg")).family
    'river'
    """
    if spec.strategy_params and not spec.strategy:
        raise ConfigError("strategy parameters were given without a strategy (--strategy NAME)")
    if spec.model.startswith("torch:"):
        from stream_learner.learners.torch import build_torch_learner

        return build_torch_learner(spec)
    from stream_learner.learners.river import RiverLearner, build_river_learner

    learner = build_river_learner(spec)
    if spec.strategy:
        from stream_learner.learners.strategy import RiverStrategyLearner, load_strategies

        strategies = load_strategies(spec.strategy, spec.strategy_params, "river")
        return RiverStrategyLearner(learner.model, strategies, RiverLearner)
    return learner


class Journal:
    """Undo for a learner whose ``learn`` or ``on_boundary`` raised: a pickled checkpoint and every step since.

    The engine appends each step that succeeded to :attr:`log` (``(x, y)`` a
    learned example, ``(None, concept)`` a boundary); :meth:`rollback`
    unpickles the checkpoint and replays the log, which gives the learner as
    it was before the step that failed: exactly, for a deterministic learner
    (a river model with its seeded RNG; the torch learner, which carries its
    RNG state). Once the log holds :attr:`limit` steps the engine takes a new
    checkpoint; the limit grows with the pickle's size, so that pickling
    costs a small, similar share of any model's learning time, and the log
    stays at most :data:`MAX_LOG` steps.

    >>> learner = build_learner(LearnerSpec("logreg"))
    >>> journal = Journal(learner)
    >>> for x, y in [({"x": 1.0}, True), ({"x": -1.0}, False)]:
    ...     learner.learn(x, y); journal.log.append((x, y))
    >>> before = learner.predict({"x": 1.0})
    >>> learner.model["LogisticRegression"].intercept = -50.0  # a learn that raised half-way
    >>> learner.predict({"x": 1.0}) == before
    False
    >>> learner = journal.rollback()
    >>> learner.predict({"x": 1.0}) == before
    True
    """

    MIN_LOG = 1_000
    MAX_LOG = 100_000
    PICKLE_BYTES_PER_STEP = 8

    def __init__(self, learner: Learner) -> None:
        self.checkpoint(learner)

    def checkpoint(self, learner: Learner) -> None:
        """Start again from ``learner`` as it is now."""
        self._pickled = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
        self.log: list[tuple[Any, Any]] = []
        self.limit = min(self.MAX_LOG, max(self.MIN_LOG, len(self._pickled) // self.PICKLE_BYTES_PER_STEP))

    def rollback(self) -> Learner:
        """A new learner: the checkpoint with the logged steps replayed."""
        learner: Learner = pickle.loads(self._pickled)
        for x, y in self.log:
            if x is None:
                learner.on_boundary(y)
            else:
                learner.learn(x, y)
        return learner
