"""What a run writes to the console: metrics and drift lines (one drift line per concept boundary), promotions and operators' commands, and predictions on stdout.

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
    """Hands each metrics, feature-drift, promotion and control record, and each drift record that opens a concept, formatted, to ``write`` (a progress bar's printer).

    Where a key has challengers, only its champion's metrics and drifts are shown.
    """

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._lock = threading.Lock()  # the workers' partitions share the concepts seen
        self._concept: dict[str, int] = {}  # model key -> its concept in the last record shown

    def show(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            kind = record["type"]
            if kind in _FORMATS:
                self._write(_FORMATS[kind](record))
                continue
            if record.get("champion") is False:
                continue  # a challenger's metrics and drifts stay in the metrics output: the console follows the published model
            if kind == "drift" and record["detector"] == "recurring":
                self._write(format_reuse(record))
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


def format_promotion(record: dict[str, Any]) -> str:
    """A promotion record (a challenger replaced the champion, or is recommended to) as one console line.

    >>> evidence = {"window": 500, "champion_error": 0.41, "challenger_error": 0.15, "statistic": 96.0, "p_value": 1.2e-05, "test": "mcnemar_chi2"}
    >>> format_promotion({"type": "promotion", "key": "k", "champion": "logreg", "challenger": "arf", "evidence": evidence, "at_event": 1500, "applied": True})
    'promotion  key=k  at event 1500: arf replaces logreg (mcnemar_chi2 p=1.2e-05: error 0.410 -> 0.150 over 500 events)'
    """
    e = record["evidence"]
    verb = "replaces" if record["applied"] else "is better than (recommended only)"
    evidence = f"{e['test']} p={e['p_value']:.2g}: error {e['champion_error']:.3f} -> {e['challenger_error']:.3f} over {e['window']} events"
    return f"promotion  key={record['key']}  at event {record['at_event']}: {record['challenger']} {verb} {record['champion']} ({evidence})"


def format_reuse(record: dict[str, Any]) -> str:
    """A drift record saying an earlier concept's model is live again, as one console line.

    >>> evidence = {"test": "mcnemar_exact", "statistic": 2.0, "p_value": 0.00098, "n": 150, "alpha": 0.0021, "live_error": 0.14, "stored_error": 0.067}
    >>> format_reuse({"type": "drift", "key": "k", "detector": "recurring", "at_event": 2066, "concept": 2, "reused_concept": 0, "evidence": evidence})
    "reuse  key=k  at event 2066: concept 0's model is back (mcnemar_exact p=0.00098: error 0.140 -> 0.067 over 150 events)"
    """
    e = record["evidence"]
    evidence = f"{e['test']} p={e['p_value']:.2g}: error {e['live_error']:.3f} -> {e['stored_error']:.3f} over {e['n']} events"
    return f"reuse  key={record['key']}  at event {record['at_event']}: concept {record['reused_concept']}'s model is back ({evidence})"


def format_control(record: dict[str, Any]) -> str:
    """The engine's answer to an operator's command as one console line.

    >>> format_control({"type": "control", "key": "k", "id": "c-1", "action": "promote", "arg": "nope", "status": "refused", "reason": "no candidate 'nope'", "at_event": 9})
    "control  key=k  at event 9: promote nope (c-1) refused: no candidate 'nope'"
    """
    arg = "" if record["arg"] is None else f" {record['arg']}"
    reason = f": {record['reason']}" if record.get("reason") else ""
    return f"control  key={record['key']}  at event {record['at_event']}: {record['action']}{arg} ({record['id']}) {record['status']}{reason}"


_FORMATS: dict[str, Callable[[dict[str, Any]], str]] = {"feature_drift": format_feature_drift, "promotion": format_promotion, "control": format_control}
"""The records with a line of their own; the others are metrics and drift lines (:func:`~connectors.outputs.format_record`)."""


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
