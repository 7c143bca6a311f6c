"""The page's fine accuracy points: a classifier's accuracy over each run of :data:`POINT_EVERY` labelled events.

The engine's metrics records (every ``--metrics-every`` labelled events, 1,000
by default) are a contract of the metrics output and carry the whole
forgetting matrix; publishing them ten times as often to draw a finer line
would cost every consumer of that output. The page's finer line is made on
the side instead, from what each learner step already holds: the labels of
the events it took and the predictions it published, scored with the key's
own error function (:meth:`stream_learner.metrics.Prequential.error`, the
champion's where the key has challengers). Only a key whose history the page
keeps is scored (the telemetry's labelled and watched keys: a bounded number,
whatever the fleet's size), and each keeps a count below
:data:`POINT_EVERY` between points. A label that arrives late (a delayed
label) is learned without a prediction in the same step: it counts in the
metrics records, not in these points.

>>> points = AccuracyPoints()
>>> points.add([(i, i % 4 == 0) for i in range(1, 251)])
[[100, 0.75], [200, 0.75]]
>>> points.labelled, points.wrong
(50, 12)
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Callable, Sequence

from stream_learner.delayed import LabelRecord
from stream_learner.events import Event, EventBatch
from stream_learner.predictions import Predictions

POINT_EVERY = 100
"""Labelled events per fine accuracy point."""

Scored = list[tuple[int, float]]  # (the key's event count at the event, its prediction's error)


def scored_predictions(
    events: Sequence[Event | LabelRecord] | EventBatch, predictions: Predictions, events_after: int, error: Callable[[Any, Any], float]
) -> Scored:
    """``(event position, error)`` of each published prediction whose event carried its label, in order.

    ``events_after`` is the key's event count after the step (each published
    prediction is one event, the last at ``events_after``); an event the step
    did not predict (a dead letter, or one learned before a restart) is
    matched by its id.

    >>> batch = EventBatch("s", "k", 0, 0, [({"x": 1}, True), ({"x": 2}, None), ({"x": 3}, False)])
    >>> made = Predictions("k", 0.0, [("s:0:0", True, None, 1, 0), ("s:0:1", True, None, 1, 0), ("s:0:2", True, None, 2, 0)])
    >>> scored_predictions(batch, made, 12, lambda y, y_pred: int(y != y_pred))
    [(10, 0), (12, 1)]
    """
    rows = predictions.rows
    first = events_after - len(rows) + 1
    if isinstance(events, EventBatch):
        labels = list(map(itemgetter(1), events.pairs)) if len(events) == len(rows) else _labels_by_id(((id_, y) for id_, _, y, _ in events.rows()), rows)
    else:
        taken = [e for e in events if type(e) is not LabelRecord]
        labels = [e.label for e in taken] if len(taken) == len(rows) else _labels_by_id(((e.id, e.label) for e in taken), rows)
    if None not in labels:  # every event labelled: built in C, but for the error itself
        return list(zip(range(first, first + len(rows)), map(error, labels, map(itemgetter(1), rows))))
    return [(first + i, error(label, row[1])) for i, (row, label) in enumerate(zip(rows, labels)) if label is not None]


def _labels_by_id(labels: Any, rows: list[Any]) -> list[Any]:
    """The label of each row's event, from ``(id, label)`` pairs."""
    by_id = dict(labels)
    return [by_id.get(row[0]) for row in rows]


class AccuracyPoints:
    """One key's running count towards its next point: labelled events and wrong predictions since the last point."""

    __slots__ = ("labelled", "wrong")

    def __init__(self) -> None:
        self.labelled = 0
        self.wrong = 0

    def add(self, scored: Scored) -> list[list[float]]:
        """Count a step's scored predictions (a classifier's errors: 0 or 1); each ``[event position, accuracy]`` point completed by them."""
        points = []
        start = 0
        while len(scored) - start >= POINT_EVERY - self.labelled:  # one point completed per pass
            end = start + POINT_EVERY - self.labelled
            wrong = self.wrong + sum(map(itemgetter(1), scored[start:end]))
            points.append([scored[end - 1][0], 1.0 - wrong / POINT_EVERY])
            start, self.labelled, self.wrong = end, 0, 0
        self.labelled += len(scored) - start
        self.wrong += sum(map(itemgetter(1), scored[start:]))
        return points
