"""A snapshot store in a local directory: one SQLite database per application.

Layout: ``ROOT/APP/snapshots.db`` (with SQLite's ``-wal`` and ``-shm``
files beside it), a table of ``(key, version, envelope, kind)`` rows and one of
``latest`` pointers. ``kind`` is the version's
(:data:`~stream_learner.snapshot.VersionKind`, from its envelope's header):
``latest`` points at regular versions only, and the last ``retain``
versions of each kind are kept; a database of a release before version
kinds gains the column when opened, its versions all regular. A round of snapshots (:meth:`LocalSnapshotStore.save_many`)
is one transaction appended to one file, whatever the number of keys, and a
crash in the middle of it leaves the store as it was before the round
(SQLite's write-ahead log only ever exposes committed transactions). A
committed round survives the process being killed; the log is synced to
disk at SQLite's checkpoints, not at each commit (``synchronous=NORMAL``),
so a power cut or an OS crash may take back the rounds since the last
checkpoint, never leaving a damaged store: a single key's save costs
a write, not a disk sync (about 15 times cheaper), which evicting keys
one at a time needs.
The directory is created ``0700`` and the database ``0600`` (SQLite gives
its journal files the database's mode): a snapshot holds pickles (river
models), so the directory must be writable by its owner only
(:func:`connectors.private_dir.private_directory`, checked by the run).
SQLite's locking needs a local file system, not NFS.

Earlier releases wrote ``ROOT/APP/KEY/v000001.snap`` files and a
``ROOT/APP/KEY/LATEST`` pointer per key: opening such a store moves those
folders into the database (versions, pointers and all, damaged ones
included), in one transaction, then removes them.

The signing key that signs a local store's snapshots lives outside it, in
``$STREAM_LEARNER_SIGNING_KEY_FILE``, else
``$XDG_CONFIG_HOME/stream-learner/signing-key`` (``~/.config/...``).

>>> import tempfile
>>> store = LocalSnapshotStore(tempfile.mkdtemp(), app="demo", retain=2)
>>> [store.save("default", b"snap%d" % i) for i in range(3)]
[1, 2, 3]
>>> store.versions("default"), store.latest("default"), store.load("default", 3)
([2, 3], 3, b'snap2')
>>> store.save_many([("a", b"a1"), ("default", b"snap3")]), store.load_latest("default")
([1, 4], (4, b'snap3'))
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, overload

from stream_learner.errors import SnapshotError
from stream_learner.snapshot import envelope_kind, not_a_resume_point

logger = logging.getLogger(__name__)

SIGNING_KEY_FILE_ENV = "STREAM_LEARNER_SIGNING_KEY_FILE"
LEGACY_SIGNING_KEY = ".signing-key"  # inside the store's root: read (with a warning) where it exists
DATABASE = "snapshots.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (key TEXT NOT NULL, version INTEGER NOT NULL, envelope BLOB NOT NULL, kind TEXT NOT NULL DEFAULT 'regular', PRIMARY KEY (key, version));
CREATE TABLE IF NOT EXISTS latest (key TEXT PRIMARY KEY, version NOT NULL);
"""
_ADD_KIND = "ALTER TABLE versions ADD COLUMN kind TEXT NOT NULL DEFAULT 'regular'"  # a database of a release before version kinds
# ``latest.version`` has no type: a pointer damaged by hand (or migrated damaged) reads back as it is, and is refused as such
# named parameters where one is used twice: Python 3.12 warns on numbered ones (?1) bound from a sequence
_NEXT = "INSERT INTO versions (key, version, envelope, kind) SELECT :key, coalesce(max(version), 0) + 1, :blob, :kind FROM versions WHERE key = :key RETURNING version"
_POINT = "INSERT INTO latest VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET version = excluded.version"
_RETIRE = "DELETE FROM versions WHERE key = :key AND kind = :kind AND version < (SELECT version FROM versions WHERE key = :key AND kind = :kind ORDER BY version DESC LIMIT 1 OFFSET :keep)"

_VERSION_FILE = re.compile(r"v(\d+)\.snap")  # the layout of earlier releases


