"""The snapshot format and the store interface.

A snapshot is a signed envelope: a JSON header (format version, learner
kind, strategy, events seen, source offsets, created-at, payload checksum,
HMAC-SHA256 signature) and the payload: a learner's state as
:func:`stream_learner.state.encode` writes it. River models inside it are
pickles (and a format-1 payload is one pickle), so a payload is only ever
decoded after :func:`open_envelope` has checked both the checksum and the
signature.

>>> blob = seal(b"state", signing_key=b"k", key="default", learner_kind="river",
...             strategy="none", events_seen=3, source_offsets={0: 3}, created_at=1.0)
>>> header, payload = open_envelope(blob, signing_key=b"k")
>>> header.events_seen, header.source_offsets, payload
(3, {0: 3}, b'state')
>>> open_envelope(blob, signing_key=b"other")
Traceback (most recent call last):
...
stream_learner.errors.SnapshotError: snapshot signature does not verify (wrong signing key, or the snapshot was altered)
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, cast, get_args, runtime_checkable

import orjson

from stream_learner.errors import SnapshotError
from stream_learner.forked_pickle import ForkedPickle, PendingBytes
from stream_learner.state import encode

FORMAT_VERSION = 2
"""The envelope :func:`seal` writes: 2 holds an encoded state; 1 (still read) a pickled learner."""
READABLE_FORMATS = (1, 2)
MAGIC = b"SLSNAP"

VersionKind = Literal["regular", "boundary"]
"""What a stored version is.

