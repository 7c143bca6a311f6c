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


class Prequential:
    """Counts of a test-then-train evaluation; ``update`` returns the error.

    Classification error is 0 or 1 (a missing prediction is wrong);
    regression error is the absolute error. The sliding window of a
    classifier is a ring of 0/1 errors with a running count of the wrong
    ones, so an update costs the same whatever the window's size.
    """

    def __init__(self, task: Task, window: int = 1000) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.task = task
        self.window = window
        self.labelled = 0
        self.correct = 0
        self.abs_error = 0.0
        self.sq_error = 0.0
        self._classification = task == "classification"
        self._ring = bytearray(window if self._classification else 0)  # 1 where the prediction was wrong
        self._at = 0
        self._wrong_in_window = 0

    def update(self, y: Any, y_pred: Any) -> float:
        """Record one labelled prediction; return its error."""
        self.labelled += 1
        if self._classification:
            if y_pred == y:
                self.correct += 1
                error = 0
            else:
                error = 1
            ring, at = self._ring, self._at
            self._wrong_in_window += error - ring[at]
            ring[at] = error
            self._at = at + 1 if at + 1 < self.window else 0
            return error
        error = abs(y - y_pred) if y_pred is not None else math.inf
        self.abs_error += error
        self.sq_error += error * error
        return error

    @property
    def accuracy(self) -> float | None:
        """Cumulative accuracy, ``None`` for regression or before any label."""
        if not self._classification or not self.labelled:
            return None
        return self.correct / self.labelled

    @property
    def accuracy_window(self) -> float | None:
        """Accuracy over the last ``window`` labelled events."""
        if not self._classification or not self.labelled:
            return None
        return 1.0 - self._wrong_in_window / min(self.labelled, self.window)

    @property
    def mae(self) -> float | None:
        """Cumulative mean absolute error (regression)."""
        if self._classification or not self.labelled:
            return None
        return self.abs_error / self.labelled

    @property
    def rmse(self) -> float | None:
        """Cumulative root mean squared error (regression)."""
        if self._classification or not self.labelled:
            return None
        return math.sqrt(self.sq_error / self.labelled)
