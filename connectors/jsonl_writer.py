"""JSONL files written by the sink's worker thread: one record per line, sizes for recovery, failures that stick.

Each record is encoded as ``orjson.dumps(record, option=OPT_NON_STR_KEYS |
OPT_APPEND_NEWLINE)``. The writer is in the calling thread: a child process
that encoded and wrote the predictions took no measurable CPU off the
learner's process (marshalling the records for it cost about what encoding
them does) and added its own CPU, a process and a protocol
(``benchmarks/README.md``).

This module imports neither Bytewax nor Kafka.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from stream_learner.errors import SinkError
from stream_learner.predictions import Predictions, records_of

Item = list[dict[str, Any]] | Predictions
JSONL = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def prepare_file(path: Path, resume_size: int | None) -> None:
    """Create ``path`` (and its folder) empty, or truncate it to ``resume_size`` bytes (a recovered run drops what was written after the recovered epoch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("r+b" if resume_size is not None and path.exists() else "wb") as file:
        if resume_size is not None:
            file.truncate(resume_size)


def complete_lines_size(path: Path, block: int = 1 << 16) -> int:
    """The size of ``path`` up to the end of its last complete line: where an appending run writes (a line a crash cut short is dropped).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> _ = path.write_bytes(b'{"a":1}\\n{"a":'); complete_lines_size(path)
    8
    """
    with path.open("rb") as file:
        end = file.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - block)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0


def cannot_write(path: object, exc: OSError) -> str:
    """The message of a file that cannot be written, the same from the writer and the sink."""
    return f"cannot write {path}: {exc.strerror or exc}"


def encoded(path: Path, items: Iterable[Item]) -> bytes:
    """The JSONL lines of a batch for ``path``; a record orjson refuses is a :class:`SinkError` naming the file."""
    dumps = orjson.dumps
    buffer = bytearray()  # appending each line frees it at once, where a list to join keeps every line alive
    try:
        for item in items:
            for record in records_of(item):
                buffer += dumps(record, option=JSONL)
    except orjson.JSONEncodeError as exc:
        raise SinkError(f"cannot encode a record for {path}: {exc}") from None
    return bytes(buffer)


class JsonlWriter:
    """Appends records to one JSONL file (one caller at a time).

    Args:
        path: the file; its folder is created.
        resume_size: truncate the file to this many bytes (a recovered run
            drops what was written after the recovered epoch); ``None``
            starts an empty file.

    A file that cannot be created or truncated raises ``OSError`` here; a
    failure to encode or write later is a :class:`SinkError`, raised by the
    call that meets it and again by every later call.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> writer = JsonlWriter(path)
    >>> writer.write([[{"accuracy": 0.5}]]); writer.size(), path.read_bytes()
    (17, b'{"accuracy":0.5}\\n')
    >>> writer.close()
    """

    def __init__(self, path: str | Path, resume_size: int | None = None) -> None:
        self.path = Path(path)
        prepare_file(self.path, resume_size)
        self._file = self.path.open("ab")  # at the prepared file's end: its position is its size
        self._error: SinkError | None = None  # the first failure, raised by every later call

    def write(self, items: Iterable[Item]) -> None:
        """Encode a batch of items (lists of JSON-able dicts, or :class:`Predictions`) and append it."""
        self._raise_if_failed()
        data = self._fail_on_error(encoded, self.path, items)
        if data:
            self._fail_on_error(self._file.write, data)

    def size(self) -> int:
        """The file's size, everything written before this call in it."""
        self._raise_if_failed()
        self._fail_on_error(self._file.flush)
        return self._file.tell()

    def close(self) -> None:
        """Flush and close the file. Idempotent; a failure that an earlier call raised is not raised again."""
        if self._file.closed:
            return
        try:
            if self._error is None:
                self._fail_on_error(self._file.flush)
        finally:
            try:
                self._file.close()
            except OSError:  # its flush again, after a failure already raised: that buffer cannot be written
                pass

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._file.closed:
            raise SinkError(f"the writer of {self.path} is closed")

    def _fail_on_error(self, call: Any, *args: Any) -> Any:
        """``call(*args)``, with an OS error remembered and raised as :class:`SinkError`."""
        try:
            return call(*args)
        except OSError as exc:
            self._error = SinkError(cannot_write(self.path, exc))
        except SinkError as exc:
            self._error = exc
        raise self._error
