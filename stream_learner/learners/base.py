"""The learner role: predict one, learn one, consolidate at a boundary."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, runtime_checkable

from stream_learner.errors import parse_json_object
from stream_learner.forked_pickle import CAN_FORK, ForkedPickle

Task = Literal["classification", "regression"]


@runtime_checkable
class Learner(Protocol):
    """What the engine needs from a model adapter.

    ``predict`` must be pure (it never changes what the model will do next);
    ``learn`` updates the model with one labelled example;
    ``on_boundary`` is called when a new concept starts (drift or task switch).
    ``state_dict`` is its snapshot: plain values with a ``"version"`` (see
    :mod:`stream_learner.state`), which its class's ``from_state`` rebuilds.
    A learner must also pickle: the rollback :class:`Journal` keeps its
    checkpoints so.

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

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next prediction and update, as plain values."""
        ...


DEFAULT_MODEL = "hoeffding_tree"
"""The model a run, the Python API and a :class:`LearnerSpec` build when none is named: it learns multi-class and string labels
(chosen by ``benchmarks/default_model.py``)."""


@dataclass(frozen=True)
class LearnerSpec:
    """What to build: a model spec (preset name or dotted path) and its parameters."""

    model: str = DEFAULT_MODEL
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


def forkable(learner: Any) -> bool:
    """Whether ``learner`` may be pickled in a forked child (:mod:`stream_learner.forked_pickle`): the platform allows it and the model is not on a GPU."""
    return CAN_FORK and getattr(getattr(learner, "device", None), "type", "cpu") == "cpu"


class Journal:
    """Undo for a learner whose ``learn`` or ``on_boundary`` raised: a checkpoint and every step since.

    The engine records each step that succeeded (:meth:`record`: ``x, y`` a
    learned example, ``None, concept`` a boundary; two lists, not a list of
    pairs, since a tuple per event made the garbage collector run more
    often); :meth:`rollback`
    rebuilds the checkpoint and replays the log, which gives the learner as
    it was before the step that failed: exactly, for a deterministic learner
    (a river model with its seeded RNG; the torch learner, which carries its
    RNG state). The first checkpoint is ``origin``, a function building the
    learner as the log starts (a fresh one from its spec, a restored one
    from its state). Once a checkpoint is :meth:`due` (a second after the
    last and :attr:`MIN_LOG` steps, or :attr:`MAX_LOG` steps), the engine
    takes a new one: pickled in a forked
    child where it can be, since pickling in the stream's process would slow
    the model for good (see :mod:`stream_learner.forked_pickle`). A fork
    costs a few milliseconds, so a key forks at most once a second and once
    per ``MIN_LOG`` steps; the log holds at most ``MAX_LOG`` steps.
    A snapshot of the learner is a checkpoint made anyway (:meth:`restart_at`):
    a key of a fleet, which may take hours to learn ``MIN_LOG`` examples,
    then keeps only the steps since its last snapshot but one, not every
    example it learned.

    >>> from stream_learner.learners.factory import build_learner
    >>> spec = LearnerSpec("logreg")
    >>> learner = build_learner(spec)
    >>> journal = Journal(lambda: build_learner(spec))
    >>> for x, y in [({"x": 1.0}, True), ({"x": -1.0}, False)]:
    ...     learner.learn(x, y); journal.record(x, y)
    >>> before = learner.predict({"x": 1.0})
    >>> learner.model["LogisticRegression"].intercept = -50.0  # a learn that raised half-way
    >>> learner.predict({"x": 1.0}) == before
    False
    >>> journal.checkpoint(journal.rollback()); journal.xs
    []
    >>> journal.rollback().predict({"x": 1.0}) == before
    True
    """

    CHECKPOINT_SECONDS = 1.0
    MIN_LOG = 10_000
    MAX_LOG = 100_000

    def __init__(self, origin: Callable[[], Learner]) -> None:
        self._origin = origin
        self._forked: ForkedPickle | None = None
        self.xs: list[Any] = []
        self.ys: list[Any] = []
        self._taken = time.perf_counter()
        self._restart: tuple[int, Callable[[], bytes], Callable[[bytes], Learner]] | None = None  # see restart_at

    def record(self, x: Any, y: Any) -> None:
        """One step that succeeded: ``learn(x, y)``, or ``on_boundary(y)`` when ``x`` is ``None``."""
        self.xs.append(x)
        self.ys.append(y)

    def due(self) -> bool:
        """Whether the engine should take a new checkpoint now."""
        steps = len(self.xs)
        return steps >= self.MAX_LOG or (steps >= self.MIN_LOG and time.perf_counter() - self._taken >= self.CHECKPOINT_SECONDS)

    def settle(self) -> None:
        """Collect a forked checkpoint's bytes, so that its child is reaped and its file closed (the engine calls it a batch after :meth:`checkpoint`)."""
        forked = self._forked
        if forked is not None:
            self._forked = None
            pickled = forked.result()
            self._origin = lambda: pickle.loads(pickled)

    def restart_at(self, made: Callable[[], bytes], rebuild: Callable[[bytes], Learner]) -> None:
        """A checkpoint of the learner as it is now is being made elsewhere: ``made()`` gives its bytes (a snapshot's, encoded in a forked child), ``rebuild(bytes)`` the learner.

        It becomes the checkpoint, and the steps logged before it are
        dropped, at the next :meth:`restart_at` (usually long after its
        child finished; at the end of a stream it may wait for it, while the
        writer thread reads the same bytes: see
        :class:`~stream_learner.forked_pickle.PendingBytes`) or at a :meth:`rollback`.
        Where its bytes never come (the snapshot was discarded), the journal
        goes on from its own checkpoint.
        """
        self._apply_restart()
        self._restart = (len(self.xs), made, rebuild)

    def _apply_restart(self) -> None:
        restart, self._restart = self._restart, None
        if restart is None:
            return
        at, made, rebuild = restart
        try:
            data = made()
        except Exception:  # discarded or failed: the journal's own checkpoint and log still hold
            return
        self.settle()
        self._origin = lambda: rebuild(data)
        del self.xs[:at], self.ys[:at]

    def checkpoint(self, learner: Learner) -> None:
        """Start again from ``learner`` as it is now."""
        self.settle()
        self._restart = None  # this checkpoint is newer
        if forkable(learner):
            forked = self._forked = ForkedPickle.start(learner)
            self._origin = lambda: pickle.loads(forked.result())
        else:
            pickled = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
            self._origin = lambda: pickle.loads(pickled)
        self.xs, self.ys = [], []
        self._taken = time.perf_counter()

    def rollback(self) -> Learner:
        """A new learner: the checkpoint with the logged steps replayed."""
        self._apply_restart()
        learner = self._origin()
        for x, y in zip(self.xs, self.ys):
            if x is None:
                learner.on_boundary(y)
            else:
                learner.learn(x, y)
        return learner