``regular``: a resume point (a round, an eviction, the end of the stream, an
operator's ``snapshot``): its source offsets are those of the events its
state has learned, and ``latest`` points at the newest one.
``boundary``: the outgoing champion at a concept boundary, the model that
served the concept that ends (its header names that concept), kept for a
rollback. It is taken in the middle of a batch, so its offsets may already
cover events it has not learned (the event that starts the next concept, the
rest of the batch): never a resume point, never ``latest``, never what
``--resume`` or :func:`load_latest_valid` picks. Stores retain the last
``retain`` versions of each kind.
"""
VERSION_KINDS: tuple[str, ...] = get_args(VersionKind)


@dataclass(frozen=True)
class SnapshotHeader:
    """What an envelope says about its payload."""

    format_version: int
    key: str
    learner_kind: str
    strategy: str
    events_seen: int
    source_offsets: dict[int, int]
    created_at: float
    checksum: str
    signature: str = ""
    kind: VersionKind = "regular"
    concept: int | None = None  # a boundary version's: the concept its model served


@dataclass(frozen=True)
class Snapshot:
    """A learner's encoded state and the bookkeeping that goes in its envelope.

    ``pickled`` is the bytes (:func:`stream_learner.state.encode`), or a
    :class:`~stream_learner.forked_pickle.ForkedPickle` (or a share of one
    made for a whole round, :meth:`round`) still making them; :attr:`payload`
    waits for it, on any thread (the writer saving the snapshot, the learner's
    undo journal starting again from it), and every reader gets the same bytes.
    """

    key: str
    learner_kind: str
    strategy: str
    events_seen: int
    source_offsets: dict[int, int]
    pickled: bytes | PendingBytes
    kind: VersionKind = "regular"
    concept: int | None = None

    @classmethod
    def of_state(
        cls,
        state: Callable[[], dict[str, Any]],
        *,
        key: str,
        learner_kind: str,
        strategy: str,
        events_seen: int,
        source_offsets: dict[int, int],
        background: bool,
    ) -> Snapshot:
        """The snapshot of the state ``state()`` returns, encoded in a forked child when ``background`` (see :func:`encoding`)."""
        return cls(key, learner_kind, strategy, events_seen, dict(source_offsets), encoding(state, forked=background))

    @classmethod
    def round(cls, parts: Sequence[SnapshotPart], background: bool) -> list[Snapshot]:
        """The snapshots of several learners as they are now, in the order of ``parts``.

        With ``background``, the forkable ones are encoded together in one
        forked child (a fleet pays one ``fork()`` per round, not one per
        key), the others here; each snapshot takes its own bytes from that
        child (:class:`RoundShare`), and the child is reaped once every one
        of them took or discarded its share.

        >>> from stream_learner.state import decode
        >>> state = {"w": 1}
        >>> parts = [SnapshotPart(lambda k=k: {"key": k, **state}, k, "river", "none", 1, {0: 1}) for k in "ab"]
        >>> snaps = Snapshot.round(parts, background=True)
        >>> state["w"] = 2  # later changes are not in the round
        >>> [decode(s.payload) for s in snaps]
        [{'key': 'a', 'w': 1}, {'key': 'b', 'w': 1}]
        """
        in_child = [background and part.forkable for part in parts]
        forked = [part for part, child in zip(parts, in_child) if child]
        shares = iter(RoundEncoding(forked).shares()) if len(forked) > 1 else None  # one: a child of its own, as Snapshot.of_state
        return [
            cls(part.key, part.learner_kind, part.strategy, part.events_seen, dict(part.source_offsets), next(shares) if shares and child else encoding(part.state, child))
            for part, child in zip(parts, in_child)
        ]

    @classmethod
    def boundary(cls, part: SnapshotPart, concept: int) -> Snapshot:
        """The boundary version of ``part`` (see :data:`VersionKind`): the model that served ``concept``, as it is now (encoded in a forked child where ``part`` is forkable).

        >>> from stream_learner.state import decode
        >>> part = SnapshotPart(lambda: {"w": 1}, "k", "river", "none", 5, {0: 6}, forkable=False)
        >>> snap = Snapshot.boundary(part, concept=2)
        >>> snap.kind, snap.concept, decode(snap.payload)
        ('boundary', 2, {'w': 1})
        """
        return cls(part.key, part.learner_kind, part.strategy, part.events_seen, dict(part.source_offsets), encoding(part.state, part.forkable), "boundary", concept)

    @property
    def payload(self) -> bytes:
        pickled = self.pickled
        return pickled if isinstance(pickled, bytes) else pickled.result()

    def discard(self) -> None:
        """Nobody will read this snapshot (a newer one replaced it)."""
        if not isinstance(self.pickled, bytes):
            self.pickled.discard()


@dataclass(frozen=True, eq=False)
class SnapshotPart:
    """One learner's share of :meth:`Snapshot.round`: its state (called when it is encoded) and its envelope's bookkeeping, read when the part is made.

    ``forkable``: whether its state may be encoded in a forked child
    (:func:`~stream_learner.learners.base.forkable`: not a model on a GPU).
    """

    state: Callable[[], dict[str, Any]]
    key: str
    learner_kind: str
    strategy: str
    events_seen: int
    source_offsets: dict[int, int]
    forkable: bool = True


class RoundEncoding:
    """The encoded states of a round's learners, made in one forked child (see :meth:`Snapshot.round`); the i-th share is the i-th part's.

    The child writes the states one after the other behind their lengths
    (:func:`concatenated`); each share is a slice of those bytes
    (:func:`sliced`), copied out when taken, so that a round of a large
    fleet is held once, not once more as a decoded copy.
    """

    def __init__(self, parts: Sequence[SnapshotPart]) -> None:
        self._keys = [part.key for part in parts]
        states = [part.state for part in parts]
        self._forked: ForkedPickle | None = ForkedPickle.call(lambda: concatenated([encode(state()) for state in states]))  # until its bytes are read
        self._lock = threading.Lock()  # shares are taken and discarded on the writer thread and on the stream's
        self._open = set(range(len(parts)))  # shares neither taken nor discarded
        self._made: list[memoryview | None] | SnapshotError | None = None  # the child's bytes per share (by position), or why it failed

    def shares(self) -> list[RoundShare]:
        return [RoundShare(self, i, key) for i, key in enumerate(self._keys)]

    def take(self, i: int) -> bytes:
        """The i-th encoded state (the first share taken waits for the child)."""
        with self._lock:
            self._open.discard(i)
            made = self._made
            if made is None:
                # set while nothing was read; dropped once read, so that the slices alone hold the round's bytes (the child's object keeps them)
                forked, self._forked = cast(ForkedPickle, self._forked), None
                try:
                    made = sliced(forked.result(), len(self._keys))
                except SnapshotError as exc:
                    made = exc
                self._made = made
            if isinstance(made, SnapshotError):
                raise made
            view, made[i] = made[i], None
            if view is None:
                raise SnapshotError(f"share {i} of a snapshot round was taken twice")
            taken = bytes(view)
            self._release_when_done()
            return taken

    def give_up(self, i: int) -> None:
        """Nobody will take the i-th share; the child is reaped once nobody will take any."""
        with self._lock:
            self._open.discard(i)
            if isinstance(self._made, list):
                self._made[i] = None
                self._release_when_done()
            elif self._made is None and not self._open:
                cast(ForkedPickle, self._forked).discard()  # nothing read: still set

    def _release_when_done(self) -> None:
        """Once every share is taken or given up, the round's bytes are let go (the slices pin them)."""
        if not self._open and isinstance(self._made, list):
            self._made = SnapshotError("every share of this snapshot round was taken or given up")


_LENGTH = struct.Struct(">Q")


def concatenated(states: Sequence[bytes]) -> bytes:
    """``states`` one after the other, behind their count and lengths (read back with :func:`sliced`).

    >>> [bytes(v) for v in sliced(concatenated([b"ab", b"", b"c"]), 3)]
    [b'ab', b'', b'c']
    """
    return b"".join([_LENGTH.pack(len(states)), *(_LENGTH.pack(len(state)) for state in states), *states])


def sliced(blob: bytes, count: int) -> list[memoryview | None]:
    """The ``count`` states of a :func:`concatenated` blob, as views into it; a blob of another shape is a :class:`SnapshotError`.

    >>> sliced(concatenated([b"ab"])[:-1], 1)
    Traceback (most recent call last):
    ...
    stream_learner.errors.SnapshotError: a snapshot round's encoded states are cut short or malformed (1 states, 17 bytes)
    """
    view = memoryview(blob)
    header = _LENGTH.size * (count + 1)
    fits = len(view) >= header and _LENGTH.unpack_from(view)[0] == count
    lengths = [_LENGTH.unpack_from(view, _LENGTH.size * (i + 1))[0] for i in range(count)] if fits else []
    if not fits or header + sum(lengths) != len(view):
        raise SnapshotError(f"a snapshot round's encoded states are cut short or malformed ({count} states, {len(view)} bytes)")
    views: list[memoryview | None] = []
    start = header
    for length in lengths:
        views.append(view[start : start + length])
        start += length
    return views


class RoundShare(PendingBytes):
    """One snapshot's bytes of a :class:`RoundEncoding`, collected once, from any thread, as a :class:`~stream_learner.forked_pickle.ForkedPickle`'s (see :class:`~stream_learner.forked_pickle.PendingBytes`)."""

    def __init__(self, encoding: RoundEncoding, index: int, key: str) -> None:
        super().__init__(discarded=f"the snapshot of {key!r} was discarded")
        self._encoding = encoding
        self._index = index

    def _collect(self) -> bytes:
        return self._encoding.take(self._index)

    def _give_up(self) -> None:
        self._encoding.give_up(self._index)


def encoding(state: Callable[[], dict[str, Any]], forked: bool) -> bytes | ForkedPickle:
    """The encoded state ``state()`` returns (:func:`stream_learner.state.encode`): made in a forked child when ``forked``, else here.

    In the child, the stream pays for ``fork()`` only and its objects are
    not touched (see :mod:`stream_learner.forked_pickle`); the caller
    checks that it may fork (:func:`~stream_learner.learners.base.forkable`).
    """

    def produce() -> bytes:
        return encode(state())

    return ForkedPickle.call(produce) if forked else produce()


def seal(
    payload: bytes,
    *,
    signing_key: bytes,
    key: str,
    learner_kind: str,
    strategy: str,
    events_seen: int,
    source_offsets: dict[int, int],
    created_at: float | None = None,
    kind: VersionKind = "regular",
    concept: int | None = None,
) -> bytes:
    """Wrap a payload in a signed envelope (a ``boundary`` one names the ``concept`` its model served)."""
    header = SnapshotHeader(
        format_version=FORMAT_VERSION,
        key=key,
        learner_kind=learner_kind,
        strategy=strategy,
        events_seen=events_seen,
        source_offsets=dict(source_offsets),
        created_at=time.time() if created_at is None else created_at,
        checksum=hashlib.sha256(payload).hexdigest(),
        kind=kind,
        concept=concept,
    )
    unsigned = _header_bytes(header, signature="")
    signature = hmac.new(signing_key, unsigned + b"\n" + payload, hashlib.sha256).hexdigest()
    signed = _header_bytes(header, signature=signature)
    return MAGIC + b"\n" + signed + b"\n" + payload


def read_header(blob: bytes) -> SnapshotHeader:
    """Parse the header without verifying anything (for listings); the payload is not copied."""
    try:
        start = blob.find(b"\n") + 1
        end = blob.find(b"\n", start)
        if not start or end < 0 or blob[: start - 1] != MAGIC:
            raise ValueError("not a stream-learner snapshot")
        raw = orjson.loads(blob[start:end])
        raw["source_offsets"] = {int(p): int(o) for p, o in raw["source_offsets"].items()}
        header = SnapshotHeader(**raw)
        if header.kind not in VERSION_KINDS:
            raise ValueError(f"unknown version kind {header.kind!r}")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SnapshotError(f"snapshot is corrupt: {exc}") from None
    if header.format_version not in READABLE_FORMATS:
        raise SnapshotError(f"snapshot format {header.format_version} is not supported (this release reads formats {READABLE_FORMATS[0]} to {READABLE_FORMATS[-1]})")
    return header


def open_envelope(blob: bytes, *, signing_key: bytes) -> tuple[SnapshotHeader, bytes]:
    """Verify checksum and signature; return the header and the trusted payload."""
    header = read_header(blob)
    payload = blob.split(b"\n", 2)[2]
    if hashlib.sha256(payload).hexdigest() != header.checksum:
        raise SnapshotError("snapshot checksum does not match its payload (the snapshot is corrupt or was altered)")
    unsigned = _header_bytes(header, signature="")
    expected = hmac.new(signing_key, unsigned + b"\n" + payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, header.signature):
        raise SnapshotError("snapshot signature does not verify (wrong signing key, or the snapshot was altered)")
    return header, payload


def _header_bytes(header: SnapshotHeader, signature: str) -> bytes:
    """The header as signed (with ``signature`` in its place): JSON, keys sorted.

    A regular version's header has no ``kind`` and ``concept`` fields, so the
    envelopes of releases before version kinds verify as they were signed.
    A shallow copy of the fields, not :func:`dataclasses.asdict`, whose deep
    copy was half the cost of sealing a small state; the bytes are the same.
    """
    fields = {**vars(header), "signature": signature}
    if header.kind == "regular":
        del fields["kind"], fields["concept"]
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def envelope_kind(blob: bytes) -> VersionKind:
    """The kind of version an envelope says it is (read, not verified: a store files it by it); bytes that are no envelope are ``regular``.

    >>> envelope_kind(seal(b"s", signing_key=b"k", key="k", learner_kind="river", strategy="none", events_seen=1, source_offsets={}, kind="boundary", concept=0))
    'boundary'
    >>> envelope_kind(b"not an envelope")
    'regular'
    """
    try:
        return read_header(blob).kind
    except SnapshotError:
        return "regular"


@runtime_checkable
class SnapshotStore(Protocol):
    """Where snapshots live: a local directory, Redis, ...

    Versions are increasing integers per model key, of two kinds (see
    :data:`VersionKind`; a store files each envelope by the kind its header
    says, :func:`envelope_kind`); ``latest`` only ever points at a completely
    written regular version, and only the last ``retain`` versions of each
    kind are kept.
    """

    def save(self, key: str, blob: bytes) -> int:
        """Store a new version (a regular one: and point ``latest`` at it); return its number."""
        ...

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """:meth:`save` each ``(key, envelope)`` of a round, in batches, in order; their versions, in order."""
        ...

    def load_latest(self, key: str) -> tuple[int, bytes | None] | None:
        """``(version, envelope)`` of ``latest`` in one step (the envelope ``None`` when that version is missing); ``None`` without a pointer."""
        ...

    def latest(self, key: str) -> int | None:
        """The version ``latest`` points at, if any (:class:`SnapshotError` if it is not a number)."""
        ...

    def versions(self, key: str) -> list[int]:
        """Stored versions of a key (of both kinds), oldest first."""
        ...

    def boundary_versions(self, key: str) -> list[int]:
        """The stored versions of a key that are ``boundary`` versions, oldest first (the others are regular)."""
        ...

    def load(self, key: str, version: int) -> bytes:
        """The envelope of one version (:class:`SnapshotError` if missing)."""
        ...

    def keys(self) -> list[str]:
        """Model keys that have snapshots."""
        ...

    def delete(self, key: str, version: int | None = None) -> None:
        """Delete one version, or every version of a key."""
        ...

    def set_latest(self, key: str, version: int) -> None:
        """Point ``latest`` at an existing regular version (restore an older one); a boundary version is refused (:func:`not_a_resume_point`)."""
        ...


def not_a_resume_point(key: str, version: int) -> SnapshotError:
    """Why ``latest`` cannot point at boundary version ``version`` of ``key``."""
    return SnapshotError(
        f"version {version} of key {key!r} is a boundary version (the model that served a concept), not a point to resume from: "
        f"roll a running engine back to it with `stream-learner control rollback {key} {version}`"
    )


def boundary_version(store: SnapshotStore, key: str, concept: int) -> int | None:
    """The newest stored boundary version of ``key`` whose model served ``concept`` (read from the headers, not verified); ``None`` where none is kept.

    A concept that ended more than once (a recurring task) names its last end.
    """
    for version in reversed(store.boundary_versions(key)):
        try:
            if read_header(store.load(key, version)).concept == concept:
                return version
        except SnapshotError:
            continue  # retired since the listing, or damaged: an older one may still serve
    return None


def latest_pointer(store: SnapshotStore, key: str, versions: list[int]) -> tuple[int | None, str | None]:
    """The version ``latest`` names, when it names one of ``versions``; else ``None`` and what is wrong.

    A missing pointer is only wrong when versions exist.
    """
    try:
        latest = store.latest(key)
    except SnapshotError as exc:
        return None, str(exc)
    if latest is None:
        return None, f"the latest pointer of {key!r} is missing" if versions else None
    if latest not in versions:
        return None, f"the latest pointer of {key!r} names version {latest}, which is not stored"
    return latest, None


def load_latest_valid(store: SnapshotStore, key: str, signing_key: bytes) -> tuple[SnapshotHeader, bytes, list[str]] | None:
    """The newest version that verifies, newest first from ``latest``.

    Returns ``(header, payload, refusals)``, where ``refusals`` says why each
    newer version was refused (and what was wrong with the pointer), or
    ``None`` when the key has no snapshot. When the ``latest`` pointer is
    missing, unreadable or names no stored version, every stored regular
    version is a candidate (a boundary version never is, see
    :data:`VersionKind`); when no candidate verifies, :class:`SnapshotError`.
    A ``latest`` that verifies costs one read (:meth:`SnapshotStore.load_latest`),
    a key without a pointer or a stored version two (a fleet's new keys).
    """
    try:
        found = store.load_latest(key)
    except SnapshotError:
        found = None  # a damaged pointer: the full search below says what is wrong
    else:
        if found is None and not store.versions(key):
            return None  # no pointer and no version: never snapshotted
    if found is not None and found[1] is not None:
        try:
            header, payload = open_envelope(found[1], signing_key=signing_key)
        except SnapshotError:
            pass  # refused: the full search below says why and falls back
        else:
            return header, payload, []
    boundaries = set(store.boundary_versions(key))
    versions = [v for v in store.versions(key) if v not in boundaries]
    latest, problem = latest_pointer(store, key, versions)
    if not versions:
        if problem is None:
            return None
        raise SnapshotError(f"{problem}, and {key!r} has no stored version: delete the key (stream-learner snapshots delete) to start it from zero")
    refusals = [] if problem is None else [f"{problem}: using the newest version that verifies"]
    for version in sorted((v for v in versions if latest is None or v <= latest), reverse=True):
        try:
            header, payload = open_envelope(store.load(key, version), signing_key=signing_key)
        except SnapshotError as exc:
            refusals.append(f"version {version} of {key!r} refused: {exc}")
            continue
        return header, payload, refusals
    raise SnapshotError("; ".join(refusals) + f"; no valid snapshot left for {key!r}")