class LocalSnapshotStore:
    """Implements :class:`~stream_learner.snapshot.SnapshotStore` on a directory.

    Thread-safe: the writer threads and the dataflow share one connection,
    under a lock. The database is opened on first use, and only created by
    a save (a read of an empty directory leaves it empty).
    """

    def __init__(self, root: str | Path, app: str = "stream-learner", retain: int = 5) -> None:
        if retain < 1:
            raise SnapshotError("retain must be at least 1")
        self.root = Path(root)
        self.app_dir = self.root / _safe(app)
        self.path = self.app_dir / DATABASE
        self.retain = retain
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0  # the process that opened ``_db``: a forked child opens its own

    def save(self, key: str, blob: bytes) -> int:
        return self.save_many([(key, blob)])[0]

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Store a new version of each key, point ``latest`` at the regular ones and apply retention, in one transaction; the versions, in order."""
        with self._transaction() as db:
            saved = []  # (key, version, kind) of each item
            for key, blob in items:
                kind = envelope_kind(blob)
                saved.append((key, db.execute(_NEXT, {"key": key, "blob": blob, "kind": kind}).fetchone()[0], kind))
            db.executemany(_POINT, [(key, version) for key, version, kind in saved if kind == "regular"])
            db.executemany(_RETIRE, [{"key": key, "kind": kind, "keep": self.retain - 1} for key, kind in {(key, kind) for key, _, kind in saved}])
        return [version for _, version, _ in saved]

    def latest(self, key: str) -> int | None:
        with self._reading() as db:
            row = db.execute("SELECT version FROM latest WHERE key = ?", (key,)).fetchone() if db else None
        return None if row is None else _pointer(key, row[0])

    def load_latest(self, key: str) -> tuple[int, bytes | None] | None:
        """``(version, envelope)`` of ``latest``, read in one step; the envelope is ``None`` when the pointer names a missing version."""
        with self._reading() as db:
            row = db.execute(
                "SELECT l.version, v.envelope FROM latest l LEFT JOIN versions v ON v.key = l.key AND v.version = l.version WHERE l.key = ?", (key,)
            ).fetchone() if db else None  # fmt: skip
        return None if row is None else (_pointer(key, row[0]), row[1])

    def versions(self, key: str) -> list[int]:
        with self._reading() as db:
            return [v for (v,) in db.execute("SELECT version FROM versions WHERE key = ? ORDER BY version", (key,))] if db else []

    def boundary_versions(self, key: str) -> list[int]:
        with self._reading() as db:
            return [v for (v,) in db.execute("SELECT version FROM versions WHERE key = ? AND kind = 'boundary' ORDER BY version", (key,))] if db else []

    def load(self, key: str, version: int) -> bytes:
        with self._reading() as db:
            row = db.execute("SELECT envelope FROM versions WHERE key = ? AND version = ?", (key, version)).fetchone() if db else None
        if row is None:
            raise SnapshotError(f"no snapshot version {version} for key {key!r}")
        return bytes(row[0])

    def keys(self) -> list[str]:
        with self._reading() as db:
            return [k for (k,) in db.execute("SELECT key FROM versions UNION SELECT key FROM latest ORDER BY key")] if db else []

    def delete(self, key: str, version: int | None = None) -> None:
        with self._transaction() as db:
            if version is not None and db.execute("SELECT 1 FROM versions WHERE key = ? AND version = ?", (key, version)).fetchone() is None:
                raise SnapshotError(f"no snapshot version {version} for key {key!r}")
            if version is None:
                db.execute("DELETE FROM versions WHERE key = ?", (key,))
            else:
                db.execute("DELETE FROM versions WHERE key = ? AND version = ?", (key, version))
            (newest,) = db.execute("SELECT max(version) FROM versions WHERE key = ? AND kind = 'regular'", (key,)).fetchone()
            if newest is None:
                db.execute("DELETE FROM latest WHERE key = ?", (key,))
            elif db.execute("SELECT 1 FROM latest l JOIN versions v ON v.key = l.key AND v.version = l.version WHERE l.key = ?", (key,)).fetchone() is None:
                db.execute(_POINT, (key, newest))  # the pointer named what is gone, or nothing readable: the newest regular one left

    def set_latest(self, key: str, version: int) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT kind FROM versions WHERE key = ? AND version = ?", (key, version)).fetchone()
            if row is None:
                raise SnapshotError(f"no snapshot version {version} for key {key!r}")
            if row[0] != "regular":
                raise not_a_resume_point(key, version)
            db.execute(_POINT, (key, version))

    def close(self) -> None:
        """Close the database (a later call opens it again)."""
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None

    @overload
    def signing_key(self, create: Literal[True] = True) -> bytes: ...
    @overload
    def signing_key(self, create: bool) -> bytes | None: ...

    def signing_key(self, create: bool = True) -> bytes | None:
        """The key that signs this store's snapshots (see :func:`signing_key_path`).

        A key in the store's own root (where earlier versions put it) is
        still read, with a warning, so that its snapshots keep verifying.
        Without ``create``, ``None`` when there is no key yet.
        """
        legacy = self.root / LEGACY_SIGNING_KEY
        if legacy.exists():
            logger.warning("the signing key %s lies in the directory it protects: move it to %s", legacy, signing_key_path())
            return legacy.read_bytes()
        path = signing_key_path()
        try:
            return path.read_bytes()
        except FileNotFoundError:
            if not create:
                return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """The open database (``None`` when there is none yet), under the lock."""
        with self._lock:
            yield self._connection(create=False)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (committed on success, rolled back on an exception), under the lock."""
        with self._lock:
            db = self._connection(create=True)
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @overload
    def _connection(self, create: Literal[True]) -> sqlite3.Connection: ...
    @overload
    def _connection(self, create: bool) -> sqlite3.Connection | None: ...

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        """The database, opened (and the earlier layout moved into it) on first use; ``None`` when it does not exist and ``create`` is false."""
        if self._db is not None and self._pid == os.getpid():
            return self._db
        legacy = _legacy_folders(self.app_dir)
        if not (create or legacy or self.path.exists()):
            return None
        try:
            self.app_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite would create it with the umask's mode
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # see the module's docstring: safe from a killed process, not from a power cut
            db.executescript(_SCHEMA)
            _add_kinds(db)
        except (OSError, sqlite3.Error) as exc:
            raise SnapshotError(f"cannot open the snapshot store {self.path}: {exc}") from None
        self._db, self._pid = db, os.getpid()
        if legacy:
            _migrate(db, legacy)
        return db


