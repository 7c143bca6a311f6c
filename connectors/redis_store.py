"""A snapshot store in Redis.

Keys, per application and model key::

    PREFIX:{APP/KEY}:v:N        the envelope of version N
    PREFIX:{APP/KEY}:versions   sorted set of the stored regular versions
    PREFIX:{APP/KEY}:boundaries sorted set of the stored boundary versions
    PREFIX:{APP/KEY}:seq        the last version number handed out
    PREFIX:{APP/KEY}:latest     the version ``latest`` points at
    PREFIX:APP:keys             set of the model keys with snapshots

Every change is one Lua script, so Redis runs it atomically: ``latest``
never points at a missing or half-written version, and retention (the last
``retain`` versions of each kind, :data:`~stream_learner.snapshot.VersionKind`,
read from the envelope's header) is applied in the same step. ``latest``
names regular versions only; a store written before version kinds has no
``boundaries`` set, and all its versions are regular. A round of snapshots
(:meth:`RedisSnapshotStore.save_many`) sends one script call per key in a
pipeline (one round trip per :data:`PIPELINE_BYTES` of envelopes), not in
MULTI/EXEC: each key's save is atomic already, and a transaction over the
whole round would block every other client of the server while it ran,
for no gain (a key's snapshot carries its own source offsets, so keys
restore independently). The store needs one Redis
server (with replicas or Sentinel as you like), not Redis Cluster: a save
touches a model key's keys and the application's key set, which a cluster
would keep in different slots.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, cast

import redis

from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.snapshot import envelope_kind, not_a_resume_point

PIPELINE_BYTES = 8 << 20
"""Envelopes sent in one pipeline (at least one each): bounds the memory of a round on both sides."""

_SAVE = """
local v = redis.call('INCR', KEYS[1])
redis.call('SET', ARGV[2] .. v, ARGV[1])
local kept = KEYS[2]
if ARGV[5] == 'boundary' then
  kept = KEYS[5]
else
  redis.call('SET', KEYS[3], v)
end
redis.call('ZADD', kept, v, v)
redis.call('SADD', KEYS[4], ARGV[4])
local retain = tonumber(ARGV[3])
local n = redis.call('ZCARD', kept)
if n > retain then
  for _, old in ipairs(redis.call('ZRANGE', kept, 0, n - retain - 1)) do
    redis.call('DEL', ARGV[2] .. old)
    redis.call('ZREM', kept, old)
  end
end
return v
"""

_DELETE = """
local targets
if ARGV[2] == '' then
  targets = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, v in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do table.insert(targets, v) end
