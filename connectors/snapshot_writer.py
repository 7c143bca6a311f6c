"""Snapshots written off the hot path.

:class:`BackgroundSnapshotSink` hands each :class:`~stream_learner.engine.Snapshot`
to a writer thread that seals and saves it, so the dataflow worker only
pays for a dictionary insert. While a write is in flight, a newer snapshot
of the same key replaces the queued one (the older one would be superseded
at once anyway). Closing the sink (end of the stream, graceful shutdown)
drains the queue, so the final snapshots are written before the run ends.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
import time
from typing import Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from stream_learner.engine import Snapshot
from stream_learner.snapshot import SnapshotStore, seal

logger = logging.getLogger(__name__)


class SnapshotWriter:
    """One writer thread per store; thread-safe ``submit``; ``close`` drains."""

    def __init__(self, store: SnapshotStore, signing_key: bytes, on_saved: Callable[[str, int | None], None] | None = None) -> None:
        self.store = store
        self.signing_key = signing_key
        self.on_saved = on_saved
        # the latest timings (bounded: a long run snapshots many times)
        self.submit_seconds: deque[float] = deque(maxlen=10_000)  # time the submitting thread spent, per snapshot
        self.write_seconds: deque[float] = deque(maxlen=10_000)  # time each seal + save took on the writer thread
        self._queued: dict[str, Snapshot] = {}
        self._superseded: list[Snapshot] = []  # replaced before they were written: discarded by the writer thread
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="snapshot-writer", daemon=True)
        self._thread.start()

    def submit(self, snapshots: list[Snapshot]) -> None:
        started = time.perf_counter()
        with self._cond:
            for snap in snapshots:
                older = self._queued.get(snap.key)
                if older is not None:
                    self._superseded.append(older)
                self._queued[snap.key] = snap
            self._cond.notify()
        self.submit_seconds.append(time.perf_counter() - started)

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queued and not self._closing:
                    self._cond.wait()
                if not self._queued:
                    return
                snaps = list(self._queued.values())
                self._queued.clear()
                superseded, self._superseded = self._superseded, []
            for snap in superseded:
                snap.discard()
            for snap in snaps:
                self._write(snap)

    def _write(self, snap: Snapshot) -> None:
        started = time.perf_counter()
        try:
            blob = seal(
                snap.payload,
                signing_key=self.signing_key,
                key=snap.key,
                learner_kind=snap.learner_kind,
                strategy=snap.strategy,
                events_seen=snap.events_seen,
                source_offsets=snap.source_offsets,
            )
            version: int | None = self.store.save(snap.key, blob)
        except Exception as exc:  # noqa: BLE001 - storage trouble must not stop learning
            logger.error("snapshot of key %r failed: %s", snap.key, exc)
            version = None
        self.write_seconds.append(time.perf_counter() - started)
        if self.on_saved is not None:
            self.on_saved(snap.key, version)


class _Partition(StatelessSinkPartition[Snapshot]):
    def __init__(self, writer: SnapshotWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[Snapshot]) -> None:
        self._writer.submit(items)

    def close(self) -> None:
        self._writer.close()


class BackgroundSnapshotSink(DynamicSink[Snapshot]):
    """Saves snapshots to a store from a writer thread (one per worker)."""

    def __init__(self, store: SnapshotStore, signing_key: bytes, on_saved: Callable[[str, int | None], None] | None = None) -> None:
        self.store = store
        self.signing_key = signing_key
        self.on_saved = on_saved
        self.writers: list[SnapshotWriter] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        writer = SnapshotWriter(self.store, self.signing_key, self.on_saved)
        self.writers.append(writer)
        return _Partition(writer)

    def close(self) -> None:
        """Drain every writer (also when Bytewax did not close the partitions)."""
        for writer in self.writers:
            writer.close()
