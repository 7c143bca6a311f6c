"""A model key's learner with undo: a learn or a boundary that raises leaves the model as it was before it.

The rule is the same for every step no event carries alone: a strategy
failing at a boundary (an explicit task, a drift, a new label) or an
evaluation that cannot predict is logged once, counted in ``failures``
(which the metrics records and the run's summary carry), and the stream
goes on with a usable model. A ``learn`` that raises is the event's own
failure: the model is rolled back and the caller makes the event a dead letter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stream_learner.learners.base import Journal, Learner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnFailure:
    """A ``learn`` that raised: the error, and how many earlier examples of its micro-batch were dropped with it."""

    error: Exception
    unlearned: int = 0


class GuardedLearner:
    """``learner``, the model of key ``key``, and the :class:`~stream_learner.learners.base.Journal` that can put it back.

    ``learner`` may be replaced (a rollback, a strategy at a boundary): read
    it here each time, never keep its methods.
    """

    def __init__(self, key: str, learner: Learner, journal: Journal, failures: int = 0) -> None:
        self.key = key
        self.learner = learner
        self.journal = journal
        self.failures = failures

    def learn(self, x: dict[object, object], y: object) -> LearnFailure | None:
        """Learn one example; where the model raises, roll it back and say how it failed."""
        try:
            self.learner.learn(x, y)
        except Exception as exc:  # the model is put back as it was before this example
            self._roll_back()
            error = exc.with_traceback(None)  # its frames would hold this learner (and a forked checkpoint's file) in a reference cycle
            return LearnFailure(error, self._drop_micro_batch())
        self.journal.record(x, y)
        return None

    def _drop_micro_batch(self) -> int:
        """How many earlier examples of a failed micro-batch are dropped.

        A learner that trains in micro-batches (with the optional
        ``drop_buffered()``) holds them again after the rollback, one of them
        perhaps what made the update fail: kept, they would fail the next
        update the same way.
        """
        drop = getattr(self.learner, "drop_buffered", None)
        dropped: int = drop() if drop is not None else 0
        if dropped:
            self.journal.checkpoint(self.learner)  # else a later rollback's replay would buffer them again
        return dropped

    def boundary(self, concept: int) -> None:
        """Tell the model that ``concept`` starts; where it raises, roll it back (it skips this boundary), log and count."""
        try:
            self.learner.on_boundary(concept)
        except Exception as exc:
            self._roll_back()
            self.failed(f"the boundary of concept {concept}", exc)
            return
        self.journal.record(None, concept)

    def failed(self, what: str, exc: Exception) -> None:
        """A model failure no event carries (a boundary, an evaluation): logged and counted."""
        self.failures += 1
        logger.warning("model key %r: %s failed (%s: %s); the stream goes on", self.key, what, type(exc).__name__, exc)

    def end_batch(self) -> None:
        """A batch is done: collect the last checkpoint, and take a new one when due."""
        journal = self.journal
        journal.settle()  # the last checkpoint's child had this batch's time to finish
        if journal.due():
            journal.checkpoint(self.learner)

    def _roll_back(self) -> None:
        try:
            self.learner = self.journal.rollback()
        except Exception as exc:  # the checkpoint cannot be rebuilt or replayed: the model stays as the failed step left it
            self.failed("rolling the model back", exc)
