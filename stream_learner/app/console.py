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


def format_fleet(summary: dict[str, Any], top: int = 3) -> str:
    """The summary's fleet lines (keys, the resident set, evictions and restores, accuracy across keys, the top keys); empty for one key.

    Per-key figures stay on the metrics output: a fleet is told in aggregates and its first ``top`` keys of each ranking.

    >>> print(format_fleet({
    ...     "keys": 3, "resident_keys": 2, "resident_keys_max": 2, "accuracy_mean": 0.75, "accuracy_min": 0.5, "keys_in_drift": 1,
    ...     "evictions": {"count": 4, "seconds": 0.012, "max_seconds": 0.004}, "restores": {"count": 3, "seconds": 0.009, "max_seconds": 0.005},
    ...     "top_keys": {"by_events": [{"key": "a", "events": 1200, "accuracy": 0.9}, {"key": "b", "events": 300, "accuracy": None}],
    ...                  "worst_accuracy": [{"key": "c", "events": 1, "accuracy": 0.5}]},
    ... }))
          fleet: 3 keys, 2 resident (at most 2), 4 evictions (12 ms, max 4 ms), 3 restores (9 ms, max 5 ms)
          accuracy across keys: mean 0.7500, min 0.5000; 1 key in drift
          busiest: a (1,200 events, accuracy 0.9000), b (300 events)
          least accurate: c (0.5000, 1 event)
    """
    if summary.get("keys", 0) <= 1:
        return ""
    evictions, restores = summary["evictions"], summary["restores"]
    lines = [f"fleet: {summary['keys']:,} keys"]
    if evictions["count"] or restores["count"]:
        lines[0] += f", {summary['resident_keys']:,} resident (at most {summary['resident_keys_max']:,}), {_timed(evictions, 'evictions')}, {_timed(restores, 'restores')}"
    if summary.get("accuracy_mean") is not None:
        in_drift = summary["keys_in_drift"]
        lines.append(f"accuracy across keys: mean {summary['accuracy_mean']:.4f}, min {summary['accuracy_min']:.4f}; {in_drift:,} {'key' if in_drift == 1 else 'keys'} in drift")
    ranked = summary["top_keys"]
    if ranked["by_events"]:
        lines.append("busiest: " + ", ".join(_busiest(k) for k in ranked["by_events"][:top]))
    if ranked["worst_accuracy"]:
        lines.append("least accurate: " + ", ".join(f"{k['key']} ({k['accuracy']:.4f}, {_events(k['events'])})" for k in ranked["worst_accuracy"][:top]))
    return "".join(f"      {line}\n" for line in lines).rstrip("\n")


def _timed(timings: dict[str, Any], what: str) -> str:
    return f"{timings['count']:,} {what} ({1000 * timings['seconds']:,.0f} ms, max {1000 * timings['max_seconds']:,.0f} ms)"


def _busiest(key: dict[str, Any]) -> str:
    accuracy = f", accuracy {key['accuracy']:.4f}" if key["accuracy"] is not None else ""
    return f"{key['key']} ({_events(key['events'])}{accuracy})"


def _events(n: int) -> str:
    return f"{n:,} event" if n == 1 else f"{n:,} events"


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
