"""Shared pieces of the single-partition sources.

A source item is either a trusted :class:`~stream_learner.events.Event`
(synthetic and bundled datasets build them directly) or a
:class:`RawRecord` that the dataflow decodes and validates. Each batch a
source hands the dataflow is one :class:`SourceBatch`, stamped with the
time it was handed over (where each event's latency starts).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Iterator

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from stream_learner.events import DEFAULT_KEY, Event, EventBatch, Origin

DEFAULT_BATCH_SIZE = 50_000  # records per batch of the embedded sources; each key's events in a batch make one learner call, so a fleet's keys need several events a batch (see benchmarks/README.md, fleets)
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024  # a batch also ends once its raw records hold this much, so that wide records cannot fill the memory


@dataclass(slots=True)
class RawRecord:
    """Raw bytes from a source (``None``: a Kafka tombstone) and where they came from."""

    value: bytes | None
    origin: Origin


SourceItem = Event | RawRecord


@dataclass(slots=True)
class SourceBatch:
    """The items one source partition read at once, and when it handed them to the dataflow (Unix time).

    One stamp per batch, not per item: every item of a batch was handed over
    together (see :mod:`stream_learner.app.latency`). Unix time rather than a
    monotonic clock, so that a batch whose events another process learns
    (a cluster's exchange) is still measured from its stamp.
    """

    read_at: float
    items: list[Any]


ReadCallback = Callable[[int], None]


def take_batch(items: Iterator[Any], count: int, byte_budget: int) -> list[Any]:
    """The next ``count`` items at most, ending early after the raw record that brings their bytes to ``byte_budget``.

    >>> records = iter([RawRecord(b"x" * 6, Origin("f", 0, i)) for i in range(5)])
    >>> [len(take_batch(records, 4, 10)), len(take_batch(records, 4, 100)), len(take_batch(records, 4, 100))]
    [2, 3, 0]
    """
    batch: list[Any] = []
    size = 0
    for item in islice(items, count):
        batch.append(item)
        if type(item) is RawRecord and item.value is not None:
            size += len(item.value)
            if size >= byte_budget:
                break
    return batch


class _OffsetPartition(StatefulSourcePartition[SourceBatch, int]):
    """Reads a finite iterator in batches (each one :class:`SourceBatch`), until ``stop`` is set; its state is the next offset."""

    def __init__(
        self,
        items: Iterator[Any],
        offset: int,
        on_read: ReadCallback | None,
        batch_size: int,
        stop: threading.Event,
        wrap: Callable[[int, list[Any]], Any] | None = None,
    ) -> None:
        self._items = items
        self._stop = stop
        self._offset = offset
        self._on_read = on_read
        self._batch_size = batch_size
        self._wrap = wrap  # makes one item of a batch read from an offset (EventBatch), or None: the records are the items

    def next_batch(self) -> list[SourceBatch]:
        batch = [] if self._stop.is_set() else take_batch(self._items, self._batch_size, DEFAULT_BATCH_BYTES)
        if not batch:
            raise StopIteration
        first, self._offset = self._offset, self._offset + len(batch)
        if self._on_read is not None:
            self._on_read(len(batch))  # before the stamp: a --rate wait here is no part of the events' latency
        return [SourceBatch(time.time(), batch if self._wrap is None else [self._wrap(first, batch)])]

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


class OffsetSource(FixedPartitionedSource[SourceBatch, int]):
    """A one-partition source whose records are numbered from 0.

    Subclasses implement :meth:`read_from`. ``start`` (or Bytewax's resume
    state, which wins) is the first offset to read; ``max_events`` bounds
    the offsets read to ``[0, max_events)``. Setting ``stop`` ends the
    stream after the batch being read (a signal's graceful stop).
    """

    name: str = "source"

    def __init__(
        self,
        *,
        start: int = 0,
        max_events: int | None = None,
        on_read: ReadCallback | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.start = start
        self.max_events = max_events
        self.on_read = on_read
        self.batch_size = batch_size
        self.stop = threading.Event()

    def read_from(self, offset: int) -> Iterator[SourceItem]:
        """Yield the records from ``offset`` on, each carrying its offset."""
        raise NotImplementedError

    def list_parts(self) -> list[str]:
        return ["0"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _OffsetPartition:
        offset = self.start if resume_state is None else resume_state
        items = self._records_from(offset)
        if self.max_events is not None:
            items = islice(items, max(0, self.max_events - offset))
        return _OffsetPartition(items, offset, self.on_read, self.batch_size, self.stop, self._batch_item())

    def _records_from(self, offset: int) -> Iterator[Any]:
        """What the partition reads in batches: by default the items of :meth:`read_from`."""
        return self.read_from(offset)

    def _batch_item(self) -> Callable[[int, list[Any]], Any] | None:
        """Makes one item of each batch (its first offset, its records), or ``None``: the records are the items."""
        return None


class PairSource(OffsetSource):
    """A one-partition source of trusted ``(features, label)`` pairs for one model key.

    Subclasses implement :meth:`pairs_from`. Its batches reach the learner as
    one :class:`~stream_learner.events.EventBatch` each, not an
    :class:`~stream_learner.events.Event` per pair; :meth:`read_from` still
    gives the events one by one.
    """

    key: str = DEFAULT_KEY

    def pairs_from(self, offset: int) -> Iterator[tuple[dict[Any, Any], Any]]:
        """Yield the ``(features, label)`` pairs from ``offset`` on."""
        raise NotImplementedError

    def read_from(self, offset: int) -> Iterator[Event]:
        topic, key = self.name, self.key
        for i, (x, y) in enumerate(self.pairs_from(offset), start=offset):
            yield Event(f"{topic}:0:{i}", key, x, y, None, 0, i)

    def _records_from(self, offset: int) -> Iterator[tuple[dict[Any, Any], Any]]:
        return self.pairs_from(offset)

    def _batch_item(self) -> Callable[[int, list[Any]], EventBatch]:
        topic, key = self.name, self.key
        return lambda first, pairs: EventBatch(topic, key, 0, first, pairs)
