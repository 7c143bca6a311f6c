"""JSONL files: a source (one event per line) and a sink (one record per line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.base import OffsetSource, RawRecord
from stream_learner.errors import SourceError
from stream_learner.events import Origin


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


class _JsonlPartition(StatefulSinkPartition[list[dict[str, Any]], int]):
    """Appends records; its state is the file size, so a recovered run rewrites nothing twice."""

    def __init__(self, path: Path, resume_size: int | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("r+b" if resume_size is not None and path.exists() else "wb")
        if resume_size is not None:
            self._file.truncate(resume_size)  # drop what was written after the recovered epoch
            self._file.seek(resume_size)

    def write_batch(self, items: list[list[dict[str, Any]]]) -> None:
        dumps, option = orjson.dumps, orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
        # Appending each line to one buffer frees it at once; joining a list of
        # them keeps every (over-allocated) line alive and was 5x slower.
        buffer = bytearray()
        for records in items:
            for record in records:
                buffer += dumps(record, option=option)
        self._file.write(buffer)

    def snapshot(self) -> int:
        self._file.flush()
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class JsonlSink(FixedPartitionedSink[list[dict[str, Any]], int]):
    """Writes lists of records to one JSONL file (one partition, so one writer).

    Takes ``(key, [record, ...])`` items; every item goes to the single partition.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def list_parts(self) -> list[str]:
        return [self.path.name]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _JsonlPartition:
        return _JsonlPartition(self.path, resume_state)
