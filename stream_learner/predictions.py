"""One learner step's predictions, compact: a tuple per event, not a dict.

A prediction record (:class:`~stream_learner.events.Prediction`) has seven
fields, but within one learner step ``key`` and ``ts`` are the same for
every event. :class:`Predictions` keeps those two once and a
``(id, prediction, proba, model_version, concept)`` tuple per event: a
tuple is cheaper to build than the dict, and plain rows marshal, so a sink
can hand them to a writer process (:meth:`Predictions.to_wire`) and leave
the JSON encoding there. Read as a sequence it is the records themselves.

>>> batch = Predictions("default", 1.5, [("in:0:0", True, {False: 0.2, True: 0.8}, 0, 0)])
>>> len(batch), batch[0]["prediction"], batch[0]["key"], list(batch[:1]) == [batch[0]]
(1, True, 'default', True)
>>> list(batch) == [batch[0]] and Predictions.from_wire(batch.to_wire()) == batch
True
>>> batch[0]
{'id': 'in:0:0', 'key': 'default', 'prediction': True, 'proba': {False: 0.2, True: 0.8}, 'model_version': 0, 'concept': 0, 'ts': 1.5}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = tuple[str, Any, "dict[Any, float] | None", int, int]  # (id, prediction, proba, model_version, concept)
Wire = tuple[str, float, list[Row]]  # what marshal carries: (key, ts, rows)


@dataclass(slots=True)
class Predictions(Sequence[dict[str, Any]]):
    """The predictions of one model key made at one time ``ts``, in event order."""

    key: str
    ts: float
    rows: list[Row] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Predictions(self.key, self.ts, self.rows[index])
        return self._record(self.rows[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(self._record, self.rows)

    def to_wire(self) -> Wire:
        """A plain tuple that ``marshal`` carries when the labels and ids are plain values."""
        return self.key, self.ts, self.rows

    @classmethod
    def from_wire(cls, wire: Wire) -> Predictions:
        key, ts, rows = wire
        return cls(key, ts, rows)

    def _record(self, row: Row) -> dict[str, Any]:
        id_, prediction, proba, version, concept = row
        return {"id": id_, "key": self.key, "prediction": prediction, "proba": proba, "model_version": version, "concept": concept, "ts": self.ts}


def records_of(part: list[dict[str, Any]] | Predictions | Wire) -> Iterable[dict[str, Any]]:
    """The records of one part of a batch: a list of records, a :class:`Predictions`, or its wire tuple (marshalled)."""
    if isinstance(part, tuple):
        return Predictions.from_wire(part)
    return part
