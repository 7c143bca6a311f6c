"""Paired evidence: is one learner better than another on the same labelled events?

Two learners (a champion and a challenger, a stored concept's model and a
fresh one) predict the same events; each labelled event gives a *pair* of
errors, as :meth:`~stream_learner.metrics.Prequential.error` computes them
(0 or 1 for a classifier, the absolute error for a regressor). A paired test
on those pairs says whether the difference is more than chance:

- classification: **McNemar's test** on the discordant pairs (``b``: only
  the first learner was wrong, ``c``: only the second). With fewer than
  :data:`EXACT_BELOW` discordant pairs it is the exact conditional test
  (two-sided binomial, ``b ~ Binomial(b + c, 1/2)``); from there on the
  chi-square with Edwards' continuity correction, which is within a few
  percent of the exact p-value at that size. Both are conservative (never
  below the exact p-value's level), which is the side to err on when the
  decision replaces a live model; the mid-p variant is more powerful but
  can exceed the nominal level.
- regression: the **Wilcoxon signed-rank test** on the differences of
  absolute errors, zero differences dropped (Wilcoxon's treatment), tied
  magnitudes given their average rank and the variance corrected for them,
  p-value from the normal approximation (no continuity correction).

Every test is two-sided; :class:`PairedTest` carries both error rates, so a
caller asks for "better" as "lower error and ``p_value`` below alpha" (one
side at alpha / 2).

>>> mcnemar(12, 2).test, round(mcnemar(12, 2).p_value, 4)
('mcnemar_exact', 0.0129)
>>> window = PairedWindow("classification", size=4)
>>> for first, second in [(1, 0), (1, 0), (0, 0), (1, 1), (1, 0)]:
...     window.add(first, second)
>>> window.n, window.first_error, window.second_error
(4, 0.75, 0.25)
>>> result = window.test()
>>> result.test, result.statistic, result.p_value
('mcnemar_exact', 0.0, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_learner.learners.base import Task
from stream_learner.state import expect_version

EXACT_BELOW = 25
"""McNemar's test is exact below this many discordant pairs, the corrected chi-square from there on."""

VERSION = 1
"""The layout of :meth:`PairedWindow.state_dict`."""


@dataclass(frozen=True)
class PairedTest:
    """The outcome of a paired test on ``n`` pairs.

    Attributes:
        test: ``"mcnemar_exact"``, ``"mcnemar_chi2"`` or ``"wilcoxon"``.
        statistic: the exact test's ``min(b, c)``, the chi-square, or the
            Wilcoxon ``T = min(R+, R-)``.
        p_value: two-sided; 1.0 where the pairs carry no evidence (no
            discordant pair, every difference zero).
        n: how many pairs were compared.
        first_error: the first learner's mean error over them.
        second_error: the second learner's.
    """

    test: str
    statistic: float
    p_value: float
    n: int
    first_error: float = math.nan
    second_error: float = math.nan

    def second_better(self, alpha: float) -> bool:
        """The second learner's error is lower, and the test says so at ``alpha`` (two-sided)."""
        return self.second_error < self.first_error and self.p_value < alpha


