"""Tests' hands on a local snapshot store's rows: damage what a crash, a disk or an operator could."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from connectors.local_store import LocalSnapshotStore


def _run(store: LocalSnapshotStore, sql: str, params: tuple[object, ...]) -> None:
    store.close()  # this test's connection writes; the store opens again on its next call
    with closing(sqlite3.connect(store.path)) as db, db:
        db.execute(sql, params)


def set_envelope(store: LocalSnapshotStore, key: str, version: int, blob: bytes) -> None:
    """Overwrite one stored version's envelope."""
    _run(store, "UPDATE versions SET envelope = ? WHERE key = ? AND version = ?", (blob, key, version))


def drop_version(store: LocalSnapshotStore, key: str, version: int) -> None:
    """Remove one version behind the store's back (its pointer stays)."""
    _run(store, "DELETE FROM versions WHERE key = ? AND version = ?", (key, version))


def set_pointer(store: LocalSnapshotStore, key: str, value: object) -> None:
    """Write ``latest`` as it is (any value, a damaged one too); ``None`` deletes it."""
    if value is None:
        _run(store, "DELETE FROM latest WHERE key = ?", (key,))
    else:
        _run(store, "INSERT OR REPLACE INTO latest VALUES (?, ?)", (key, value))
