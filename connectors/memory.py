"""An in-memory source of ``(x, y)`` pairs, for benchmarks and tests."""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator, Sequence

from connectors.base import PairSource
from stream_learner.events import DEFAULT_KEY


class MemorySource(PairSource):
    """Streams a sequence of trusted ``(x, y)`` pairs."""

    def __init__(self, records: Sequence[tuple[dict[Any, Any], Any]], *, name: str = "memory", key: str = DEFAULT_KEY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records = records
        self.name = name
        self.key = key

    def pairs_from(self, offset: int) -> Iterator[tuple[dict[Any, Any], Any]]:
        return islice(self.records, offset, None)
