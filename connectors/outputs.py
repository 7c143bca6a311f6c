"""A sink for the console (snapshots go through :mod:`connectors.snapshot_writer`)."""

from __future__ import annotations

from typing import Any, Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition


def format_record(record: dict[str, Any]) -> str:
    """A metrics or drift record as one readable console line.

    >>> format_record({"type": "drift", "key": "default", "detector": "adwin", "at_event": 5012, "concept": 1, "ts": 0})
    'drift    key=default  at event 5012 (adwin) -> concept 1'
    """
    if record["type"] == "drift":
        return f"drift    key={record['key']}  at event {record['at_event']} ({record['detector']}) -> concept {record['concept']}"
    quality = (
        f"accuracy={record['accuracy']:.4f}  window={record['accuracy_window']:.4f}"
        if record.get("accuracy") is not None
        else f"mae={record['mae']:.4f}  rmse={record['rmse']:.4f}"
        if record.get("mae") is not None
        else "no labels yet"
    )
    return (
        f"metrics  key={record['key']}  events={record['events']}  labelled={record['labelled']}  "
        f"{quality}  concept={record['concept']}  drifts={record['drifts']}"
    )


class _CallbackPartition(StatelessSinkPartition[Any]):
    def __init__(self, write: Callable[[list[Any]], None]) -> None:
        self._write = write

    def write_batch(self, items: list[Any]) -> None:
        self._write(items)


class ConsoleSink(DynamicSink[tuple[str, list[dict[str, Any]]]]):
    """Hands each metrics/drift record, formatted, to ``write`` (e.g. a progress bar's printer).

    Takes ``(key, [record, ...])`` items, like every record sink.
    """

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write_line = write

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CallbackPartition:
        def write(items: list[tuple[str, list[dict[str, Any]]]]) -> None:
            for _, records in items:
                for record in records:
                    self._write_line(format_record(record))

        return _CallbackPartition(write)
