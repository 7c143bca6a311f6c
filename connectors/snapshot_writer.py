"""Snapshots written off the hot path.

:class:`BackgroundSnapshotSink` hands each :class:`~stream_learner.snapshot.Snapshot`
to a writer thread that seals and saves it, so the dataflow worker only
pays for a dictionary insert. The writer takes every snapshot queued at
once as one round, and saves it in batches of up to :data:`BATCH_BYTES` of
envelopes (:meth:`~stream_learner.snapshot.SnapshotStore.save_many`: one
transaction of the local store, pipelines to Redis), which bounds the
memory a round of a large fleet takes. While a round is in flight, a newer
regular snapshot of the same key replaces the queued one (the older one
would be superseded at once anyway). Boundary snapshots
(:data:`~stream_learner.snapshot.VersionKind`) are each a version of
their own: every one is kept (at most :data:`MAX_QUEUED_BOUNDARIES`
waiting while the store refuses them, the oldest dropped beyond), and a
round saves them before the regular ones, in the order they were taken, in
the same :meth:`~stream_learner.snapshot.SnapshotStore.save_many`: a key's
boundary versions are numbered below the regular version taken after
them. Closing the sink (end of the stream, graceful shutdown) drains the
queue, so the final snapshots are written before the run ends.

A round the store refuses (Redis unreachable, ...) is kept and tried
again, after 1 s, then up to every :data:`RETRY_MAX_SECONDS`, unless a newer
regular one of its key replaces it: one warning line when an outage starts
and one when the store saves again; learning never waits. Closing keeps trying until
its timeout, then says which keys' final snapshots were not saved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from stream_learner.snapshot import Snapshot, SnapshotStore, seal

logger = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 10.0
BATCH_BYTES = 32 << 20
"""Envelopes saved in one :meth:`~stream_learner.snapshot.SnapshotStore.save_many` call (at least one)."""
MAX_QUEUED_BOUNDARIES = 1000
"""Boundary snapshots waiting for a refusing store, at most (a long outage on a drifting fleet must not grow without bound)."""


class SnapshotWriter:
    """One writer thread per store; thread-safe ``submit``; ``close`` drains."""

    def __init__(self, store: SnapshotStore, signing_key: bytes, on_saved: Callable[[str, int | None], None] | None = None) -> None:
        self.store = store
        self.signing_key = signing_key
        self.on_saved = on_saved
        # the latest timings (bounded: a long run snapshots many times)
        self.submit_seconds: deque[float] = deque(maxlen=10_000)  # time the submitting thread spent, per snapshot
        self.write_seconds: deque[float] = deque(maxlen=10_000)  # time each seal + save took on the writer thread (a round's time shared by its snapshots)
        self.rounds: deque[tuple[int, float]] = deque(maxlen=10_000)  # per round: snapshots, seconds (seal + save)
        self._queued: dict[str, Snapshot] = {}  # the newest regular snapshot of each key
        self._boundaries: deque[Snapshot] = deque()  # every boundary snapshot, oldest first
        self._superseded: list[Snapshot] = []  # replaced before they were written: discarded by the writer thread
        self._cond = threading.Condition()
        self._closing = False
        self._give_up_at = 0.0
        self._retry_at = 0.0  # while the store refuses: when to try again
        self._delay = 0.0
        self._failing = 0  # failed attempts since the store last saved
        self._thread = threading.Thread(target=self._loop, name="snapshot-writer", daemon=True)
        self._thread.start()

    def submit(self, snapshots: list[Snapshot]) -> None:
        started = time.perf_counter()
        with self._cond:
            for snap in snapshots:
                if snap.kind == "boundary":
                    self._boundaries.append(snap)
                    continue
                older = self._queued.get(snap.key)
                if older is not None:
                    self._superseded.append(older)
                self._queued[snap.key] = snap
            self._drop_oldest_boundaries()
            self._cond.notify()
        self.submit_seconds.append(time.perf_counter() - started)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (retrying a refusing store until ``timeout``), then stop."""
        with self._cond:
            self._closing = True
            self._give_up_at = time.monotonic() + timeout
            self._cond.notify()
        self._thread.join(timeout + 10.0)  # one store call may still be running at the deadline

    def _loop(self) -> None:
        while True:
            with self._cond:
                snaps = self._next()
                if snaps is None:
                    return
                superseded, self._superseded = self._superseded, []
            for snap in superseded:
                snap.discard()
            retry = self._write(snaps)
            with self._cond:
                self._retry(retry)

    def _drop_oldest_boundaries(self) -> None:
        """Keep at most :data:`MAX_QUEUED_BOUNDARIES` boundary snapshots waiting; the oldest beyond are given up, said out loud."""
        while len(self._boundaries) > MAX_QUEUED_BOUNDARIES:
            dropped = self._boundaries.popleft()
            logger.error("more than %d boundary snapshots wait for the store: the one of key %r (concept %s) is dropped", MAX_QUEUED_BOUNDARIES, dropped.key, dropped.concept)
            self._superseded.append(dropped)
            self._report([dropped.key], [None])

    def _next(self) -> list[Snapshot] | None:
        """The snapshots to write now, boundary ones first (waiting for them, and for the retry time); ``None``: stop."""
        while True:
            now = time.monotonic()
            waiting = bool(self._queued or self._boundaries)
            if waiting and now >= self._retry_at:
                snaps = [*self._boundaries, *self._queued.values()]
                self._boundaries.clear()
                self._queued.clear()
                return snaps
            if self._closing and (not waiting or now >= self._give_up_at):
                if waiting:
                    keys = sorted({snap.key for snap in [*self._boundaries, *self._queued.values()]})
                    logger.error("snapshot store still failing at shutdown: the final snapshots of %s were not saved", keys)
                    for snap in [*self._boundaries, *self._queued.values()]:
                        snap.discard()
                return None
            wait = None if not waiting else self._retry_at - now
            if self._closing:
                wait = min(wait if wait is not None else float("inf"), self._give_up_at - now)
            self._cond.wait(wait)

    def _retry(self, failed: list[Snapshot]) -> None:
        """Queue the failed snapshots again (a newer one of the same key wins) and back off; or end an outage."""
        if not failed:
            if self._failing:
                logger.warning("snapshot store saves again, after %d failed attempts", self._failing)
            self._failing, self._delay = 0, 0.0
            return
        self._failing += len(failed)
        self._delay = min(max(2 * self._delay, 1.0), RETRY_MAX_SECONDS)
        self._retry_at = time.monotonic() + self._delay
        boundaries = [snap for snap in failed if snap.kind == "boundary"]
        self._boundaries.extendleft(reversed(boundaries))  # older than any queued since: saved first, in order
        self._drop_oldest_boundaries()
        for snap in failed:
            if snap.kind == "boundary":
                continue
            if snap.key in self._queued:
                snap.discard()
            else:
                self._queued[snap.key] = snap

    def _write(self, snaps: list[Snapshot]) -> list[Snapshot]:
        """Seal a round's snapshots and save them in batches; the snapshots to try again when the store refused them.

        After a refused batch the rest of the round waits for the retry
        too: a store that is down would refuse each batch only after its
        timeout.
        """
        started = time.perf_counter()
        retry: list[Snapshot] = []
        batch: list[tuple[Snapshot, bytes]] = []
        size = 0
        for i, snap in enumerate(snaps):
            try:
                payload = snap.payload
                blob = seal(
                    payload,
                    signing_key=self.signing_key,
                    key=snap.key,
                    learner_kind=snap.learner_kind,
                    strategy=snap.strategy,
                    events_seen=snap.events_seen,
                    source_offsets=snap.source_offsets,
                    kind=snap.kind,
                    concept=snap.concept,
                )
            except Exception as exc:  # noqa: BLE001 - a state that cannot be encoded must not stop learning
                logger.error("snapshot of key %r failed: %s", snap.key, exc)
                self._report([snap.key], [None])
                continue
            batch.append((replace(snap, pickled=payload), blob))
            size += len(blob)
            if size >= BATCH_BYTES:
                if not self._save(batch):
                    retry, batch = [snap for snap, _ in batch] + snaps[i + 1 :], []
                    break
                batch, size = [], 0
        if batch and not self._save(batch):
            retry = [snap for snap, _ in batch]
        seconds = time.perf_counter() - started
        self.write_seconds.extend([seconds / len(snaps)] * len(snaps))
        self.rounds.append((len(snaps), seconds))
        return retry

    def _save(self, batch: list[tuple[Snapshot, bytes]]) -> bool:
        """Save one batch; whether the store took it."""
        try:
            versions: list[int | None] = list(self.store.save_many([(snap.key, blob) for snap, blob in batch]))
        except Exception as exc:  # noqa: BLE001 - storage trouble must not stop learning
            if not self._failing:
                logger.warning("snapshots of %d key(s) not saved (%s): retrying until the store answers", len(batch), exc)
            versions = [None] * len(batch)
        self._report([snap.key for snap, _ in batch], versions)
        return versions[0] is not None

    def _report(self, keys: list[str], versions: list[int | None]) -> None:
        """Tell ``on_saved`` each key's version (``None``: not saved)."""
        if self.on_saved is not None:
            for key, version in zip(keys, versions):
                self.on_saved(key, version)


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
