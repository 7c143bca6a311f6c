"""A snapshot store in a local directory.

Layout: ``ROOT/APP/KEY/v000001.snap`` and ``ROOT/APP/KEY/LATEST`` (the
latest version's number). Both are written to a temporary file and
renamed, so a crash never leaves a half-written snapshot or pointer.

>>> import tempfile
>>> store = LocalSnapshotStore(tempfile.mkdtemp(), app="demo", retain=2)
>>> [store.save("default", b"snap%d" % i) for i in range(3)]
[1, 2, 3]
>>> store.versions("default"), store.latest("default"), store.load("default", 3)
([2, 3], 3, b'snap2')
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from pathlib import Path

from stream_learner.errors import SnapshotError


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
        directory.mkdir(parents=True, exist_ok=True)
        existing = self.versions(key)
        version = (existing[-1] if existing else 0) + 1
        _atomic_write(directory / f"v{version:06d}.snap", blob)
        _atomic_write(directory / "LATEST", str(version).encode())
        for old in (existing + [version])[: -self.retain]:
            (directory / f"v{old:06d}.snap").unlink(missing_ok=True)
        return version

    def latest(self, key: str) -> int | None:
        try:
            return int((self._dir(key) / "LATEST").read_text())
        except FileNotFoundError:
            return None

    def versions(self, key: str) -> list[int]:
        directory = self._dir(key)
        if not directory.is_dir():
            return []
        return sorted(int(p.stem[1:]) for p in directory.glob("v*.snap"))

    def load(self, key: str, version: int) -> bytes:
        try:
            return (self._dir(key) / f"v{version:06d}.snap").read_bytes()
        except FileNotFoundError:
            raise SnapshotError(f"no snapshot version {version} for key {key!r}") from None

    def keys(self) -> list[str]:
        if not self.app_dir.is_dir():
            return []
        return sorted(urllib.parse.unquote(p.name) for p in self.app_dir.iterdir() if (p / "LATEST").exists())

    def delete(self, key: str, version: int | None = None) -> None:
        directory = self._dir(key)
        targets = self.versions(key) if version is None else [version]
        if version is not None and version not in self.versions(key):
            raise SnapshotError(f"no snapshot version {version} for key {key!r}")
        for v in targets:
            (directory / f"v{v:06d}.snap").unlink(missing_ok=True)
        remaining = self.versions(key)
        if remaining:
            if self.latest(key) not in remaining:
                _atomic_write(directory / "LATEST", str(remaining[-1]).encode())
        else:
            (directory / "LATEST").unlink(missing_ok=True)

    def set_latest(self, key: str, version: int) -> None:
        if version not in self.versions(key):
            raise SnapshotError(f"no snapshot version {version} for key {key!r}")
        _atomic_write(self._dir(key) / "LATEST", str(version).encode())

    def signing_key(self) -> bytes:
        """This directory's own signing key, created on first use (mode 0600)."""
        path = self.root / ".signing-key"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True)
            key = secrets.token_hex(32).encode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            return key

    def _dir(self, key: str) -> Path:
        return self.app_dir / _safe(key)


def _safe(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
