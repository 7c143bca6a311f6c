"""Per-event latency: from the source handing an event to the dataflow to its prediction handed to the sinks.

Each source stamps a batch once as it hands it over
(:class:`connectors.base.SourceBatch`: a Kafka partition when the consumer's
batch reached this process, an embedded source when it read the batch from
its file or generator), and the dataflow reads the clock once per batch of
outputs on their way to the predictions sinks: every event of a batch shares
its batch's stamp, so no clock is read per event. The wait inside the batch
(the learner steps of the events and keys before it) is part of each
event's latency, as it is part of what a consumer of the predictions sees.

The figures are kept in fixed buckets (:data:`LATENCY_BUCKETS`, 1 ms to
10 s), so a run of any length keeps a few integers, and a batch's events are
added at once. Quantiles are estimated from the buckets as Prometheus'
``histogram_quantile`` does: linearly within the bucket that holds them.

>>> h = LatencyHistogram()
>>> h.add([(0.003, 90), (0.2, 10)])
>>> h.count, round(h.quantile(0.5), 4), round(h.quantile(0.99), 3)
(100, 0.0039, 0.235)
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds, inclusive) of the latency buckets; a last bucket holds what is above 10 s."""


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of values counted per bucket (``counts[i]``: values up to ``bounds[i]``; one more count above the last bound).

    Interpolated linearly within its bucket (the first bucket starts at 0);
    a quantile above the last bound is that bound. ``None`` without values.

    >>> quantile([1.0, 2.0], [0, 4, 0], 0.5), quantile([1.0, 2.0], [2, 0, 2], 0.9), quantile([1.0], [0, 0], 0.5)
    (1.5, 2.0, None)
    """
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    below = 0
    for i, n in enumerate(counts):
        if n and below + n >= rank:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - below) / n
        below += n
    return bounds[-1]


class LatencyHistogram:
    """Latencies counted in fixed buckets, thread-safe (the dataflow's workers add to one)."""

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def add(self, latencies: Sequence[tuple[float, int]]) -> None:
        """Each ``(seconds, count)``: ``count`` events took ``seconds`` (one lock for them all)."""
        bounds = self.bounds
        with self._lock:
            for seconds, count in latencies:
                self._counts[bisect_left(bounds, seconds)] += count
                self._sum += seconds * count

    def counts(self) -> tuple[list[int], float]:
        """The count in each bucket (not cumulative; the last: above the last bound) and the sum of the latencies."""
        with self._lock:
            return list(self._counts), self._sum

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of every latency so far (see :func:`quantile`)."""
        return quantile(self.bounds, self.counts()[0], q)

    def summary(self) -> dict[str, float | int | None]:
        """Every latency so far, in :func:`summary`'s figures."""
        return summary(self.bounds, self.counts()[0])


def summary(bounds: Sequence[float], counts: Sequence[int]) -> dict[str, float | int | None]:
    """The events counted per bucket, their median and 99th percentile (seconds, to the microsecond).

    >>> summary([1.0, 2.0], [0, 4, 0])
    {'events': 4, 'p50_seconds': 1.5, 'p99_seconds': 1.99}
    """
    p50, p99 = quantile(bounds, counts, 0.5), quantile(bounds, counts, 0.99)
    return {"events": sum(counts), "p50_seconds": _rounded(p50), "p99_seconds": _rounded(p99)}


def _rounded(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None
