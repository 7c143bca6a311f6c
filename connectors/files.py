"""JSONL files: a source (one event per line) and a sink (one record per line)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.base import OffsetSource, RawRecord
from connectors.jsonl_writer import Item, JsonlWriter, cannot_write, complete_lines_size
from stream_learner.errors import SinkError, SourceError
from stream_learner.events import Origin

logger = logging.getLogger(__name__)


class JsonlFileSource(OffsetSource):
    """Each line of a file is one raw event (offset = line number from 0).

    Every line is a record, blank ones too, so every line ends as a
    prediction or a dead letter.
    """

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.name = str(path)
        try:
            with self.path.open("rb"):
                pass
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None

    def read_from(self, offset: int) -> Iterator[RawRecord]:
        topic = self.name
        with self.path.open("rb") as f:
            for number, line in enumerate(f):
                if number >= offset:
                    yield RawRecord(line.rstrip(b"\r\n"), Origin(topic, 0, number))


class _JsonlPartition(StatefulSinkPartition[Item, int]):
    """Appends records with a :class:`~connectors.jsonl_writer.JsonlWriter`; its state is the file size, so a recovered run rewrites nothing twice."""

    def __init__(self, path: Path, resume_size: int | None) -> None:
        self._writer = JsonlWriter(path, resume_size)  # truncates what was written after the recovered epoch

    def write_batch(self, items: list[Item]) -> None:
        self._writer.write(items)

    def snapshot(self) -> int:
        return self._writer.size()

    def close(self) -> None:
        """Flush and stop the writer; never raises.

        Bytewax also calls it while unwinding another error, where raising
        aborts the process; on a clean end of stream it has taken a last
        snapshot first, which raised any failure.
        """
        try:
            self._writer.close()
        except SinkError as exc:
            logger.error("%s", exc)


class JsonlSink(FixedPartitionedSink[Item, int]):
    """Writes lists of records to one JSONL file (one partition, so one writer).

    Takes ``(key, [record, ...])`` or ``(key, Predictions)`` items; every item goes to the single partition.
    ``append``: keep what the file holds and write after it (a resumed run), else start it empty;
    a recovered partition's state (a size) wins over both.
    A file that cannot be written is a :class:`~stream_learner.errors.SinkError`
    here, before the dataflow runs (inside it, Bytewax would wrap it in a panic).
    """

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.append = append
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab"):  # created if missing; the partition truncates it as the run (or its recovery) needs
                pass
        except OSError as exc:
            raise SinkError(cannot_write(self.path, exc)) from None

    def list_parts(self) -> list[str]:
        return [self.path.name]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _JsonlPartition:
        if resume_state is None and self.append:
            resume_state = complete_lines_size(self.path)
        return _JsonlPartition(self.path, resume_state)
