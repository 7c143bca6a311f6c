"""Opening the snapshot store and the signing key the settings name (the Kafka run and ``snapshots`` share them)."""

from __future__ import annotations

from connectors.redis_store import RedisSnapshotStore
from stream_learner.errors import ConfigError
from stream_learner.settings import Settings


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
    """The Redis snapshot store the settings name (reachable, or a one-line error)."""
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
    return store
