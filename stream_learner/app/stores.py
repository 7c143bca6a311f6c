"""Opening the snapshot store and the signing key the settings name (the Kafka run and ``snapshots`` share them), and the run's patient reads of it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Callable, TypeVar

import redis

from connectors.redis_store import RedisSnapshotStore
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.settings import Settings

logger = logging.getLogger(__name__)


def configured_signing_key(settings: Settings) -> bytes | None:
    """``snapshot.signing_key`` as bytes, ``None`` when it is not set."""
    key = settings.snapshot.signing_key
    return key.get_secret_value().encode() if key is not None else None


def signing_key(settings: Settings) -> bytes:
    """The snapshot HMAC key, ``snapshot.signing_key`` (one-line error when missing)."""
    key = configured_signing_key(settings)
    if not key:
        raise ConfigError("snapshots need a signing key: set STREAM_LEARNER_SNAPSHOT__SIGNING_KEY (or snapshot.signing_key in the config file)")
    return key


def open_store(settings: Settings) -> RedisSnapshotStore:
    """The Redis snapshot store the settings name (reachable, or a one-line error); a warning line where Redis deletes keys when full."""
    r = settings.redis
    store = RedisSnapshotStore.from_url(
        r.url.get_secret_value(),
        app=settings.app,
        retain=settings.snapshot.retain,
        password=r.password.get_secret_value() if r.password else None,
        ssl_ca_certs=r.ssl_ca_certs,
        ssl_certfile=r.ssl_certfile,
        ssl_keyfile=r.ssl_keyfile,
        socket_timeout=r.socket_timeout_s,
    )
    store.ping()
    policy = store.deletes_when_full()
    if policy is not None:
        logger.warning(
            "Redis deletes keys when its memory is full (maxmemory-policy %s): snapshots, and the learners of model keys evicted from memory, "
            "can be lost; set its maxmemory-policy to noeviction",
            policy,
        )
    return store


UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)
"""What Redis raises when it does not answer: unreachable, timed out, or still loading its data."""

T = TypeVar("T")


class PatientReads:
    """The run's Redis snapshot store, whose reads wait out an outage: no model key goes on without its state because Redis did not answer.

    A read of a model key's snapshots (its latest, its versions, one of
    them) that Redis does not answer (:data:`UNAVAILABLE`) is tried again
    every ``retry_s`` until it is, with one warning line when an outage
    starts and one when Redis answers again; after ``timeout_s`` it raises
    :class:`~stream_learner.errors.SnapshotError` in one line. So a key's
    first event in a run, the next event of a key evicted from memory and
    an operator's rollback wait for Redis, rather than start the key afresh
    or fail the service. Writes go to the store at once and raise what it
    raises: the snapshot writer saves again later, and an eviction the store
    refuses keeps the learner in memory. Once ``stop`` is set (SIGTERM,
    SIGINT) a read that waits gives up at once, in one line, rather than hold
    the stop for up to ``timeout_s``: the events behind it are read again
    on the next start. Thread-safe: the dataflow's workers share it.
    """

    def __init__(self, store: RedisSnapshotStore, timeout_s: float, retry_s: float = 1.0, stop: threading.Event | None = None) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.stop = stop if stop is not None else threading.Event()
        self._lock = threading.Lock()
        self._failing = 0  # reads that failed since Redis last answered

    def latest(self, key: str) -> int | None:
        return self._read(key, lambda: self.store.latest(key))

    def load_latest(self, key: str) -> tuple[int, bytes | None] | None:
        return self._read(key, lambda: self.store.load_latest(key))

    def versions(self, key: str) -> list[int]:
        return self._read(key, lambda: self.store.versions(key))

    def boundary_versions(self, key: str) -> list[int]:
        return self._read(key, lambda: self.store.boundary_versions(key))

    def load(self, key: str, version: int) -> bytes:
        return self._read(key, lambda: self.store.load(key, version))

    def keys(self) -> list[str]:
        return self.store.keys()

    def save(self, key: str, blob: bytes) -> int:
        return self.store.save(key, blob)

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        return self.store.save_many(items)

    def delete(self, key: str, version: int | None = None) -> None:
        self.store.delete(key, version)

    def set_latest(self, key: str, version: int) -> None:
        self.store.set_latest(key, version)

    def close(self) -> None:
        self.store.close()

    def _read(self, key: str, read: Callable[[], T]) -> T:
        give_up_at = time.monotonic() + self.timeout_s
        while True:
            try:
                found = read()
            except UNAVAILABLE as exc:
                self._failed(key, exc)
                left = give_up_at - time.monotonic()
                if left <= 0:
                    raise SnapshotError(
                        f"cannot load the snapshot of model key {key!r}: Redis has not answered for {self.timeout_s:g} s (snapshot.outage_timeout_s): {exc}"
                    ) from None
                if self.stop.wait(min(self.retry_s, left)):
                    raise SnapshotError(
                        f"cannot load the snapshot of model key {key!r}: stopped while Redis does not answer ({exc});"
                        " the events not yet predicted are read again on the next start"
                    ) from None
                continue
            with self._lock:
                failed, self._failing = self._failing, 0
            if failed:
                logger.warning("snapshot store answers again, after %d failed loads", failed)
            return found

    def _failed(self, key: str, exc: Exception) -> None:
        with self._lock:
            self._failing += 1
            first = self._failing == 1
        if first:
            logger.warning(
                "snapshot of model key %r not loaded (%s): retrying for up to %g s (snapshot.outage_timeout_s) rather than go on without it", key, exc, self.timeout_s
            )


class NewKeysAhead:
    """Which model keys have nothing in Redis to resume from, found a source batch at a time.

    A Kafka run looks for each new model key's snapshot on the key's first
    event: a round trip to Redis per key, which a fleet starting with many
    keys pays at every one of them. :meth:`ahead` takes a source batch's
    model keys before their learners are brought back and asks Redis about
    the ones not seen yet in one pipelined round
    (:meth:`~connectors.redis_store.RedisSnapshotStore.never_snapshotted`);
    :meth:`nothing_stored` then answers for each of those once, without a
    read. A key with something stored is read as before, one key at a time
    (only what a key needs is held). Where Redis does not answer, the batch's
    keys are left to those reads, which wait for it. It remembers every key
    it was given, as Bytewax keeps every key's logic. For one process's
    workers (thread-safe): the keys of a cluster's other processes are
    theirs to bring back.
    """

    def __init__(self, store: RedisSnapshotStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._seen: set[str] = set()  # asked about already (or left to their own reads)
        self._nothing: set[str] = set()  # nothing stored, as found ahead: not read again

    def ahead(self, keys: Sequence[str]) -> None:
        """A source batch's model keys (repeats allowed), before any of their learners is brought back."""
        with self._lock:
            new = [key for key in dict.fromkeys(keys) if key not in self._seen]
            self._seen.update(new)
        if not new:
            return
        try:
            nothing = self.store.never_snapshotted(new)
        except redis.RedisError as exc:  # each key is then read on its own, patiently
            logger.debug("model keys not looked up ahead (%s): read one at a time", exc)
            return
        with self._lock:
            self._nothing |= nothing

    def nothing_stored(self, key: str) -> bool:
        """Whether :meth:`ahead` found nothing stored for ``key`` (answered once: the key's learner is then made)."""
        with self._lock:
            if key in self._nothing:
                self._nothing.discard(key)
                return True
            return False
