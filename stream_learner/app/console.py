"""What a run writes to the console: metrics and drift lines (one drift line per concept boundary), and predictions on stdout.

Where events carry ``task``, the tasks mark the concepts; the error detector
still reports the drift that a task switch causes a few events later, as a
drift record that opens no concept (it stays in the metrics output, counted
in ``drifts``). On the console that would be a second line for one switch,
so a drift line is printed only where the key's concept changes.

>>> lines = []
>>> console = ConsoleLines(lines.append)
>>> console.show([
...     {"type": "drift", "key": "k", "detector": "task", "at_event": 1000, "concept": 1, "ts": 0},
...     {"type": "drift", "key": "k", "detector": "adwin", "at_event": 1024, "concept": 1, "ts": 0},
... ])
>>> lines
['drift    key=k  at event 1000 (task) -> concept 1']
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.jsonl_writer import Item, encoded
from connectors.outputs import format_record

Records = tuple[str, list[dict[str, Any]]]


class ConsoleLines(DynamicSink[Records]):
    """Hands each metrics and feature-drift record, and each drift record that opens a concept, formatted, to ``write`` (a progress bar's printer)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._lock = threading.Lock()  # the workers' partitions share the concepts seen
        self._concept: dict[str, int] = {}  # model key -> its concept in the last record shown

    def show(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            if record["type"] == "feature_drift":
                self._write(format_feature_drift(record))
                continue
            if "concept" in record:
                with self._lock:
                    before = self._concept.get(record["key"], 0)
                    self._concept[record["key"]] = record["concept"]
                if record["type"] == "drift" and record["concept"] == before:
                    continue  # a drift inside the concept the tasks mark
            self._write(format_record(record))

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self)


class _Partition(StatelessSinkPartition[Records]):
    def __init__(self, console: ConsoleLines) -> None:
        self._console = console

    def write_batch(self, items: list[Records]) -> None:
        for _, records in items:
            self._console.show(records)


def format_feature_drift(record: dict[str, Any]) -> str:
    """A feature_drift record as one console line, its features ranked as the record ranks them.

    >>> format_feature_drift({"type": "feature_drift", "key": "k", "features": [{"name": "x", "psi": 0.531}, {"name": "y", "psi": 0.3}], "at_event": 900})
    'feature drift  key=k  at event 900: x (psi 0.53), y (psi 0.30)'
    """
    features = ", ".join(f"{f['name']} (psi {f['psi']:.2f})" for f in record["features"])
    return f"feature drift  key={record['key']}  at event {record['at_event']}: {features}"


class StdoutJsonl(DynamicSink[tuple[str, Item]]):
    """Predictions as JSONL on stdout (``--predictions -``), each batch written whole and flushed (workers share the stream).

    Not a file's sink: a pipe has no size to resume from, so a run writing here has no recovery state for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StdoutPartition:
        return _StdoutPartition(self._lock)


class _StdoutPartition(StatelessSinkPartition[tuple[str, Item]]):
    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def write_batch(self, items: list[tuple[str, Item]]) -> None:
        lines = encoded(Path("<stdout>"), (records for _, records in items))
        with self._lock:
            sys.stdout.buffer.write(lines)
            sys.stdout.buffer.flush()
