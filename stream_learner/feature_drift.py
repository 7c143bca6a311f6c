"""Input (feature) drift: has the distribution of the features moved, labels or not?

:class:`FeatureDriftMonitor` watches every feature of one model key. The
first ``window`` events after a start or a reset are its reference: each
numeric feature is cut into ``bins`` bins at the reference's quantiles, each
categorical one into its ``max_categories`` most frequent values and
"other", and each has a bin for "missing". Every ``every`` events it compares
the latest ``window`` events with the reference, feature by feature, by the
population stability index,
``PSI = sum over bins of (current - reference) * ln(current / reference)``
(shares smoothed by half an event per bin). Features whose PSI reaches
``threshold`` have drifted; they are reported highest first, and the monitor
starts a new reference on the events that follow.

PSI measures how far apart two histograms are, so its scale is the same for
every feature and every kind of feature, which makes the ranking meaningful.
Between two windows of the same distribution its expected value is about
``(bins + 1) * 2 / window`` (0.02 at the defaults), and a shift of half a
standard deviation in a normal feature gives about 0.25: the default
threshold of 0.2 leaves the first far behind.

Cost: per event and feature, appending the value to a bounded deque; the
histograms are computed with numpy at each check.

>>> import random
>>> rng = random.Random(1)
>>> monitor = FeatureDriftMonitor(window=500, every=250)
>>> stable = [monitor.update({"a": rng.gauss(0, 1), "b": rng.choice("xyz")}) for _ in range(5000)]
>>> any(stable)
False
>>> moved = [monitor.update({"a": rng.gauss(1.5, 1), "b": rng.choice("xyz")}) for _ in range(1000)]
>>> drift = next(d for d in moved if d)
>>> [name for name, _ in drift]
['a']
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_learner.state import expect_version

Drift = list[tuple[Any, float]]
"""The features that moved, with their PSI, highest first."""

STATE_VERSION = 1

MISSING = math.nan
"""A feature an event does not have (NaN, so numeric windows convert to arrays in C)."""


@dataclass(frozen=True)
class Reference:
    """One feature's reference histogram: numeric bin edges, or categories, and the share of each bin."""

    edges: tuple[float, ...] | None  # numeric: the inner bin edges; None for a categorical feature
    categories: tuple[str, ...]  # categorical: the values with a bin of their own
    shares: tuple[float, ...]  # per bin: numeric bins (or categories, then "other"), then "missing"

    @classmethod
    def of(cls, values: list[Any], bins: int, max_categories: int) -> Reference:
        """The reference of one feature's values (NaN: missing)."""
        if any(type(v) is str for v in values):
            top = [c for c, _ in Counter(v for v in values if type(v) is str).most_common(max_categories)]
            reference = cls(None, tuple(top), ())
        else:
            numbers = np.array(values, dtype=float)
            present = numbers[~np.isnan(numbers)]
            edges = np.unique(np.quantile(present, np.arange(1, bins) / bins)) if len(present) else np.array([])
            reference = cls(tuple(float(e) for e in edges), (), ())
        return cls(reference.edges, reference.categories, tuple(reference.shares_of(values)))

    @property
    def n_bins(self) -> int:
        inner = len(self.edges) + 1 if self.edges is not None else len(self.categories) + 1
        return inner + 1  # and "missing"

    def shares_of(self, values: list[Any]) -> np.ndarray:
        """The smoothed share of ``values`` in each bin."""
        counts = np.bincount(self.bin_of(values), minlength=self.n_bins).astype(float)
        return (counts + 0.5) / (counts.sum() + 0.5 * self.n_bins)

    def bin_of(self, values: list[Any]) -> np.ndarray:
        """Each value's bin (a missing value is NaN)."""
        missing = self.n_bins - 1
        if self.edges is None:
            index = {c: i for i, c in enumerate(self.categories)}
            other = len(self.categories)
            return np.array([index.get(v, other) if type(v) is str else missing if v != v else other for v in values], dtype=np.intp)
        try:
            numbers = np.array(values, dtype=float)
        except (TypeError, ValueError):  # a string among the numbers: not a number, so in no numeric bin
            numbers = np.array([v if type(v) in (int, float, bool) else math.nan for v in values], dtype=float)
        bins = np.searchsorted(np.array(self.edges), numbers, side="right")
        bins[np.isnan(numbers)] = missing
        return bins

    def psi(self, values: list[Any]) -> float:
        reference = np.array(self.shares)
        current = self.shares_of(values)
        return float(np.sum((current - reference) * np.log(current / reference)))


