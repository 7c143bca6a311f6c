"""An in-memory source: ``(x, y)`` pairs or raw bytes, for benchmarks and tests."""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator, Sequence

from connectors.base import OffsetSource, RawRecord, SourceItem
from stream_learner.events import DEFAULT_KEY, Event, Origin


class MemorySource(OffsetSource):
    """Streams a sequence of ``(x, y)`` pairs (trusted) or ``bytes`` (decoded like a file line)."""

    def __init__(self, records: Sequence[tuple[dict[Any, Any], Any] | bytes], *, name: str = "memory", key: str = DEFAULT_KEY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records = records
        self.name = name
        self.key = key

    def read_from(self, offset: int) -> Iterator[SourceItem]:
        topic, key = self.name, self.key
        for i, record in enumerate(islice(self.records, offset, None), start=offset):
            if isinstance(record, bytes):
                yield RawRecord(record, Origin(topic, 0, i))
            else:
                x, y = record
                yield Event(f"{topic}:0:{i}", key, x, y, None, 0, i)
