"""Pickling in a forked child, as Redis's ``BGSAVE`` does.

Pickling a learner (its snapshot's state, or the rollback journal's
checkpoint) in the stream's own process costs twice: the stall while the
pickler runs, and, on CPython 3.11, a lasting slowdown: pickling reads
every object's ``__dict__``, which turns the object's compact inline
attributes into a real dictionary for good, and from then on every
attribute access of the model is slower (see benchmarks/README.md). A
forked child sees the same objects (copy-on-write), makes the bytes and
writes them to a temporary file; the parent pays for ``fork()`` only, and
its objects stay as they were.

>>> pending = ForkedPickle.start({"weights": [1.0, 2.0]})
>>> pickle.loads(pending.result())
{'weights': [1.0, 2.0]}
>>> ForkedPickle.call(lambda: b"made in the child").result()
b'made in the child'
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
from typing import Any, BinaryIO, Callable

from stream_learner.errors import SnapshotError

CAN_FORK = sys.platform == "linux"  # macOS forbids fork after threads touched some system frameworks


class ForkedPickle:
    """Bytes made by a child process from the parent's objects as they were at :meth:`call` (:meth:`start`: an object's pickle).

    The child writes the bytes to an unnamed temporary file and exits at
    once, so the parent's pages are shared copy-on-write for as short a
    time as possible. :meth:`result` waits for the child and reads them;
    :meth:`discard` gives up on them. Every started pickle must end with
    one of the two, so that the child is reaped.
    """

    def __init__(self, pid: int, spool: BinaryIO) -> None:
        self._pid = pid
        self._spool = spool
        self._data: bytes | None = None

    @classmethod
    def start(cls, obj: Any) -> ForkedPickle:
        """The pickle of ``obj``."""
        return cls.call(lambda: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def call(cls, produce: Callable[[], bytes]) -> ForkedPickle:
        """What ``produce()`` returns, called in the child."""
        spool = tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:  # the child: produce, write, and leave without running any cleanup of the parent's
            code = 1
            try:
                spool.write(produce())
                code = 0
            except BaseException as exc:  # noqa: BLE001 - whatever it is, the parent says it; the child must leave here
                spool.seek(0)
                spool.truncate()
                spool.write(f"{type(exc).__name__}: {exc}".encode(errors="replace"))
            finally:
                spool.flush()
                os._exit(code)
        return cls(pid, spool)

    def result(self) -> bytes:
        """The bytes (waits for the child the first time)."""
        if self._data is None:
            status = self._reap()
            self._spool.seek(0)
            data = self._spool.read()
            self._spool.close()
            if status != 0:
                why = data.decode(errors="replace") if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1 else f"wait status {status}"
                raise SnapshotError(f"the snapshot's child process failed: {why}")
            self._data = data
        return self._data

    def discard(self) -> None:
        """Give up on the bytes; the child is reaped."""
        if self._data is None:
            self._reap()
            self._spool.close()
            self._data = b""

    def _reap(self) -> int:
        return os.waitpid(self._pid, 0)[1]

    def __del__(self) -> None:
        # a safety net for a pickle nobody collected: reap the child if it is done, free the file
        if self._data is None:
            try:
                os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                pass
            self._spool.close()
