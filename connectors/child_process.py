"""The connectors' child processes: started, talked to, watched and stopped one way.

The Kafka producer (:mod:`connectors.kafka_producer`) and the Kafka consumer
(:mod:`connectors.kafka_consumer`) do kafka-python's pure-Python work in a
child process each, off the learner's interpreter and GIL. What they share:

* **Start.** :meth:`ChildProcess.spawn`, ``multiprocessing``'s ``spawn``:
  never a fork of the parent, which runs Bytewax's Rust threads (and
  kafka-python's), whose locks a forked child would inherit in whatever
  state they were, without the threads that release them. ``spawn`` runs
  the parent's main module again in the child, so a script that runs a
  Kafka connector needs the usual ``if __name__ == "__main__":`` guard (and
  starts its children faster with its heavy imports inside it;
  ``stream-learner`` itself is light to import).
* **Talk.** Two pipes of framed, pickled messages
  (:class:`multiprocessing.connection.Connection`): ``commands`` from the
  parent, ``results`` from the child. A parent may give the child a
  channel of its own instead of the commands pipe (the producer's
  :func:`bounded_queue`, whose ``put`` is its back-pressure).
* **Watch.** A child ignores SIGINT (a terminal's Ctrl-C reaches the whole
  process group; the parent finishes the stream and stops the child) and
  exits as soon as its parent dies, even by ``kill -9``, and even while a
  process the parent forked holds the parent's ends of the pipes
  (:func:`exit_with_parent`).
* **Stop.** The parent tells the child to stop in the child's own way (a stop
  message), then :meth:`ChildProcess.stop` waits for it up to a timeout,
  kills it past that, and reaps it.
* **Fail.** A child reports its own failure as a message on ``results``; one
  that dies without a word is described by :meth:`ChildProcess.exit_message`,
  one line, which the connector raises as its own error.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")
_PARENT_POLL_S = 0.5  # how often a child checks its parent where the kernel cannot say when it exits
_KILL_WAIT_S = 5.0  # a killed child's exit, waited for before giving up on reaping it
_EXIT_CODE_WAIT_S = 1.0  # a dead child's exit code, waited for to say how it ended


def bounded_queue(size: int) -> Any:
    """A queue of at most ``size`` messages that a spawned child can take as its commands: ``put`` blocks (back-pressure) while it is full."""
    return _CONTEXT.Queue(size)


def widen_pipe(connection: Any, size: int = 1 << 20) -> None:
    """Let a pipe (a file descriptor, or an object with ``fileno()``) hold ``size`` bytes (Linux; the default 64 KiB holds less than one batch), where allowed."""
    try:
        import fcntl

        fcntl.fcntl(connection, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass


class ChildProcess:
    """One child process of a connector: its pipes, its pid, how it ended; stopped and reaped.

    Built by :meth:`spawn`. ``what`` names it in messages (``"the Kafka producer process"``).
    """

    def __init__(self, what: str, process: Any, commands: Any, results: Any) -> None:
        self.what = what
        self.commands = commands  # the parent's end of what it sends the child
        self.results = results  # the parent's end of what the child sends it
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    def spawn(cls, what: str, target: Callable[..., None], args: tuple[Any, ...], *, name: str, commands: Any = None, wide_results: bool = False) -> ChildProcess:
        """Start ``target(commands, results, *args)`` in a spawned child (``target``: a module-level function).

        ``commands``: a channel of the caller's own (a :func:`bounded_queue`)
        given to the child instead of a pipe. ``wide_results``: widen the
        results pipe (:func:`widen_pipe`), for a child that sends batches.
        """
        commands_r, commands_w = _CONTEXT.Pipe(duplex=False) if commands is None else (commands, commands)
        results_r, results_w = _CONTEXT.Pipe(duplex=False)
        if wide_results:
            widen_pipe(results_w)
        process = _CONTEXT.Process(target=_child_main, args=(os.getpid(), target, (commands_r, results_w, *args)), name=name, daemon=True)
        process.start()
        results_w.close()  # the child holds the only writer: its exit is our end of file
        if commands is None:
            commands_r.close()  # and the only reader: its exit breaks our pipe
        return cls(what, process, commands_w, results_r)

    def exit_code(self, wait_s: float = 0.0) -> int | None:
        """The child's exit code, waiting up to ``wait_s`` seconds for it; ``None`` while it runs."""
        self._process.join(wait_s)
        return self._process.exitcode

    def exit_message(self) -> str:
        """How a child that ended without a word ended, in one line (with its exit code, once known)."""
        return f"{self.what} exited unexpectedly (exit code {self.exit_code(_EXIT_CODE_WAIT_S)})"

    def stop(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the child, told to stop, to exit; kill it past that; reap it. Its exit code."""
        code = self.exit_code(timeout_s)
        if code is None:
            self._process.kill()
            code = self.exit_code(_KILL_WAIT_S)
        logger.debug("%s %d stopped (exit code %s)", self.what, self.pid, code)
        return code


class ChildHandle:
    """What a connector's handle on its child shares: the child's pid, and starting it early.

    A subclass sets ``_lock`` and ``_child`` and implements ``_start`` (idempotent, called with ``_lock`` held).
    """

    _lock: Any
    _child: ChildProcess | None

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        """Start the child now rather than on first use (its start-up then overlaps the caller's)."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        raise NotImplementedError


# --- in the child ---------------------------------------------------------------------------------


def _child_main(parent: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it finishes the stream and stops the child
    exit_with_parent(parent)
    target(*args)


def exit_with_parent(parent: int) -> None:
    """End this process as soon as ``parent`` (its parent's pid) dies, even by SIGKILL.

    Not by the end of a pipe from the parent, which a process the parent
    forked may hold open: the kernel says when the parent exits through a
    pidfd (Linux 5.3+); elsewhere the parent is polled every
    ``_PARENT_POLL_S``. A child whose parent died before this call exits at once.
    """

    def watch() -> None:
        try:
            handle: int | None = os.pidfd_open(parent)
        except (AttributeError, OSError):  # no pidfd here, or the parent is gone already
            handle = None
        if handle is not None and os.getppid() == parent:  # the pidfd is our parent's, not a later process's with its pid
            select.select([handle], [], [])  # readable once that process has exited
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