def _add_kinds(db: sqlite3.Connection) -> None:
    """Give a database of a release before version kinds its ``kind`` column (every version it holds is regular); once, whoever opens it first."""
    if _has_kinds(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not _has_kinds(db):  # another process may have added it since
            db.execute(_ADD_KIND)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _has_kinds(db: sqlite3.Connection) -> bool:
    return any(column[1] == "kind" for column in db.execute("PRAGMA table_info(versions)"))


def _pointer(key: str, value: object) -> int:
    if type(value) is int:
        return value
    raise SnapshotError(f"the latest pointer of {key!r} is not a version number: {str(value)[:40]!r}")


def _legacy_folders(app_dir: Path) -> list[Path]:
    """The key folders of the layout of earlier releases (every folder in the application's directory)."""
    try:
        return [p for p in app_dir.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _migrate(db: sqlite3.Connection, folders: list[Path]) -> None:
    """Move key folders of the earlier layout into the database, in one transaction, then remove them.

    A key the database already holds was moved by a run that stopped
    before removing its folder (or by another process just now): only its
    folder goes.
    """
    moved = 0
    db.execute("BEGIN IMMEDIATE")
    try:
        for folder in folders:
            key = _key_of(folder) if folder.is_dir() else None
            if key is None or db.execute("SELECT 1 FROM versions WHERE key = :key UNION SELECT 1 FROM latest WHERE key = :key", {"key": key}).fetchone():
                continue
            for path in folder.iterdir():
                if match := _VERSION_FILE.fullmatch(path.name):
                    db.execute("INSERT INTO versions (key, version, envelope) VALUES (?, ?, ?)", (key, int(match[1]), path.read_bytes()))
            try:
                text = (folder / "LATEST").read_bytes()
            except FileNotFoundError:
                pass
            else:
                db.execute(_POINT, (key, _number_or_text(text)))
            moved += 1
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    logger.info("moved the snapshots of %d model key(s) from the folders of an earlier release into %s", moved, db.execute("PRAGMA database_list").fetchone()[2])


def _number_or_text(pointer: bytes) -> int | str:
    """A pointer file's version number, or its text when it holds none (refused as such when read)."""
    try:
        return int(pointer)
    except ValueError:
        return pointer.decode("utf-8", "replace")


def signing_key_path() -> Path:
    """Where the local signing key lives: ``$STREAM_LEARNER_SIGNING_KEY_FILE``, else under ``$XDG_CONFIG_HOME`` (``~/.config``)."""
    explicit = os.environ.get(SIGNING_KEY_FILE_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "stream-learner" / "signing-key"


_KEY_FILE = "KEY"  # the model key, in a folder whose name could not hold it
_MAX_NAME = 200  # bytes; file systems allow 255 per name, and a snapshot's temporary file adds to it


def _quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _safe(name: str) -> str:
    """A folder name for ``name`` that stays inside its parent and fits a file system's name limit.

    Names are percent-quoted, so ``/`` cannot lead out; ``.`` and ``..``
    (which quoting leaves as they are) have their dots quoted; a name too
    long for a folder becomes a prefix and a hash (a ``+``, which quoting
    never leaves, keeps it apart from every quoted name), and the folder
    keeps the name itself in its ``KEY`` file.

    >>> _safe("sensor/1"), _safe(".."), _safe("."), _safe("a.b")
    ('sensor%2F1', '%2E%2E', '%2E', 'a.b')
    >>> long = _safe("é" * 256)
    >>> len(long) <= _MAX_NAME and "+" in long
    True
    """
    quoted = _quoted(name)
    if quoted in (".", ".."):
        return quoted.replace(".", "%2E")
    if len(quoted) > _MAX_NAME:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{quoted[:100]}+{digest}"
    return quoted


def _key_of(folder: Path) -> str:
    """The model key a key folder holds (see :func:`_safe`)."""
    try:
        return (folder / _KEY_FILE).read_bytes().decode("utf-8", "surrogatepass")
    except FileNotFoundError:
        return urllib.parse.unquote(folder.name)
