r"""Forgetting, measured: the accuracy matrix and the metrics read from it.

``R[t][i]`` is the accuracy on concept ``i`` at the ``t``-th evaluation
point (``None`` before concept ``i`` was seen). With ``T`` the latest
evaluation and ``P`` the past concepts (seen, and not the current one):

- average accuracy: :math:`A_T = \frac{1}{|S|}\sum_{i \in S} R_{T,i}` over every seen concept ``S``;
- average forgetting (Chaudhry et al. 2018):
  :math:`F_T = \frac{1}{|P|}\sum_{i \in P} \big(\max_{l < T} R_{l,i} - R_{T,i}\big)`;
- backward transfer (Lopez-Paz & Ranzato 2017):
  :math:`BWT_T = \frac{1}{|P|}\sum_{i \in P} \big(R_{T,i} - R_{e_i,i}\big)`, where ``e_i`` is
  the last evaluation while concept ``i`` was current (the end of its training);
- forward transfer needs the accuracy of an untrained model on every concept,
  which a stream does not have: it is reported as ``None``.

For a regression model the matrix holds each sample's mean absolute error
instead, where lower is better: forgetting is the rise of the error above its
best (lowest) earlier value, BWT the fall of the error since the concept
ended, so that positive forgetting and negative BWT read as "worse" for
either kind of model.

Avalanche's ``forgetting_bwt.py`` measures forgetting from the accuracy right
after an experience was trained; the ``max`` above (the literature's
definition) is never smaller than that, and the two agree when accuracy on a
concept only falls after it ends.

>>> R = [[0.9, None], [0.5, 0.8], [0.4, 0.9]]
>>> current = 1  # concept 1 is being learned at every row after the first
>>> average_accuracy(R[-1]), round(average_forgetting(R, current), 3), round(bwt(R, current, ends={0: 0}), 3)
(0.65, 0.5, -0.5)
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from stream_learner.records import ForgettingDict
from stream_learner.state import forgetting_state

Row = list[float | None]

VERSION = 2
"""The layout of :meth:`ForgettingTracker.state_dict` (older ones are upgraded by :func:`~stream_learner.state.forgetting_state`)."""


def average_accuracy(row: Row) -> float | None:
    """Mean accuracy over the concepts seen at this evaluation."""
    seen = [a for a in row if a is not None]
    return sum(seen) / len(seen) if seen else None


def average_forgetting(matrix: list[Row], current: int) -> float | None:
    """Mean over past concepts of (best earlier accuracy - latest accuracy)."""
    last = matrix[-1]
    drops = []
    for i, now in enumerate(last):
        if i == current or now is None:
            continue
        earlier = [a for row in matrix[:-1] if i < len(row) and (a := row[i]) is not None]
        if earlier:
            drops.append(max(earlier) - now)
    return sum(drops) / len(drops) if drops else None


def bwt(matrix: list[Row], current: int, ends: dict[int, int]) -> float | None:
    """Mean over past concepts of (latest accuracy - accuracy when the concept ended).

    ``ends[i]`` is the row index of concept ``i``'s last evaluation while current.
    """
    last = matrix[-1]
    deltas = [
        latest - at_end for i, e in ends.items() if i != current and i < len(last) and (latest := last[i]) is not None and (at_end := matrix[e][i]) is not None
    ]
    return sum(deltas) / len(deltas) if deltas else None


@dataclass
class _Reservoir:
    """A uniform sample of a concept's events (Li's Algorithm L).

    Once full, the number of events to skip before the next replacement is
    drawn at once, so most events cost one comparison instead of a random draw.
    """

    capacity: int
    seen: int = 0
    items: list[tuple[Any, Any]] = field(default_factory=list)
    next_pick: int = 0  # the value of ``seen`` at which the next event enters a full sample
    weight: float = 0.0  # Algorithm L's W

    def take(self, x: Any, y: Any, random_source: Callable[[], random.Random]) -> None:
        """Put in the event just counted in ``seen``, which reached ``next_pick``.

        The caller counts every event and compares with ``next_pick`` itself
        (:meth:`ForgettingTracker.observe`): most events end there.
        ``random_source()`` gives the RNG, asked for only once the sample is
        full: a sample that never fills draws nothing.
        """
        items = self.items
        if len(items) < self.capacity:
            items.append((x, y))
            if len(items) == self.capacity:
                rng = random_source()
                self.weight = math.exp(math.log(1.0 - rng.random()) / self.capacity)
                self._schedule(rng)
            return
        rng = random_source()
        items[int(rng.random() * self.capacity)] = (x, y)
        self.weight *= math.exp(math.log(1.0 - rng.random()) / self.capacity)
        self._schedule(rng)

    def _schedule(self, rng: random.Random) -> None:
        skip = math.floor(math.log(1.0 - rng.random()) / math.log1p(-self.weight)) if self.weight < 1.0 else 0
        self.next_pick = self.seen + skip + 1


class ForgettingTracker:
    """Keeps a bounded sample per concept, evaluates on it, and tracks forgetting live.

    The sample of a concept is a reservoir (Algorithm L) of its labelled
    events. By default they are also learned (test-then-train, so the engine
    learns exactly what a plain loop learns); with ``holdout=True`` an event
    chosen for the sample is not learned, so the sample is truly held out.
    Memory is bounded: ``sample_size`` events per concept, the last
    ``max_concepts`` concepts, the last ``max_rows`` matrix rows.
    A ``sample_size`` of 0 turns the tracker off, for fleets of many keys:
    it keeps nothing, evaluates nothing, and its summary stays empty.

    Args:
        sample_size: events kept per concept (0: off).
        max_concepts: concepts kept (older ones drop out of the matrix).
        max_rows: evaluation rows kept in the published matrix.
        holdout: keep sampled events out of training.
        seed: seeds the reservoir sampling.
        task: ``"classification"`` (the matrix holds accuracies) or
            ``"regression"`` (mean absolute errors; see the module's docstring).

    >>> tracker = ForgettingTracker(sample_size=2, task="regression")
    >>> for x, y in [(1.0, 1.0), (2.0, 2.0)]:
    ...     _ = tracker.observe(0, x, y)
    >>> tracker.evaluate(lambda x: x + 0.5, current=0), tracker.summary()["metric"]
    ({0: 0.5}, 'mae')
    >>> off = ForgettingTracker(sample_size=0)
    >>> off.observe(0, 1.0, True), off.evaluate(lambda x: True, current=0), off.summary()["matrix"]
    (False, {}, [])
    """

    def __init__(
        self, sample_size: int = 100, max_concepts: int = 10, max_rows: int = 20, holdout: bool = False, seed: int | None = 42, task: str = "classification"
    ) -> None:
        self.task = task
        self.metric: Literal["accuracy", "mae"] = "mae" if task == "regression" else "accuracy"
        self._sign = -1 if task == "regression" else 1  # lower MAE is better: compared negated
        if sample_size < 0:
            raise ValueError(f"the forgetting sample size must be 0 (off) or more, not {sample_size}")
        self.sample_size = sample_size
        self.max_concepts = max_concepts
        self.holdout = holdout
        self._seed = seed
        # made when first drawn from (see _random): most keys of a fleet never fill a sample; an unseeded one now, so that every state taken holds the RNG the tracker goes on with
        self._rng: random.Random | None = random.Random() if seed is None else None
        self._rng_state: tuple[Any, ...] | None = None  # a restored RNG's state, until then
        self._samples: dict[int, _Reservoir] = {}
        self._best: dict[int, float] = {}
        self._at_end: dict[int, float] = {}
        self.rows: deque[dict[int, float]] = deque(maxlen=max_rows)
        self.evaluations = 0
        self.current = 0
        self._forgetting: tuple[float | None, float | None] = (None, None)

    def observe(self, concept: int, x: Any, y: Any) -> bool:
        """Offer one labelled event of ``concept``; True when it must not be learned (held out)."""
        if not self.sample_size:
            return False
        sample = self._samples.get(concept)
        if sample is None:
            sample = self._samples[concept] = _Reservoir(self.sample_size)
            self._forget_oldest()
        # counted here rather than in a _Reservoir method (one call less per event): once a sample is full, most events stop here
        seen = sample.seen = sample.seen + 1
        if seen < sample.next_pick:
            return False
        sample.take(x, y, self._random)
        return self.holdout

    def _rng_now(self) -> list[Any] | None:
        """The sampling RNG's state as plain values; ``None`` while it is still to be made from ``seed`` (nothing drawn yet).

        Most keys of a fleet never fill a sample: their state then holds no
        RNG (625 words, about half of a small model's state).
        """
        if self._rng is not None:
            rng_version, rng_words, gauss = self._rng.getstate()
        elif self._rng_state is not None:
            rng_version, rng_words, gauss = self._rng_state
        else:
            return None
        return [rng_version, list(rng_words), gauss]

    def _random(self) -> random.Random:
        """The sampling RNG, made on first use: seeded with ``seed``, or set to a restored state."""
        rng = self._rng
        if rng is None:
            rng = self._rng = random.Random(self._seed)
            if self._rng_state is not None:
                rng.setstate(self._rng_state)
                self._rng_state = None
        return rng

    def sample_labels(self) -> set[Any]:
        """The labels of every kept sample."""
        return {y for s in self._samples.values() for _, y in s.items}

    def sample_features(self) -> list[Any]:
        """The features of every kept sample, in the order :meth:`evaluate` asks ``predict`` for them."""
        return [x for s in self._samples.values() for x, _ in s.items]

    def evaluate(self, predict: Callable[[Any], Any], current: int) -> dict[int, float]:
        """Accuracy (a regression model: mean absolute error) of ``predict`` on every concept's sample: a new row of the matrix.

        ``current`` is the concept being learned now. Forgetting and BWT are
        updated from the full history (best and end-of-concept values),
        whatever part of the matrix is kept for publishing. A tracker that
        is off adds no row.
        """
        if not self.sample_size:
            return {}
        score = _mean_absolute_error if self.metric == "mae" else _accuracy
        row = {c: score(predict, s.items) for c, s in self._samples.items() if s.items}
        sign = self._sign  # the bookkeeping below reads higher as better
        if self.rows:
            previous = self.rows[-1]
            for concept, value in previous.items():
                self._best[concept] = max(self._best.get(concept, sign * value), sign * value)
            if self.current in previous:  # the previous row is, so far, the last one while its concept was current
                self._at_end[self.current] = sign * previous[self.current]
        past = [c for c in row if c != current]
        drops = [self._best[c] - sign * row[c] for c in past if c in self._best]
        deltas = [sign * row[c] - self._at_end[c] for c in past if c in self._at_end]
        self._forgetting = (sum(drops) / len(drops) if drops else None, sum(deltas) / len(deltas) if deltas else None)
        self.rows.append(row)
        self.current = current
        self.evaluations += 1
        return row

    def summary(self) -> ForgettingDict:
        """``{average, bwt, average_accuracy, average_mae, metric, concepts, columns, matrix}`` as of the latest evaluation.

        ``matrix`` holds the kept rows over the kept concepts; ``columns`` names
        the concept of each column.
        """
        if not self.rows:
            return {
                "average": None, "bwt": None, "average_accuracy": None, "average_mae": None, "metric": self.metric,
                "concepts": len(self._samples), "columns": [], "matrix": [],
            }  # fmt: skip
        forgetting, backward = self._forgetting
        mean = average_accuracy(list(self.rows[-1].values()))  # over the seen concepts: of accuracies, or of errors
        concepts = sorted(self._samples)
        matrix = [[row.get(c) for c in concepts] for row in self.rows]
        return {
            "average": forgetting,
            "bwt": backward,
            "average_accuracy": mean if self.metric == "accuracy" else None,
            "average_mae": mean if self.metric == "mae" else None,
            "metric": self.metric,
            "concepts": len(self._samples),
            "matrix": matrix,
            "columns": concepts,
        }

    def state_dict(self) -> dict[str, Any]:
        """The samples, the matrix and its bookkeeping, and the sampling RNG, as plain values."""
        return {
            "version": VERSION,
            "task": self.task,
            "sample_size": self.sample_size,
            "max_concepts": self.max_concepts,
            "max_rows": self.rows.maxlen,
            "holdout": self.holdout,
            "seed": self._seed,
            "rng": self._rng_now(),
            "samples": [
                [c, {"capacity": s.capacity, "seen": s.seen, "items": [[x, y] for x, y in s.items], "next_pick": s.next_pick, "weight": s.weight}]
                for c, s in self._samples.items()
            ],
            "best": list(map(list, self._best.items())),
            "at_end": list(map(list, self._at_end.items())),
            "rows": [list(map(list, row.items())) for row in self.rows],
            "evaluations": self.evaluations,
            "current": self.current,
            "forgetting": list(self._forgetting),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ForgettingTracker:
        """The tracker :meth:`state_dict` describes (of any layout :func:`~stream_learner.state.forgetting_state` reads)."""
        state = forgetting_state(state)
        tracker = cls(state["sample_size"], state["max_concepts"], state["max_rows"], state["holdout"], state["seed"], state["task"])
        if state["rng"] is not None:
            rng_version, rng_words, gauss = state["rng"]
            tracker._rng, tracker._rng_state = None, (rng_version, tuple(rng_words), gauss)
        for concept, s in state["samples"]:
            items = [(x, y) for x, y in s["items"]]
            tracker._samples[concept] = _Reservoir(s["capacity"], s["seen"], items, s["next_pick"], s["weight"])
        tracker._best = dict(state["best"])
        tracker._at_end = dict(state["at_end"])
        tracker.rows.extend(dict(row) for row in state["rows"])
        tracker.evaluations, tracker.current = state["evaluations"], state["current"]
        forgetting, backward = state["forgetting"]
        tracker._forgetting = (forgetting, backward)
        return tracker

    def _forget_oldest(self) -> None:
        while len(self._samples) > self.max_concepts:
            oldest = min(self._samples)
            del self._samples[oldest]
            self._best.pop(oldest, None)
            self._at_end.pop(oldest, None)


def _accuracy(predict: Callable[[Any], Any], items: list[tuple[Any, Any]]) -> float:
    return sum(predict(x) == y for x, y in items) / len(items)


def _mean_absolute_error(predict: Callable[[Any], Any], items: list[tuple[Any, Any]]) -> float:
    """A missing prediction counts as an infinite error, as in the prequential metrics."""
    errors = [abs(y - p) if (p := predict(x)) is not None else math.inf for x, y in items]
    return sum(errors) / len(errors)
