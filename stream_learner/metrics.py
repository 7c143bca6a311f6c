"""Prequential (test-then-train) metrics: cumulative and sliding window.

>>> m = Prequential("classification", window=2)
>>> for y, y_pred in [(1, 1), (1, 0), (0, 0)]:
...     _ = m.update(y, y_pred)
>>> round(m.accuracy, 3), m.accuracy_window
(0.667, 0.5)
>>> r = Prequential("regression", window=10)
>>> r.update(3.0, 1.0), r.update(1.0, 2.0)
(2.0, 1.0)
>>> r.mae, round(r.rmse, 4)
(1.5, 1.5811)
"""

from __future__ import annotations

import math
from typing import Any

from stream_learner.learners.base import Task
from stream_learner.state import expect_version


class Prequential:
    """Counts of a test-then-train evaluation; ``update`` returns the error.

    Classification error is 0 or 1 (a missing prediction is wrong);
    regression error is the absolute error. ``update`` appends each error
    to :attr:`pending`, counted in bulk when a figure is read. The sliding
    window of a classifier is a ring of its last ``window`` 0/1 errors.
    """

    def __init__(self, task: Task, window: int = 1000) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.task = task
        self.window = window
        self._classification = task == "classification"
        self.pending: bytearray | list[float] = bytearray() if self._classification else []  # recorded, not yet counted
        self._labelled = 0
        self._correct = 0
        self._abs_error = 0.0
        self._sq_error = 0.0
        self._ring = bytearray(window if self._classification else 0)  # 1 where the prediction was wrong
        self._at = 0  # where the next error goes: the ring's oldest

    def error(self, y: Any, y_pred: Any) -> float:
        """The error of one prediction (not recorded)."""
        if self._classification:
            return 0 if y_pred == y else 1
        return abs(y - y_pred) if y_pred is not None else math.inf

    def update(self, y: Any, y_pred: Any) -> float:
        """Record one labelled prediction; return its error."""
        error = self.error(y, y_pred)
        self.pending.append(error)  # type: ignore[arg-type]
        return error

    @property
    def labelled(self) -> int:
        self._count()
        return self._labelled

    @property
    def correct(self) -> int:
        self._count()
        return self._correct

    def _count(self) -> None:
        """Count the pending errors, in order."""
        errors = self.pending
        n = len(errors)
        if not n:
            return
        self._labelled += n
        if isinstance(errors, bytearray):  # a classifier's
            self._correct += n - errors.count(1)
            self._push_ring(errors)
        else:
            for error in errors:  # one at a time: the same rounding as adding each error as it came
                self._abs_error += error
                self._sq_error += error * error
        errors.clear()

    def _push_ring(self, errors: bytearray) -> None:
        ring, size, at, n = self._ring, self.window, self._at, len(errors)
        if n >= size:
            ring[:] = errors[n - size :]
            self._at = 0
            return
        first = min(n, size - at)
        ring[at : at + first] = errors[:first]
        ring[: n - first] = errors[first:]
        self._at = (at + n) % size

    def state_dict(self) -> dict[str, Any]:
        """The counts and the errors recorded but not counted yet, as plain values."""
        return {
            "version": 1,
            "task": self.task,
            "window": self.window,
            "labelled": self._labelled,
            "correct": self._correct,
            "abs_error": self._abs_error,
            "sq_error": self._sq_error,
            "ring": bytes(self._ring),
            "at": self._at,
            "pending": bytes(self.pending) if isinstance(self.pending, bytearray) else list(self.pending),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Prequential:
        """The metrics :meth:`state_dict` describes."""
        expect_version(state, "the prequential metrics", 1)
        metrics = cls(state["task"], state["window"])
        metrics._labelled, metrics._correct = state["labelled"], state["correct"]
        metrics._abs_error, metrics._sq_error = state["abs_error"], state["sq_error"]
        metrics._ring[:] = state["ring"]
        metrics._at = state["at"]
        metrics.pending.extend(state["pending"])
        return metrics

    @property
    def accuracy(self) -> float | None:
        """Cumulative accuracy, ``None`` for regression or before any label."""
        if not self._classification or not self.labelled:
            return None
        return self._correct / self._labelled

    @property
    def accuracy_window(self) -> float | None:
        """Accuracy over the last ``window`` labelled events."""
        if not self._classification or not self.labelled:
            return None
        return 1.0 - self._ring.count(1) / min(self._labelled, self.window)

    @property
    def mae(self) -> float | None:
        """Cumulative mean absolute error (regression)."""
        if self._classification or not self.labelled:
            return None
        return self._abs_error / self._labelled

    @property
    def rmse(self) -> float | None:
        """Cumulative root mean squared error (regression)."""
        if self._classification or not self.labelled:
            return None
        return math.sqrt(self._sq_error / self._labelled)