else
  if not (redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZSCORE', KEYS[4], ARGV[2])) then return -1 end
  targets = {ARGV[2]}
end
for _, v in ipairs(targets) do
  redis.call('DEL', ARGV[1] .. v)
  redis.call('ZREM', KEYS[1], v)
  redis.call('ZREM', KEYS[4], v)
end
local left = redis.call('ZRANGE', KEYS[1], -1, -1)
if #left == 0 then
  redis.call('DEL', KEYS[2])
  if redis.call('ZCARD', KEYS[4]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
elseif not redis.call('ZSCORE', KEYS[1], redis.call('GET', KEYS[2]) or '') then
  redis.call('SET', KEYS[2], left[1])
end
return #targets
"""

_LOAD_LATEST = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('GET', ARGV[1] .. v)}
"""

_SET_LATEST = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return -1 end
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""

_VERSIONS = """
return {redis.call('ZRANGE', KEYS[1], 0, -1), redis.call('ZRANGE', KEYS[2], 0, -1)}
"""

_HAS_RESUME_STATE = """
return redis.call('EXISTS', KEYS[1]) + redis.call('ZCARD', KEYS[2])
"""

LOOKUP_CHUNK = 10_000
"""Model keys asked about in one pipeline by :meth:`RedisSnapshotStore.never_snapshotted`."""


class RedisSnapshotStore:
    """Implements :class:`~stream_learner.snapshot.SnapshotStore` on Redis."""

    def __init__(self, client: redis.Redis, app: str = "stream-learner", retain: int = 5, prefix: str = "stream-learner") -> None:
        if retain < 1:
            raise SnapshotError("retain must be at least 1")
        self.client = client
        self.app = app
        self.retain = retain
        self.prefix = prefix
        self._save = client.register_script(_SAVE)
        self._delete = client.register_script(_DELETE)
        self._set_latest = client.register_script(_SET_LATEST)
        self._load_latest = client.register_script(_LOAD_LATEST)
        self._versions = client.register_script(_VERSIONS)
        self._has_resume_state = client.register_script(_HAS_RESUME_STATE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        app: str = "stream-learner",
        retain: int = 5,
        password: str | None = None,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        socket_timeout: float = 5.0,
    ) -> RedisSnapshotStore:
        """Connect from a ``redis://`` or ``rediss://`` (TLS) URL; the TLS files apply to ``rediss``."""
        kwargs: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
        if password is not None:
            kwargs["password"] = password
        if url.startswith("rediss://"):
            kwargs.update({k: v for k, v in {"ssl_ca_certs": ssl_ca_certs, "ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}.items() if v})
        try:
            client = redis.Redis.from_url(url, **kwargs)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL: {exc}") from None
        return cls(client, app=app, retain=retain)

    def ping(self) -> None:
        """Fail early, in one line, when Redis cannot be reached."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise SnapshotError(f"cannot reach Redis: {exc}") from None

    def deletes_when_full(self) -> str | None:
        """Redis's ``maxmemory-policy`` where it deletes this store's keys once its memory is full: a ``maxmemory`` and an ``allkeys-`` policy.

        ``None`` where it never does (``noeviction``; a ``volatile-`` policy
        deletes only keys with an expiry, which snapshots never have), or
        does not say (``INFO`` refused).
        """
        try:
            memory = self.client.info("memory")
        except redis.RedisError:
            return None
        policy = str(memory.get("maxmemory_policy", "noeviction"))
        return policy if int(memory.get("maxmemory", 0)) > 0 and policy.startswith("allkeys-") else None

    def close(self) -> None:
        """Close this store's connections (a run's end, or its failure)."""
        self.client.close()

    def save(self, key: str, blob: bytes) -> int:
        keys, args = self._save_call(key, blob)
        return int(self._save(keys=keys, args=args))

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Save a round: each key's save atomic on its own, pipelined; the versions, in order.

        Raises on the first pipeline Redis refuses; the pipelines before it
        are saved (saving them again only adds a version).
        """
        versions: list[int] = []
        for chunk in _chunks(items):
            pipe = self.client.pipeline(transaction=False)
            for key, blob in chunk:
                keys, args = self._save_call(key, blob)
                self._save(keys=keys, args=args, client=pipe)
            versions.extend(int(v) for v in pipe.execute())
        return versions

    def _save_call(self, key: str, blob: bytes) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the script that saves ``blob`` as a new version of ``key`` (filed by its kind)."""
        k = self._keys(key)
        return [k["seq"], k["versions"], k["latest"], self._index(), k["boundaries"]], [blob, k["v"], self.retain, key, envelope_kind(blob)]

    def latest(self, key: str) -> int | None:
        value = self.client.get(self._keys(key)["latest"])
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise SnapshotError(f"the latest pointer of {key!r} is not a version number: {value[:40]!r}") from None

    def versions(self, key: str) -> list[int]:
        k = self._keys(key)
        regular, boundaries = cast(list[list[bytes]], self._versions(keys=[k["versions"], k["boundaries"]]))  # one atomic read: bytes (decode_responses off)
        return sorted(int(v) for v in regular + boundaries)

    def boundary_versions(self, key: str) -> list[int]:
        members = cast(list[bytes], self.client.zrange(self._keys(key)["boundaries"], 0, -1))
        return sorted(int(v) for v in members)

    def load(self, key: str, version: int) -> bytes:
        blob = cast(bytes | None, self.client.get(f"{self._keys(key)['v']}{version}"))
        if blob is None:
            raise SnapshotError(f"no snapshot version {version} for key {key!r}")
        return blob

    def load_latest(self, key: str) -> tuple[int, bytes | None] | None:
        """``(version, envelope)`` of ``latest``, read in one atomic step.

        Reading :meth:`latest` then :meth:`load` can race with retention
        (a writer may retire that version in between); this cannot. The
        envelope is ``None`` when the pointer names a missing version; a
        service loads with :func:`~stream_learner.snapshot.load_latest_valid`,
        which verifies and falls back.
        """
        k = self._keys(key)
        found = self._load_latest(keys=[k["latest"]], args=[k["v"]])
        if not found:
            return None
        try:
            return int(found[0]), found[1]
        except ValueError:
            raise SnapshotError(f"the latest pointer of {key!r} is not a version number: {found[0][:40]!r}") from None

    def never_snapshotted(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` with no ``latest`` pointer and no stored regular version: nothing to resume from.

        For exactly these keys :func:`~stream_learner.snapshot.load_latest_valid`
        finds no snapshot. One pipelined round per :data:`LOOKUP_CHUNK` keys,
        where asking key by key costs a round trip each (a fleet's new keys).
        """
        nothing: set[str] = set()
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            pipe = self.client.pipeline(transaction=False)
            for key in chunk:
                k = self._keys(key)
                self._has_resume_state(keys=[k["latest"], k["versions"]], client=pipe)
            nothing.update(key for key, found in zip(chunk, pipe.execute()) if not int(found))
        return nothing

    def keys(self) -> list[str]:
        return sorted(m.decode() for m in cast(set[bytes], self.client.smembers(self._index())))

    def delete(self, key: str, version: int | None = None) -> None:
        k = self._keys(key)
        done = self._delete(keys=[k["versions"], k["latest"], self._index(), k["boundaries"]], args=[k["v"], "" if version is None else version, key])
        if int(done) < 0:
            raise SnapshotError(f"no snapshot version {version} for key {key!r}")

    def set_latest(self, key: str, version: int) -> None:
        k = self._keys(key)
        done = int(self._set_latest(keys=[k["versions"], k["latest"], k["boundaries"]], args=[version]))
        if done < 0:
            raise not_a_resume_point(key, version)
        if not done:
            raise SnapshotError(f"no snapshot version {version} for key {key!r}")

    def _index(self) -> str:
        return f"{self.prefix}:{_safe(self.app)}:keys"

    def _keys(self, key: str) -> dict[str, str]:
        base = f"{self.prefix}:{{{_safe(self.app)}/{_safe(key)}}}"
        return {"v": f"{base}:v:", "versions": f"{base}:versions", "boundaries": f"{base}:boundaries", "seq": f"{base}:seq", "latest": f"{base}:latest"}


def _chunks(items: Sequence[tuple[str, bytes]]) -> Iterator[Sequence[tuple[str, bytes]]]:
    """``items`` in runs of about :data:`PIPELINE_BYTES` of envelopes."""
    start, size = 0, 0
    for i, (_, blob) in enumerate(items):
        if size and size + len(blob) > PIPELINE_BYTES:
            yield items[start:i]
            start, size = i, 0
        size += len(blob)
    if start < len(items):
        yield items[start:]


def _safe(name: str) -> str:
    return urllib.parse.quote(name, safe="")
