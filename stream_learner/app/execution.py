"""Running a dataflow to its end through Bytewax's public entry point.

``bytewax.run.cli_main`` (what ``python -m bytewax.run`` calls) runs one
worker in one process on the calling thread, where nothing competes for
the GIL, and otherwise starts worker threads, in a cluster where there are
addresses. A lost cluster peer is known only by the panic text Bytewax
gives it (:func:`peer_lost`). The collector is tuned for the stream the
whole time (:mod:`.gc_tuning`).

Stopping and failing: SIGTERM and SIGINT finish the stream instead of
killing it (:func:`graceful_signals`); an error of ours that Bytewax
wrapped is found in the chain (:func:`our_error`), and the CLI hides the
panic report Bytewax's Rust code writes to stderr (:func:`rust_panics_hidden`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.run import cli_main

from connectors.child_process import widen_pipe
from stream_learner.app.gc_tuning import streaming_gc
from stream_learner.errors import ClusterError, StreamLearnerError

logger = logging.getLogger(__name__)


def execute(
    flow: Dataflow,
    *,
    epoch_seconds: float,
    workers: int = 1,
    addresses: Sequence[str] = (),
    process_id: int = 0,
    recovery_config: Any = None,
    stop: threading.Event | None = None,
) -> None:
    """Run ``flow`` until its sources end.

    With ``stop`` (the sources' stop event), SIGTERM and SIGINT set it: the
    sources stop reading and the stream finishes (see :func:`graceful_signals`).
    Without, Ctrl-C raises ``KeyboardInterrupt`` as usual.
    """
    epoch = timedelta(seconds=epoch_seconds)
    with streaming_gc(), graceful_signals(stop):
        try:
            cli_main(
                flow, workers_per_process=workers, process_id=process_id, addresses=list(addresses) or None, epoch_interval=epoch, recovery_config=recovery_config
            )
        except BaseException as exc:
            if addresses and peer_lost(exc):
                raise ClusterError(
                    f"process {process_id} lost its connection to the cluster ({exc}): another process stopped or cannot be reached;"
                    " start every process again with the same --addresses and its own --process-id and --recovery-dir"
                    " to resume from the last closed epoch"
                ) from None
            # on the calling thread a Ctrl-C lands inside an operator, and Bytewax wraps it in its own errors
            if _interrupted(exc):
                raise KeyboardInterrupt from None
            raise


@contextmanager
def graceful_signals(stop: threading.Event | None) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set ``stop``, once; the previous handlers are back after the first.

    The sources stop reading and the stream finishes as at its end (final
    metrics, final snapshots, the summary). A second signal meets the
    previous handlers and stops at once. Only the main thread can take
    signals: elsewhere (or without ``stop``) nothing changes.
    """
    if stop is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def handler(signum: int, frame: Any) -> None:
        restore()
        logger.warning("%s: finishing the stream (final metrics and snapshots); a second signal stops at once", signal.Signals(signum).name)
        stop.set()

    for signum in previous:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        restore()


_PANIC = re.compile(rb"thread '[^'\n]*' panicked at ")  # how Rust's panic report starts: "thread '<name>' panicked at src/....rs:L:C:"
_THREAD, _PANICKED = b"thread '", b"' panicked at "
_END = b"\0stream-learner: end of the hidden panics\0"  # in-band: everything written before it has been passed on


class PanicFilter:
    """What to pass on of a byte stream: everything before the first Rust panic report, nothing from there on.

    A report may start mid-line (after a progress bar's line, which ends
    without a newline); what may still become its start is held until it
    decides.

    >>> f = PanicFilter()
    >>> f.feed(b"metrics ok\\n\\r  1,000 events thre"), f.feed(b"ad 'main' panicked at src/run.rs:1:2:\\n"), f.feed(b"Box<dyn Any>\\n")
    (b'metrics ok\\n\\r  1,000 events ', b'', b'')
    >>> f = PanicFilter(); f.feed(b"thread 'x' said hi\\nthread 'y"), f.rest()
    (b"thread 'x' said hi\\n", b"thread 'y")
    """

    def __init__(self) -> None:
        self.panicked = False
        self._held = b""  # what may be the start of a report

    def feed(self, data: bytes) -> bytes:
        """The part of ``data`` to pass on now."""
        if self.panicked:
            return b""
        data, self._held = self._held + data, b""
        match = _PANIC.search(data)
        if match is not None:
            self.panicked = True
            return data[: match.start()]
        hold = len(data)
        start = data.rfind(_THREAD)
        if start >= 0 and b"\n" not in data[start:]:
            close = data.find(b"'", start + len(_THREAD))
            if close < 0 or _PANICKED.startswith(data[close:]):  # the thread's name, or the words after it, still arriving
                hold = start
        if hold == len(data):  # a start of "thread '" at the very end
            hold = next((i for i in range(max(0, len(data) - len(_THREAD) + 1), len(data)) if _THREAD.startswith(data[i:])), len(data))
        self._held = data[hold:]
        return data[:hold]

    def rest(self) -> bytes:
        """What is held at the stream's end."""
        held, self._held = self._held, b""
        return b"" if self.panicked else held


@contextmanager
def rust_panics_hidden() -> Iterator[None]:
    """While inside, hide the reports Bytewax's Rust code writes to stderr when it panics.

    A panic ends the dataflow, and the error that caused it reaches Python,
    where the CLI prints it as one line; Rust's report (``thread '...'
    panicked at src/....rs``, a backtrace with ``RUST_BACKTRACE``) would come
    first, written by Rust's panic hook straight to file descriptor 2. So
    descriptor 2 becomes a pipe, and a thread passes on what arrives until
    a panic report starts (:class:`PanicFilter`), the rest of the run's
    stderr being that report and the unwinding after it. On the way out
    the thread has passed on everything written before; child processes
    started inside keep writing through it.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr: nothing to hide
        yield
        return
    read_fd, write_fd = os.pipe()
    widen_pipe(write_fd)
    ended = threading.Event()
    threading.Thread(target=_pass_on, args=(read_fd, os.dup(saved), ended), name="stderr-panic-filter", daemon=True).start()
    os.dup2(write_fd, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.write(write_fd, _END)
        ended.wait(10.0)  # everything written before is passed on (bounded: never hang an exit on it)
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_fd)


def _pass_on(read_fd: int, out_fd: int, ended: threading.Event) -> None:
    """Copy ``read_fd`` to ``out_fd`` through a :class:`PanicFilter` until the end marker, then as it is until EOF; closes both.

    It never stops reading before EOF, so no writer waits on a full pipe.
    """
    panic_filter: PanicFilter | None = PanicFilter()
    carry = b""  # a possible start of the end marker (which starts with the one NUL byte)
    while chunk := os.read(read_fd, 1 << 16):
        if panic_filter is None:
            out_fd = _write_all(out_fd, chunk)
            continue
        data, carry = carry + chunk, b""
        end = data.find(_END)
        if end >= 0:
            out_fd = _write_all(out_fd, panic_filter.feed(data[:end]) + panic_filter.rest() + data[end + len(_END) :])
            panic_filter = None
            ended.set()
            continue
        nul = data.rfind(b"\0", max(0, len(data) - len(_END) + 1))
        if nul >= 0 and _END.startswith(data[nul:]):
            data, carry = data[:nul], data[nul:]
        out_fd = _write_all(out_fd, panic_filter.feed(data))
    ended.set()
    os.close(read_fd)
    if out_fd >= 0:
        os.close(out_fd)


def _write_all(fd: int, data: bytes) -> int:
    """Write ``data`` to ``fd``; on an error, close it and return -1 (what comes next is dropped)."""
    try:
        while data and fd >= 0:
            data = data[os.write(fd, data) :]
    except OSError:
        os.close(fd)
        return -1
    return fd


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then its cause (else its context), and so on; each exception once, so a cycle ends.

    >>> try:
    ...     try:
    ...         raise KeyError("inner")
    ...     except KeyError as inner:
    ...         raise RuntimeError("outer") from inner
    ... except RuntimeError as outer:
    ...     [type(e).__name__ for e in exception_chain(outer)]
    ['RuntimeError', 'KeyError']
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def our_error(exc: BaseException | None) -> StreamLearnerError | None:
    """The :class:`StreamLearnerError` in ``exc``'s chain (e.g. a sink's, which Bytewax wrapped in its own), if any."""
    return next((e for e in exception_chain(exc) if isinstance(e, StreamLearnerError)), None)


def peer_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is Bytewax's panic when a cluster connection breaks.

    Bytewax gives it no type of its own: it is pyo3's ``PanicException``
    with timely's text, "Send thread panic" or "Receive thread panic". Read
    against Bytewax ==0.21.1, the version pyproject pins; a test runs a real
    two-process cluster and kills one.
    """
    return type(exc).__name__ == "PanicException" and "thread panic" in str(exc)


def _interrupted(exc: BaseException) -> bool:
    return any(isinstance(e, KeyboardInterrupt) for e in exception_chain(exc))
