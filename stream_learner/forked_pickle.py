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
import threading
from abc import ABC, abstractmethod
from typing import Any, BinaryIO, Callable

from stream_learner.errors import SnapshotError

CAN_FORK = sys.platform == "linux"  # macOS forbids fork after threads touched some system frameworks


class PendingBytes(ABC):
    """Bytes still being made elsewhere, collected once: :meth:`result`, or :meth:`discard`, from any thread.

    A snapshot's bytes are read by two threads: the writer thread that
    saves it, and the stream's, whose undo journal starts again from them
    (:meth:`~stream_learner.learners.base.Journal.restart_at`). So the
    first :meth:`result` collects them (:meth:`_collect`, waiting for
    them) while every other caller waits for it and gets the same bytes,
    or the same failure; :meth:`discard` gives them up (:meth:`_give_up`)
    unless they were collected, and :meth:`result` then raises. Each of the
    two hooks runs at most once, and never both.

    >>> class Made(PendingBytes):
    ...     def _collect(self) -> bytes:
    ...         return b"made"
    ...     def _give_up(self) -> None:
    ...         pass
    >>> made = Made(discarded="the bytes were discarded")
    >>> made.result(), made.result()
    (b'made', b'made')
    >>> made.discard(); made.result()  # collected already: kept
    b'made'
    >>> other = Made(discarded="the bytes were discarded")
    >>> other.discard(); other.result()
    Traceback (most recent call last):
    ...
    stream_learner.errors.SnapshotError: the bytes were discarded
    """

    def __init__(self, discarded: str) -> None:
        self._discarded = discarded  # what result() says once the bytes were given up
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._failure: str | None = None  # why there are no bytes: collecting them failed, or they were given up

    @property
    def settled(self) -> bool:
        """Whether the bytes were collected, failed, or given up (read without waiting)."""
        return self._data is not None or self._failure is not None

    def result(self) -> bytes:
        """The bytes (the first caller waits for them; a concurrent one, for the first); :class:`SnapshotError` if they failed or were discarded."""
        with self._lock:
            if not self.settled:
                try:
                    self._data = self._collect()
                except SnapshotError as exc:
                    self._failure = str(exc)
            if self._data is None:
                raise SnapshotError(self._failure)
            return self._data

    def discard(self) -> None:
        """Nobody will read the bytes: give them up, unless they were collected already."""
        with self._lock:
            if not self.settled:
                self._failure = self._discarded
                self._give_up()

    @abstractmethod
    def _collect(self) -> bytes:
        """Wait for the bytes and return them (:class:`SnapshotError`: they will never come)."""

    @abstractmethod
    def _give_up(self) -> None:
        """Free what making the bytes holds."""


class ForkedPickle(PendingBytes):
    """Bytes made by a child process from the parent's objects as they were at :meth:`call` (:meth:`start`: an object's pickle).

    The child writes the bytes to an unnamed temporary file and exits at
    once, so the parent's pages are shared copy-on-write for as short a
    time as possible. :meth:`result` waits for the child and reads them;
    :meth:`discard` gives up on them. Every started pickle must end with
    one of the two, so that the child is reaped (once: see :class:`PendingBytes`).
    """

    def __init__(self, pid: int, spool: BinaryIO) -> None:
        super().__init__(discarded=f"the bytes of child process {pid} were discarded")
        self._pid = pid
        self._spool = spool

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

    def _collect(self) -> bytes:
        try:
            status = self._reap()
            self._spool.seek(0)
            data = self._spool.read()
        finally:
            self._spool.close()
        if status != 0:
            why = data.decode(errors="replace") if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1 else f"wait status {status}"
            raise SnapshotError(f"the snapshot's child process failed: {why}")
        return data

    def _give_up(self) -> None:
        try:
            self._reap()
        except SnapshotError:
            pass  # gone already: nothing left to reap
        finally:
            self._spool.close()

    def _reap(self) -> int:
        try:
            return os.waitpid(self._pid, 0)[1]
        except ChildProcessError as exc:  # someone else reaped it (a wait for any child, SIGCHLD ignored): its bytes cannot be trusted
            raise SnapshotError(f"the snapshot's child process {self._pid} was reaped elsewhere: {exc}") from None

    def __del__(self) -> None:
        # a safety net for a pickle nobody collected: reap the child if it is done, free the file
        if not self.settled:
            try:
                os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                pass
            self._spool.close()