class FeatureDriftMonitor:
    """Population-stability checks of every feature of one model key; see the module's docstring.

    Args:
        window: events in the reference and in the current window.
        every: events between two checks.
        threshold: the PSI at which a feature has drifted.
        bins: quantile bins of a numeric feature.
        max_categories: values of a categorical feature with a bin of their own.
        max_features: features watched (the first seen in the reference window).
    """

    def __init__(self, window: int = 1000, every: int = 500, threshold: float = 0.2, bins: int = 10, max_categories: int = 20, max_features: int = 100) -> None:
        for name, value in (("window", window), ("every", every), ("bins", bins), ("max_categories", max_categories), ("max_features", max_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"feature drift: {name} must be a positive integer, not {value!r}")
        if window < 2 or bins < 2:
            raise ValueError("feature drift: window and bins must be at least 2")
        if not threshold > 0:
            raise ValueError(f"feature drift: threshold must be positive, not {threshold!r}")
        self.window, self.every, self.threshold = window, every, float(threshold)
        self.bins, self.max_categories, self.max_features = bins, max_categories, max_features
        self.reset()

    @property
    def params(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return {"window": self.window, "every": self.every, "threshold": self.threshold, "bins": self.bins, "max_categories": self.max_categories, "max_features": self.max_features}

    def reset(self) -> None:
        """Start a new reference with the next event."""
        self.references: dict[Any, Reference] | None = None
        self.values: dict[Any, deque[Any]] = {}
        self.seen = 0  # events since the reset
        self.since_check = 0

    def update(self, x: dict[Any, Any]) -> Drift | None:
        """Watch one event's features; the features that moved, when a check finds some."""
        self.seen += 1
        values = self.values
        if self.references is None:
            self._collect_reference(x)
            return None
        get = x.get
        for name, recent in values.items():
            recent.append(get(name, MISSING))
        self.since_check += 1
        if self.since_check < self.every or self.seen - self.window < self.window:
            return None
        self.since_check = 0
        return self.check()

    def check(self) -> Drift | None:
        """Compare the latest window with the reference now (``update`` does at its cadence)."""
        if self.references is None:
            return None
        scores = [(name, reference.psi(list(self.values[name]))) for name, reference in self.references.items()]
        moved = sorted(((name, round(psi, 4)) for name, psi in scores if psi >= self.threshold), key=lambda item: -item[1])
        if not moved:
            return None
        self.reset()
        return moved

    def _collect_reference(self, x: dict[Any, Any]) -> None:
        values = self.values
        for name in x:
            if name not in values and len(values) < self.max_features:
                values[name] = deque([MISSING] * (self.seen - 1), maxlen=self.window)  # missing in the events before
        for name, recent in values.items():
            recent.append(x.get(name, MISSING))
        if self.seen == self.window:
            self.references = {name: Reference.of(list(recent), self.bins, self.max_categories) for name, recent in values.items()}
            for recent in values.values():
                recent.clear()

    def state_dict(self) -> dict[str, Any]:
        """Plain values: the parameters, the reference histograms, the latest values and the counters."""
        references = None
        if self.references is not None:
            references = [[name, None if r.edges is None else list(r.edges), list(r.categories), list(r.shares)] for name, r in self.references.items()]
        return {
            "version": STATE_VERSION,
            "params": self.params,
            "references": references,
            "values": [[name, [None if v != v else v for v in recent]] for name, recent in self.values.items()],  # NaN: missing
            "seen": self.seen,
            "since_check": self.since_check,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureDriftMonitor:
        """The monitor :meth:`state_dict` describes."""
        expect_version(state, "the feature drift monitor", STATE_VERSION)
        monitor = cls(**state["params"])
        if state["references"] is not None:
            monitor.references = {
                name: Reference(None if edges is None else tuple(edges), tuple(categories), tuple(shares)) for name, edges, categories, shares in state["references"]
            }
        monitor.values = {name: deque((MISSING if v is None else v for v in values), maxlen=monitor.window) for name, values in state["values"]}
        monitor.seen, monitor.since_check = state["seen"], state["since_check"]
        return monitor
