"""A bound on the model keys' learners held in memory: cold keys wait in the snapshot store.

Each worker keeps at most ``limit`` learners resident (:class:`ResidentSet`:
least recently used first, where a key used no more often than the next to
leave goes before it). When a new or restored key would exceed the bound,
the first in eviction order are evicted (one, or a batch in one write
round): each full state
(:meth:`~stream_learner.engine.KeyedLearner.state_dict`) is written as a
normal, signed snapshot version of its key, and only once that write
succeeded is the learner dropped; its holder keeps the version number. On
the key's next event that exact version is restored
(:meth:`EvictingStore.restore`). The run's snapshot store reaches the
snapshot writer through the same :class:`EvictingStore`, so that a regular
snapshot taken before an eviction and written after it never becomes the
key's ``latest`` over the newer, evicted state.

With Bytewax recovery, an evicted key's recovery state names the version it
was evicted as (:func:`evicted_marker`), and a key restored from it stays
resident (pinned) until the next epoch close: evicted again sooner, its new
versions could push the one its committed recovery state names out of the
store's last ``retain``, and a crash would then resume it from a newer one,
skipping events whose outputs may not have been delivered. The bound can
then be exceeded by the keys restored within one epoch.

>>> import tempfile
>>> from connectors.local_store import LocalSnapshotStore
>>> from stream_learner.engine import KeyedLearner
>>> from stream_learner.events import Event
>>> config = EngineConfig(metrics_every=10)
>>> store = EvictingStore(LocalSnapshotStore(tempfile.mkdtemp()), b"key", config)
>>> learner = KeyedLearner("a", config)
>>> _ = learner.process([Event(str(i), "a", {"x": float(i % 2)}, bool(i % 2), None, 0, i) for i in range(20)], now=0.0)
>>> [version] = store.evict([eviction_snapshot(learner)])
>>> back = store.restore("a", version)
>>> (back.events, back.learned, back.next_offsets) == (learner.events, learner.learned, learner.next_offsets)
True
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Protocol

import orjson

from stream_learner.engine import EngineConfig
from stream_learner.errors import SnapshotError
from stream_learner.slot import Slot, Step, new_step, restore_step
from stream_learner.snapshot import Snapshot, SnapshotStore, load_latest_valid, open_envelope, read_header, seal

logger = logging.getLogger(__name__)

EVICTION_ROUNDS = 100
"""By default a full resident set is emptied in this many eviction rounds: each writes 1/100 of the bound in one store round trip (at least one key)."""

LOST_STATE = ("error", "new_learner")
"""What a restore does where the store lost every version of the evicted key: stop the run, or start the key afresh."""

RETRY_MAX_SECONDS = 10.0
"""While the store refuses evictions, the longest wait before the next try."""

_MARKER = b"SLEVICTED\n"  # neither a state (b"SLSTATE") nor a format-1 pickle (b"\x80")


def evicted_marker(key: str, version: int, newest: bool = False) -> bytes:
    """The recovery state of a key whose learner waits in the snapshot store as ``version`` (``newest``: or as a newer version, its final snapshot).

    >>> parse_marker(evicted_marker("a", 7)), parse_marker(b"SLSTATE...")
    (('a', 7, False), None)
    """
    return _MARKER + orjson.dumps({"key": key, "version": version, "newest": newest})


def parse_marker(state: bytes) -> tuple[str, int, bool] | None:
    """The key, version and ``newest`` an :func:`evicted_marker` names; ``None`` for any other recovery state.

    A marker has no layout version: its fields are :func:`evicted_marker`'s
    arguments, and a marker without ``"newest"`` means that argument's
    default, False. Such markers were written before an evicted key finished
    out of memory, when its final snapshot was itself an eviction: they name
    the exact version the key is in, as a marker with ``newest`` False does.

    >>> parse_marker(b'SLEVICTED\\n{"key": "a", "version": 7}')
    ('a', 7, False)
    """
    if not state.startswith(_MARKER):
        return None
    fields = orjson.loads(state[len(_MARKER) :])
    return str(fields["key"]), int(fields["version"]), bool(fields.get("newest", False))


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
        lost_state: str = "error",
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        if lost_state not in LOST_STATE:
            raise ValueError(f"lost_state must be one of {', '.join(LOST_STATE)}, not {lost_state!r}")
        self.store = store
        self.signing_key = signing_key
        self.config = config
        self.on_evicted = on_evicted
        self.on_restored = on_restored
        self.lost_state = lost_state
        self.on_lost = on_lost
        self._lock = threading.Lock()  # an eviction and the writer thread's save of the same key, one after the other
        self._floors: dict[str, tuple[int, int]] = {}  # key: (events a regular snapshot must have been taken at, to be saved; the eviction's version)

    def evict(self, snapshots: Sequence[Snapshot]) -> list[int]:
        """Seal and save ``snapshots`` (learners' full states) now, in one round where the store has ``save_many``; their versions.

        Raises whatever the store raises: then none of them counts as evicted.
        """
        started = time.perf_counter()
        blobs = [(snapshot.key, self._seal(snapshot)) for snapshot in snapshots]
        save_many = getattr(self.store, "save_many", None)
        with self._lock:
            versions = list(save_many(blobs)) if save_many is not None else [self.store.save(key, blob) for key, blob in blobs]
            for snapshot, version in zip(snapshots, versions):
                self._floors[snapshot.key] = (snapshot.events_seen + 1, version)  # until restored, nothing older or equal is saved
        if self.on_evicted is not None:
            each = (time.perf_counter() - started) / max(1, len(snapshots))
            for snapshot in snapshots:
                self.on_evicted(snapshot.key, each)
        return versions

    def restore(self, key: str, version: int, newest: bool = False) -> Step:
        """The learner ``key`` was evicted as (``version``); with ``newest``, or when that version is gone, its newest valid version.

        Where the store holds no version of the key that can be read (it lost
        its data, or the snapshots were deleted), ``lost_state`` decides:
        ``error`` raises a :class:`~stream_learner.errors.SnapshotError`,
        ``new_learner`` says so in an error line and starts the key afresh.
        """
        started = time.perf_counter()
        payload = self._evicted_payload(key, version, newest)
        if payload is None:
            learner = self._lost(key, version)
        else:
            learner = restore_step(payload, self.config)
        with self._lock:
            self._floors[key] = (learner.events, version)  # its own snapshots from here on are newer
        if payload is not None and self.on_restored is not None:
            self.on_restored(key, time.perf_counter() - started)
        return learner

    def _evicted_payload(self, key: str, version: int, newest: bool) -> bytes | None:
        """The state ``key`` was evicted as, else its newest valid version's; ``None`` where the store holds none that can be read."""
        if not newest:
            try:
                return open_envelope(self.store.load(key, version), signing_key=self.signing_key)[1]
            except SnapshotError as exc:  # pruned by newer versions (a crash replays an eviction), or damaged
                logger.warning("model key %r was evicted as snapshot version %d, which cannot be read (%s): restoring its latest valid version", key, version, exc)
        found = load_latest_valid(self.store, key, self.signing_key)
        return None if found is None else found[1]

    def _lost(self, key: str, version: int) -> Step:
        """A new learner for ``key``, whose evicted state the store lost, where ``lost_state`` allows it."""
        lost = f"model key {key!r} was evicted as snapshot version {version}, and the snapshot store holds no version of it that can be read"
        if self.lost_state == "error":
            raise SnapshotError(f"{lost} (the store lost its data, or its snapshots were deleted?); set snapshot.lost_state to new_learner to start such keys afresh")
        logger.error("%s: starting it afresh (snapshot.lost_state=new_learner); what it had learned is lost", lost)
        if self.on_lost is not None:
            self.on_lost(key)
        return new_step(key, self.config)

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
            if floor is not None and _stale(blob, floor):
                return floor[1]  # taken before the key's eviction: the evicted state is newer
            return self.store.save(key, blob)

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """:meth:`save` of each item, in one round where the inner store has ``save_many``."""
        with self._lock:
            versions: list[int | None] = []
            fresh: list[tuple[str, bytes]] = []
            for key, blob in items:
                floor = self._floors.get(key)
                stale = floor is not None and _stale(blob, floor)
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


def _stale(blob: bytes, floor: tuple[int, int]) -> bool:
    """Whether ``blob`` is a regular snapshot taken before the eviction ``floor`` describes (a boundary version is a version of its own, never stale)."""
    header = read_header(blob)
    return header.kind == "regular" and header.events_seen < floor[0]


class Evictable(Protocol):
    """What a :class:`ResidentSet` evicts: a key's holder; a ``pinned`` one is not evicted for now."""

    pinned: bool

    def leaving(self) -> Snapshot:
        """The learner's full state, to write (:func:`eviction_snapshot`)."""
        ...

    def left(self, version: int) -> None:
        """The state was written as ``version``: drop the learner."""
        ...


class UseCounts:
    """How often each key was used lately: every count is halved each ``period`` uses, and a key halved to 0 is forgotten.

    Recent uses weigh more than old ones, and at most ``2 * period`` keys
    are counted at once, however many keys the stream has.

    >>> counts = UseCounts(period=4)
    >>> [counts.add(key) for key in "aab"], counts["a"], counts["c"]
    ([1, 2, 1], 2, 0)
    >>> counts.add("a"), counts["a"], counts["b"]  # the 4th use: halved, b forgotten
    (3, 1, 0)
    """

    def __init__(self, period: int) -> None:
        self.period = period
        self._counts: dict[str, int] = {}
        self._uses = 0

    def __getitem__(self, key: str) -> int:
        return self._counts.get(key, 0)

    def __len__(self) -> int:
        """The keys counted now."""
        return len(self._counts)

    def add(self, key: str) -> int:
        """Count a use of ``key``; its count before any halving this use brings."""
        count = self._counts[key] = self._counts.get(key, 0) + 1
        self._uses += 1
        if self._uses == self.period:
            self._counts = {k: n >> 1 for k, n in self._counts.items() if n > 1}
            self._uses = 0
        return count


class ResidentSet:
    """One worker's resident learners, at most ``limit`` of them, the ones used least often evicted first (not thread-safe: one per worker).

    Keys are kept in eviction order, least recently used first. A key
    coming into memory (new or restored) that was used no more often
    lately (:class:`UseCounts`, over the last ``10 * limit`` uses) than the
    key next in line to leave goes to the front of the line: it leaves at
    the next eviction, once its batch is done with it. Any other key, and
    every key used again, goes to the back. The source hands over events in
    batches, and a batch visits its keys in the same order every time: where
    a batch has more keys than the bound, plain least-recently-used evicts
    every key before its next batch comes (a scan), while this keeps the
    keys in steady use and lets keys seen once pass through (TinyLFU's
    admission, Einziger et al. 2017, over least-recently-used; see
    ``benchmarks/README.md``, fleets: evicting cold keys).
    ``by_frequency=False``: plain least-recently-used.

    When an admission exceeds the bound, the ``batch`` first in line (by
    default a :data:`EVICTION_ROUNDS`-th of the bound) leave
    together: their states are written in one round (``write``:
    :meth:`EvictingStore.evict`), then each holder drops its learner. A
    pinned holder is passed over (and counts as used now); when every
    other one is pinned, the bound waits for the next admission.
    ``counted(delta)`` hears each change of the number resident. A round
    that raises (the store refuses) keeps its keys resident and
    ``failed(key)`` hears of each; the bound is exceeded until a later
    admission tries again, at most every 1 s to :data:`RETRY_MAX_SECONDS`.

    >>> class Holder:
    ...     def __init__(self, key): self.key, self.pinned = key, False
    ...     def leaving(self): return self.key
    ...     def left(self, version): print("evicted", self.key, "as version", version)
    >>> resident = ResidentSet(3, lambda states: [1] * len(states))
    >>> resident.admit("a", Holder("a")); resident.touch("a")  # used twice
    >>> for key in "bcde":  # each seen once
    ...     resident.admit(key, Holder(key))
    evicted c as version 1
    evicted d as version 1
    >>> list(resident)  # in eviction order: e leaves next, a last
    ['e', 'b', 'a']
    """

    def __init__(
        self,
        limit: int,
        write: Callable[[list[Snapshot]], list[int]],
        batch: int | None = None,
        counted: Callable[[int], None] = lambda delta: None,
        failed: Callable[[str], None] = lambda key: None,
        by_frequency: bool = True,
    ) -> None:
        if limit < 1:
            raise ValueError(f"a resident set holds at least one key, not {limit}")
        self.limit = limit
        self.write = write
        self.batch = max(1, min(limit // EVICTION_ROUNDS if batch is None else batch, limit))
        self.counted = counted
        self.failed = failed
        self.failures = 0  # evictions the store refused
        self.uses = UseCounts(10 * limit) if by_frequency else None
        self._order: OrderedDict[str, Evictable] = OrderedDict()  # eviction order: the first leaves first
        self._retry_at = 0.0
        self._delay = 0.0

    def __iter__(self) -> Iterator[str]:
        """The resident keys, in eviction order."""
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def touch(self, key: str) -> None:
        """``key`` is used again (over the bound, which pinned keys can leave it, others leave)."""
        if self.uses is not None:
            self.uses.add(key)
        self._order.move_to_end(key)
        if len(self._order) > self.limit:
            self._shrink(key)

    def admit(self, key: str, holder: Evictable) -> None:
        """``key``'s learner came into memory (new or restored): at the back of the line, or at its front where it was used no more often than the key there."""
        self._order[key] = holder
        if self.uses is not None:
            before = self.uses[key]  # compared before this use: the next to leave may not have had its use in this batch yet
            self.uses.add(key)
            next_out = next((k for k, h in self._order.items() if k != key and not h.pinned), None)
            if next_out is not None and before <= self.uses[next_out]:
                self._order.move_to_end(key, last=False)
        self.counted(1)
        self._shrink(key)

    def _shrink(self, key: str) -> None:
        """Evict down to the bound (less a batch), never ``key``, which is in use."""
        if len(self._order) <= self.limit or time.monotonic() < self._retry_at:
            return
        need = len(self._order) - self.limit + self.batch - 1
        cold: list[tuple[str, Evictable]] = []
        pinned: list[str] = []
        for cold_key, cold_holder in self._order.items():
            if len(cold) == need:
                break
            if cold_key == key:
                continue
            if cold_holder.pinned:
                pinned.append(cold_key)
            else:
                cold.append((cold_key, cold_holder))
        for pinned_key in pinned:
            self._order.move_to_end(pinned_key)
        if not cold:
            return
        try:
            versions = self.write([holder.leaving() for _, holder in cold])
        except Exception as exc:  # noqa: BLE001 - storage trouble keeps the keys in memory; learning goes on
            self._failed([key for key, _ in cold], exc)
            return
        for (cold_key, cold_holder), version in zip(cold, versions):
            cold_holder.left(version)
            del self._order[cold_key]
        self.counted(-len(cold))
        if self._delay:
            logger.warning("model keys are evicted again (%d evictions failed so far)", self.failures)
            self._delay = 0.0

    def _failed(self, keys: list[str], exc: Exception) -> None:
        self.failures += len(keys)
        for key in keys:
            self.failed(key)
        if not self._delay:
            logger.warning("%d model keys not evicted (%s): kept in memory, over the bound of %d, until the snapshot store saves again", len(keys), exc, self.limit)
        self._delay = min(max(2 * self._delay, 1.0), RETRY_MAX_SECONDS)
        self._retry_at = time.monotonic() + self._delay
