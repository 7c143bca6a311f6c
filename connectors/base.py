"""Shared pieces of the single-partition sources.

A source item is either a trusted :class:`~stream_learner.events.Event`
(synthetic and bundled datasets build them directly) or a
:class:`RawRecord` that the dataflow decodes and validates.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterator

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from stream_learner.events import Event, Origin

DEFAULT_BATCH_SIZE = 1000


@dataclass(slots=True)
class RawRecord:
    """Raw bytes from a source and where they came from."""

    value: bytes
    origin: Origin


SourceItem = Event | RawRecord
ReadCallback = Callable[[int], None]


class _OffsetPartition(StatefulSourcePartition[SourceItem, int]):
    """Reads a finite iterator in batches; its state is the next offset."""

    def __init__(self, items: Iterator[SourceItem], offset: int, on_read: ReadCallback | None, batch_size: int) -> None:
        self._items = items
        self._offset = offset
        self._on_read = on_read
        self._batch_size = batch_size

    def next_batch(self) -> list[SourceItem]:
        batch = list(islice(self._items, self._batch_size))
        if not batch:
            raise StopIteration
        self._offset += len(batch)
        if self._on_read is not None:
            self._on_read(len(batch))
        return batch

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


class OffsetSource(FixedPartitionedSource[SourceItem, int]):
    """A one-partition source whose records are numbered from 0.

    Subclasses implement :meth:`read_from`. ``start`` (or Bytewax's resume
    state, which wins) is the first offset to read; ``max_events`` bounds
    the offsets read to ``[0, max_events)``.
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

    def read_from(self, offset: int) -> Iterator[SourceItem]:
        """Yield the records from ``offset`` on, each carrying its offset."""
        raise NotImplementedError

    def list_parts(self) -> list[str]:
        return ["0"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _OffsetPartition:
        offset = self.start if resume_state is None else resume_state
        items = self.read_from(offset)
        if self.max_events is not None:
            items = islice(items, max(0, self.max_events - offset))
        return _OffsetPartition(items, offset, self.on_read, self.batch_size)
