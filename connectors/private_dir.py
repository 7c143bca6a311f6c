"""Directories that hold pickles: private to their owner, used by one process at a time.

Whoever can write a recovery or snapshot directory runs code in the next
service that loads it, so :func:`private_directory` creates it ``0700`` and
refuses one that others may write (as ssh does for its keys).
:func:`lock_directory` holds an advisory lock (``flock`` on ``DIR/.lock``)
for the life of the process: a second service on the same directory stops
before any work, naming the holder. The OS releases the lock when the
holder dies, even by SIGKILL.

>>> import tempfile
>>> d = private_directory(Path(tempfile.mkdtemp()) / "recovery", "recovery directory")
>>> oct(d.stat().st_mode & 0o777)
'0o700'
>>> _ = d.chmod(0o775)
>>> private_directory(d, "recovery directory")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
stream_learner.errors.ConfigError: the recovery directory ... is writable by group or others (mode 0775): whoever can write it runs code in this service; make it private (chmod 700 ...)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from stream_learner.errors import ConfigError

LOCK_FILE = ".lock"

_held: dict[Path, int] = {}  # directory -> the open lock file; held until the process exits


def private_directory(directory: str | Path, what: str) -> Path:
    """``directory``, created ``0700`` if missing; :class:`ConfigError` when group or others may write it."""
    directory = Path(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = directory.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot create the {what} {directory}: {exc.strerror or exc}") from None
    if mode & 0o022:
        raise ConfigError(
            f"the {what} {directory} is writable by group or others (mode {mode & 0o777:04o}): "
            f"whoever can write it runs code in this service; make it private (chmod 700 {directory})"
        )
    return directory


def lock_directory(directory: str | Path, what: str) -> None:
    """Lock ``directory`` for this process (again: no-op); :class:`ConfigError` naming the holder's pid when another has it."""
    path = Path(directory).resolve()
    if path in _held:
        return
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot lock the {what} {directory}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown (starting)"
        os.close(fd)
        raise ConfigError(f"the {what} {directory} is in use by process {holder}: each service needs a {what} of its own") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[path] = fd
