"""A snapshot store in a local directory.

Layout: ``ROOT/APP/KEY/v000001.snap`` and ``ROOT/APP/KEY/LATEST`` (the
latest version's number). Both are written to a temporary file and
renamed, so a crash never leaves a half-written snapshot or pointer.
Directories are created ``0700`` and files ``0600``: a snapshot holds
pickles (river models), so the directory must be writable by its owner only
(:func:`connectors.private_dir.private_directory`, checked by the run).

The signing key that signs a local store's snapshots lives outside it, in
``$STREAM_LEARNER_SIGNING_KEY_FILE``, else
``$XDG_CONFIG_HOME/stream-learner/signing-key`` (``~/.config/...``).

>>> import tempfile
>>> store = LocalSnapshotStore(tempfile.mkdtemp(), app="demo", retain=2)
>>> [store.save("default", b"snap%d" % i) for i in range(3)]
[1, 2, 3]
>>> store.versions("default"), store.latest("default"), store.load("default", 3)
([2, 3], 3, b'snap2')
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import urllib.parse
from pathlib import Path

from stream_learner.errors import SnapshotError

logger = logging.getLogger(__name__)

SIGNING_KEY_FILE_ENV = "STREAM_LEARNER_SIGNING_KEY_FILE"
LEGACY_SIGNING_KEY = ".signing-key"  # inside the store's root: read (with a warning) where it exists

_VERSION_FILE = re.compile(r"v(\d+)\.snap")


class LocalSnapshotStore:
    """Implements :class:`~stream_learner.snapshot.SnapshotStore` on a directory."""

    def __init__(self, root: str | Path, app: str = "stream-learner", retain: int = 5) -> None:
        if retain < 1:
            raise SnapshotError("retain must be at least 1")
        self.root = Path(root)
        self.app_dir = self.root / _safe(app)
        self.retain = retain

    def save(self, key: str, blob: bytes) -> int:
        directory = self._dir(key)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.name != _quoted(key) and not (directory / _KEY_FILE).exists():
            _atomic_write(directory / _KEY_FILE, key.encode())
        existing = self.versions(key)
        version = (existing[-1] if existing else 0) + 1
        _atomic_write(directory / f"v{version:06d}.snap", blob)
        _atomic_write(directory / "LATEST", str(version).encode())
        for old in (existing + [version])[: -self.retain]:
            (directory / f"v{old:06d}.snap").unlink(missing_ok=True)
        return version

    def latest(self, key: str) -> int | None:
        try:
            text = (self._dir(key) / "LATEST").read_bytes()
        except FileNotFoundError:
            return None
        try:
            return int(text)
        except ValueError:
            raise SnapshotError(f"the latest pointer of {key!r} is not a version number: {text[:40]!r}") from None

    def versions(self, key: str) -> list[int]:
        directory = self._dir(key)
        if not directory.is_dir():
            return []
        return sorted(int(m[1]) for p in directory.iterdir() if (m := _VERSION_FILE.fullmatch(p.name)))

    def load(self, key: str, version: int) -> bytes:
        try:
            return (self._dir(key) / f"v{version:06d}.snap").read_bytes()
        except FileNotFoundError:
            raise SnapshotError(f"no snapshot version {version} for key {key!r}") from None

    def keys(self) -> list[str]:
        if not self.app_dir.is_dir():
            return []
        found = (_key_of(p) for p in self.app_dir.iterdir() if p.is_dir())
        return sorted(key for key in found if (self._dir(key) / "LATEST").exists() or self.versions(key))

    def delete(self, key: str, version: int | None = None) -> None:
        directory = self._dir(key)
        targets = self.versions(key) if version is None else [version]
        if version is not None and version not in self.versions(key):
            raise SnapshotError(f"no snapshot version {version} for key {key!r}")
        for v in targets:
            (directory / f"v{v:06d}.snap").unlink(missing_ok=True)
        remaining = self.versions(key)
        if remaining:
            if _pointer_or_none(self, key) not in remaining:
                _atomic_write(directory / "LATEST", str(remaining[-1]).encode())
        else:
            (directory / "LATEST").unlink(missing_ok=True)

    def set_latest(self, key: str, version: int) -> None:
        if version not in self.versions(key):
            raise SnapshotError(f"no snapshot version {version} for key {key!r}")
        _atomic_write(self._dir(key) / "LATEST", str(version).encode())

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

    def _dir(self, key: str) -> Path:
        return self.app_dir / _safe(key)


def signing_key_path() -> Path:
    """Where the local signing key lives: ``$STREAM_LEARNER_SIGNING_KEY_FILE``, else under ``$XDG_CONFIG_HOME`` (``~/.config``)."""
    explicit = os.environ.get(SIGNING_KEY_FILE_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "stream-learner" / "signing-key"


def _pointer_or_none(store: LocalSnapshotStore, key: str) -> int | None:
    try:
        return store.latest(key)
    except SnapshotError:
        return None


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


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
