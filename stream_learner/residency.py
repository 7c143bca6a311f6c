"""A bound on the model keys' learners held in memory: cold keys wait in the snapshot store.

Each worker keeps at most ``limit`` learners resident (:class:`ResidentSet`,
least recently used first). When a new or restored key would exceed the
bound, the least recently used one is evicted: its full state
(:meth:`~stream_learner.engine.KeyedLearner.state_dict`) is written as a
normal, signed snapshot version of the key, and only once that write
succeeded is the learner dropped; its holder keeps the version number. On
the key's next event that exact version is restored
(:meth:`EvictingStore.restore`). The run's snapshot store reaches the
snapshot writer through the same :class:`EvictingStore`, so that a regular
snapshot taken before an eviction and written after it never becomes the
key's ``latest`` over the newer, evicted state.

>>> import tempfile
>>> from connectors.local_store import LocalSnapshotStore
>>> from stream_learner.engine import KeyedLearner
>>> from stream_learner.events import Event
>>> config = EngineConfig(metrics_every=10)
>>> store = EvictingStore(LocalSnapshotStore(tempfile.mkdtemp()), b"key", config)
>>> learner = KeyedLearner("a", config)
>>> _ = learner.process([Event(str(i), "a", {"x": float(i % 2)}, bool(i % 2), None, 0, i) for i in range(20)], now=0.0)
>>> version = store.evict(eviction_snapshot(learner))
>>> back = store.restore("a", version)
>>> (back.events, back.learned, back.next_offsets) == (learner.events, learner.learned, learner.next_offsets)
True
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Callable, Protocol

import orjson

from stream_learner.engine import EngineConfig
from stream_learner.errors import SnapshotError
from stream_learner.slot import Slot, Step, restore_step
from stream_learner.snapshot import Snapshot, SnapshotStore, load_latest_valid, open_envelope, read_header, seal

logger = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 10.0
"""While the store refuses evictions, the longest wait before the next try."""

_MARKER = b"SLEVICTED\n"  # neither a state (b"SLSTATE") nor a format-1 pickle (b"\x80")


def evicted_marker(key: str, version: int) -> bytes:
    """The recovery state of a key whose learner waits in the snapshot store as ``version``.

    >>> parse_marker(evicted_marker("a", 7)), parse_marker(b"SLSTATE...")
    (('a', 7), None)
    """
    return _MARKER + orjson.dumps({"key": key, "version": version})


def parse_marker(state: bytes) -> tuple[str, int] | None:
    """The key and version an :func:`evicted_marker` names; ``None`` for any other recovery state."""
    if not state.startswith(_MARKER):
        return None
    fields = orjson.loads(state[len(_MARKER) :])
    return str(fields["key"]), int(fields["version"])


def eviction_snapshot(learner: Step) -> Snapshot:
    """``learner``'s full state as a snapshot, encoded here and now, its snapshot cadence untouched (an eviction changes nothing the learner does next)."""
    champion = learner.champion_step if isinstance(learner, Slot) else learner  # the envelope names the published model, as Slot.snapshot's does
    return Snapshot.of_state(
        learner.state_dict,
        key=learner.key,
        learner_kind=champion.learner.family,
        strategy=champion.config.learner.strategy or "none",
        events_seen=learner.events,
        source_offsets=learner.next_offsets,
        background=False,
    )