def mcnemar(b: int, c: int) -> PairedTest:
    """McNemar's test on the discordant counts (``b``: only the first learner wrong, ``c``: only the second).

    >>> mcnemar(0, 0).p_value
    1.0
    >>> test = mcnemar(40, 15)
    >>> test.test, round(test.statistic, 3), round(test.p_value, 5)
    ('mcnemar_chi2', 10.473, 0.00121)
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts cannot be negative: {b}, {c}")
    n = b + c
    if n < EXACT_BELOW:
        return PairedTest("mcnemar_exact", float(min(b, c)), _binomial_two_sided(min(b, c), n), n)
    chi2 = (abs(b - c) - 1) ** 2 / n
    return PairedTest("mcnemar_chi2", chi2, math.erfc(math.sqrt(chi2 / 2)), n)


def _binomial_two_sided(k: int, n: int) -> float:
    """``P(X <= k) + P(X >= n - k)`` for ``X ~ Binomial(n, 1/2)`` and ``k <= n / 2``, capped at 1 (exact integers)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def wilcoxon(differences: Any) -> PairedTest:
    """The Wilcoxon signed-rank test on paired differences (first minus second), normal approximation.

    Zero differences are dropped; tied magnitudes share their average rank,
    and the variance is corrected for the ties. An infinite difference (one
    learner gave no prediction) ranks above every finite one; two missing
    predictions (``inf - inf``) count as a zero difference.

    >>> test = wilcoxon([3.0, 2.5, -0.5, 4.0, 1.0, 2.0, 0.0, 1.5])
    >>> test.test, test.n, test.statistic, round(test.p_value, 4)
    ('wilcoxon', 7, 1.0, 0.028)
    >>> wilcoxon([0.0, 0.0]).p_value
    1.0
    """
    d = np.nan_to_num(np.asarray(differences, dtype=float), nan=0.0, posinf=np.inf, neginf=-np.inf)
    d = d[d != 0]
    n = int(d.size)
    if n == 0:
        return PairedTest("wilcoxon", 0.0, 1.0, 0)
    magnitudes = np.abs(d)
    _, inverse, counts = np.unique(magnitudes, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # the rank of each distinct magnitude's last member
    ranks = (upper - (counts - 1) / 2.0)[inverse]  # the average rank of each tie group
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    mean = n * (n + 1) / 4.0
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - float((counts**3 - counts).sum()) / 48.0
    statistic = min(r_plus, r_minus)
    if variance <= 0:
        return PairedTest("wilcoxon", statistic, 1.0, n)
    z = (r_plus - mean) / math.sqrt(variance)
    return PairedTest("wilcoxon", statistic, math.erfc(abs(z) / math.sqrt(2)), n)


class PairedWindow:
    """The last ``size`` pairs of errors of two learners on the same labelled events, and the paired test on them.

    Classification pairs are 0/1 errors, counted as they come (the test and
    the error rates are O(1)); regression pairs are absolute errors, kept in a ring and tested on
    demand (O(size log size)).

    >>> window = PairedWindow("regression", size=3)
    >>> for first, second in [(1.0, 0.5), (2.0, 0.5), (3.0, 1.0), (4.0, 1.0)]:
    ...     window.add(first, second)
    >>> window.n, window.first_error, window.second_error
    (3, 3.0, 0.8333333333333334)
    >>> window.test().statistic
    0.0
    >>> PairedWindow.from_state(window.state_dict()).test() == window.test()
    True
    """

    def __init__(self, task: Task, size: int) -> None:
        if size < 1:
            raise ValueError("a paired window holds at least 1 pair")
        self.task = task
        self.size = size
        self._classification = task == "classification"
        self._first = [0.0] * size
        self._second = [0.0] * size
        self._at = 0  # where the next pair goes: the oldest once full
        self._n = 0
        self._counts = [0, 0, 0, 0]  # classification: pairs by 2 * first error + second error

    @property
    def n(self) -> int:
        """How many pairs the window holds."""
        return self._n

    @property
    def full(self) -> bool:
        return self._n == self.size

    def add(self, first: float, second: float) -> None:
        """One labelled event's pair of errors (the oldest pair leaves a full window)."""
        at = self._at
        if self._classification:
            if self._n == self.size:
                self._counts[int(2 * self._first[at] + self._second[at])] -= 1
            self._counts[int(2 * first + second)] += 1
        self._first[at] = first
        self._second[at] = second
        self._at = (at + 1) % self.size
        self._n = min(self._n + 1, self.size)

    def clear(self) -> None:
        """Forget every pair (one of the learners was replaced)."""
        self._at = self._n = 0
        self._counts = [0, 0, 0, 0]

    @property
    def first_error(self) -> float:
        """The first learner's mean error over the window (NaN when empty)."""
        if self._classification:
            return (self._counts[2] + self._counts[3]) / self._n if self._n else math.nan
        return self._mean(self._first)

    @property
    def second_error(self) -> float:
        if self._classification:
            return (self._counts[1] + self._counts[3]) / self._n if self._n else math.nan
        return self._mean(self._second)

    def _mean(self, errors: list[float]) -> float:
        if not self._n:
            return math.nan
        return float(np.mean(self._ordered(errors)))

    def _ordered(self, errors: list[float]) -> list[float]:
        """The held errors, oldest first: a restored window then sums in the same order, to the last bit."""
        if self._n < self.size:
            return errors[: self._n]  # not full yet: the held pairs fill the ring's start
        return errors[self._at :] + errors[: self._at]

    def test(self) -> PairedTest:
        """The paired test on the window's pairs (McNemar or Wilcoxon, by task), with both error rates."""
        if self._classification:
            result = mcnemar(self._counts[2], self._counts[1])
        else:
            result = wilcoxon(np.subtract(self._ordered(self._first), self._ordered(self._second)))
        return PairedTest(result.test, result.statistic, result.p_value, self._n, self.first_error, self.second_error)

    def state_dict(self) -> dict[str, Any]:
        """The window as plain values, oldest pair first."""
        return {"version": VERSION, "task": self.task, "size": self.size, "first": self._ordered(self._first), "second": self._ordered(self._second)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PairedWindow:
        expect_version(state, "the paired window", VERSION)
        window = cls(state["task"], state["size"])
        for first, second in zip(state["first"], state["second"]):
            window.add(first, second)
        return window
