"""Sinks for the console and for snapshots."""

from __future__ import annotations

import logging
from typing import Any, Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from stream_learner.engine import Snapshot
from stream_learner.snapshot import SnapshotStore, seal

logger = logging.getLogger(__name__)


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


class SnapshotSink(DynamicSink[Snapshot]):
    """Seals each :class:`~stream_learner.engine.Snapshot` and saves it to a store.

    A failed write is logged and counted through ``on_saved(key, version or None)``;
    it never stops the stream (the next snapshot will try again).
    """

    def __init__(self, store: SnapshotStore, signing_key: bytes, on_saved: Callable[[str, int | None], None] | None = None) -> None:
        self.store = store
        self.signing_key = signing_key
        self.on_saved = on_saved

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CallbackPartition:
        return _CallbackPartition(self._save_all)

    def _save_all(self, snapshots: list[Snapshot]) -> None:
        for snap in snapshots:
            blob = seal(
                snap.payload,
                signing_key=self.signing_key,
                key=snap.key,
                learner_kind=snap.learner_kind,
                strategy=snap.strategy,
                events_seen=snap.events_seen,
                source_offsets=snap.source_offsets,
            )
            try:
                version: int | None = self.store.save(snap.key, blob)
            except Exception as exc:  # noqa: BLE001 - storage trouble must not stop learning
                logger.error("snapshot of key %r failed: %s", snap.key, exc)
                version = None
            if self.on_saved is not None:
                self.on_saved(snap.key, version)