class EvictingStore:
    """The run's snapshot store (any :class:`~stream_learner.snapshot.SnapshotStore`) with evictions and restores.

    Shared by the workers (thread-safe). Every other method is the inner
    store's, except that :meth:`save` skips a regular snapshot that is not
    newer than the key's last eviction (taken before it, written after it)
    and returns the eviction's version instead.

    ``on_evicted(key, seconds)`` and ``on_restored(key, seconds)`` see each
    eviction and restore and how long it took.
    """

    def __init__(
        self,
        store: SnapshotStore,
        signing_key: bytes,
        config: EngineConfig,
        on_evicted: Callable[[str, float], None] | None = None,
        on_restored: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store = store
        self.signing_key = signing_key
        self.config = config
        self.on_evicted = on_evicted
        self.on_restored = on_restored
        self._lock = threading.Lock()  # an eviction and the writer thread's save of the same key, one after the other
        self._floors: dict[str, tuple[int, int]] = {}  # key: (events a regular snapshot must have been taken at, to be saved; the eviction's version)

    def evict(self, snapshot: Snapshot) -> int:
        """Seal and save ``snapshot`` (a learner's full state) now; its version. Raises whatever the store raises."""
        started = time.perf_counter()
        blob = self._seal(snapshot)
        with self._lock:
            version = self.store.save(snapshot.key, blob)
            self._floors[snapshot.key] = (snapshot.events_seen + 1, version)  # until restored, nothing older or equal is saved
        if self.on_evicted is not None:
            self.on_evicted(snapshot.key, time.perf_counter() - started)
        return version

    def restore(self, key: str, version: int) -> Step:
        """The learner ``key`` was evicted as (``version``); the newest valid version if that one is gone."""
        started = time.perf_counter()
        try:
            _, payload = open_envelope(self.store.load(key, version), signing_key=self.signing_key)
        except SnapshotError as exc:  # pruned by newer versions (a crash replays an eviction), or damaged
            found = load_latest_valid(self.store, key, self.signing_key)
            if found is None:
                raise SnapshotError(f"model key {key!r} was evicted as snapshot version {version}, which cannot be read ({exc}), and it has no other") from None
            logger.warning("model key %r was evicted as snapshot version %d, which cannot be read (%s): restored from its latest valid version", key, version, exc)
            _, payload, _ = found
        learner = restore_step(payload, self.config)
        with self._lock:
            self._floors[key] = (learner.events, version)  # its own snapshots from here on are newer
        if self.on_restored is not None:
            self.on_restored(key, time.perf_counter() - started)
        return learner

    def _seal(self, snapshot: Snapshot) -> bytes:
        return seal(
            snapshot.payload,
            signing_key=self.signing_key,
            key=snapshot.key,
            learner_kind=snapshot.learner_kind,
            strategy=snapshot.strategy,
            events_seen=snapshot.events_seen,
            source_offsets=snapshot.source_offsets,
        )

    # --- the SnapshotStore protocol, for the snapshot writer and the run ---------------------------

    def save(self, key: str, blob: bytes) -> int:
        with self._lock:
            floor = self._floors.get(key)
            if floor is not None and read_header(blob).events_seen < floor[0]:
                return floor[1]  # taken before the key's eviction: the evicted state is newer
            return self.store.save(key, blob)

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """:meth:`save` of each item, in one round where the inner store has ``save_many``."""
        with self._lock:
            versions: list[int | None] = []
            fresh: list[tuple[str, bytes]] = []
            for key, blob in items:
                floor = self._floors.get(key)
                stale = floor is not None and read_header(blob).events_seen < floor[0]
                versions.append(floor[1] if stale and floor is not None else None)
                if not stale:
                    fresh.append((key, blob))
            save_many = getattr(self.store, "save_many", None)
            saved = iter(save_many(fresh) if save_many is not None else [self.store.save(key, blob) for key, blob in fresh])
            return [version if version is not None else next(saved) for version in versions]

    def latest(self, key: str) -> int | None:
        return self.store.latest(key)

    def versions(self, key: str) -> list[int]:
        return self.store.versions(key)

    def load(self, key: str, version: int) -> bytes:
        return self.store.load(key, version)

    def keys(self) -> list[str]:
        return self.store.keys()

    def delete(self, key: str, version: int | None = None) -> None:
        self.store.delete(key, version)

    def set_latest(self, key: str, version: int) -> None:
        self.store.set_latest(key, version)

    def __getattr__(self, name: str) -> Any:  # what the inner store offers beyond the protocol (close, load_latest, ...)
        if name == "store":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.store, name)


class Evictable(Protocol):
    """What a :class:`ResidentSet` evicts: a key's holder, which writes its learner out and drops it (raising if the write failed)."""

    def evict(self) -> None: ...


class ResidentSet:
    """One worker's resident learners, least recently used first, at most ``limit`` of them (not thread-safe: one per worker).

    ``counted(delta)`` hears each change of the number resident. An
    eviction that raises (the store refuses) keeps its key resident, the
    bound is exceeded until a later admission tries again, at most every
    1 s to :data:`RETRY_MAX_SECONDS`, and ``failed(key)`` hears of it.

    >>> class Holder:
    ...     def __init__(self, key): self.key = key
    ...     def evict(self): print("evict", self.key)
    >>> resident = ResidentSet(2)
    >>> for key in "abc":
    ...     resident.admit(key, Holder(key))
    evict a
    >>> resident.touch("b"); resident.admit("d", Holder("d"))
    evict c
    >>> list(resident)
    ['b', 'd']
    """

    def __init__(self, limit: int, counted: Callable[[int], None] = lambda delta: None, failed: Callable[[str], None] = lambda key: None) -> None:
        if limit < 1:
            raise ValueError(f"a resident set holds at least one key, not {limit}")
        self.limit = limit
        self.counted = counted
        self.failed = failed
        self.failures = 0  # evictions the store refused
        self._lru: OrderedDict[str, Evictable] = OrderedDict()
        self._retry_at = 0.0
        self._delay = 0.0

    def __iter__(self) -> Any:
        return iter(self._lru)

    def __len__(self) -> int:
        return len(self._lru)

    def touch(self, key: str) -> None:
        """``key`` is used now."""
        self._lru.move_to_end(key)

    def admit(self, key: str, holder: Evictable) -> None:
        """``key``'s learner came into memory (new or restored): the least recently used others are evicted down to the bound."""
        self._lru[key] = holder
        self._lru.move_to_end(key)
        self.counted(1)
        while len(self._lru) > self.limit and time.monotonic() >= self._retry_at:
            cold, cold_holder = next(iter(self._lru.items()))
            try:
                cold_holder.evict()
            except Exception as exc:  # noqa: BLE001 - storage trouble keeps the key in memory; learning goes on
                self._failed(cold, exc)
                return
            del self._lru[cold]
            self.counted(-1)
            if self._delay:
                logger.warning("model keys are evicted again, after %d failed evictions", self.failures)
                self._delay = 0.0

    def _failed(self, key: str, exc: Exception) -> None:
        self.failures += 1
        self.failed(key)
        if not self._delay:
            logger.warning("model key %r not evicted (%s): kept in memory, over the bound of %d, until the snapshot store saves again", key, exc, self.limit)
        self._delay = min(max(2 * self._delay, 1.0), RETRY_MAX_SECONDS)
        self._retry_at = time.monotonic() + self._delay
