"""JSONL files written by a child process, off the learner's interpreter and GIL.

Encoding records as JSON costs about 5% of an embedded run's CPU on the
Bytewax worker thread. :class:`JsonlWriter` moves it, and the writes, to a
child process: the parent only ``marshal``\\ s each batch and sends it, as
one message, down a pipe (for 100,000 prediction records in batches of
1000, about 20 ms of the parent's CPU instead of 95 when they come as
:class:`~stream_learner.predictions.Predictions`, sent as their wire
tuple; 43 instead of 62 as lists of dicts); the child encodes each
record exactly as the in-process sink did
(``orjson.dumps(record, option=OPT_NON_STR_KEYS | OPT_APPEND_NEWLINE)``)
and appends it to the file:

* The parent prepares the file itself (creates its folder, creates or
  truncates it to the resumed size), so opening fails where it always
  did, and knows its size until the first write. The child starts on the
  first non-empty :meth:`JsonlWriter.write`: a sink that receives nothing
  starts none.
* :meth:`JsonlWriter.write` blocks only while the pipe (widened to 1 MiB)
  is full: that is the back-pressure. A batch that marshal refuses (a
  value of another type: a ``datetime``, an enum, a ``str`` subclass) is
  encoded in the parent, with the same options, and sent as bytes.
  (marshal carries numpy values and other buffers as bytes, which orjson
  refuses, as it refused the numpy values themselves.)
* :meth:`JsonlWriter.size` returns the file's size once everything written
  before it is flushed to the file (a round trip to the child).
* An error in the child (a record orjson refuses, a full disk) is reported
  to the parent and raised as :class:`~stream_learner.errors.SinkError`
  by the next call; so is the child's death. No call waits on a dead
  child: a write to its pipe fails at once (no other process holds the
  pipe's read end), and a wait for its answer ends at its EOF.
  A child that is alive is waited for as long as it takes, as a write to
  the file was before.
* The child runs in a session of its own, so a terminal's Ctrl-C reaches
  only the parent (which finishes the stream and closes the sink), and it
  exits as soon as its parent dies: the commands pipe's EOF, or a watch on
  the parent's pid where a process the parent forked still holds that pipe.
  A ``kill -9`` leaves no orphan.

Start: ``python -S -m connectors.jsonl_child`` (:mod:`connectors.jsonl_child`)
by ``subprocess`` (never a fork of the parent, which runs Bytewax's Rust
threads), with the two pipe ends passed as file descriptors. Unlike
``multiprocessing``'s ``spawn`` and ``forkserver``, which run the parent's
main script again in the child (a script that imports Bytewax and river:
about a second a child), the child imports only orjson and marshal: about
35 ms of CPU. On a two-core machine that start-up is taken from the
learner's core while it lasts, so one file, the predictions, gets a
process; files that receive a few records (metrics, dead letters) are
written in the calling thread by :class:`InlineJsonlWriter`, with the
same bytes, sizes and errors (a failure is raised by the call that
meets it). Each file keeps its own errors, flushes and back-pressure.

This module imports neither Bytewax nor Kafka (the Kafka children take
:func:`widen_pipe` from here).
"""

from __future__ import annotations

import logging
import marshal
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NoReturn

import orjson

from connectors.jsonl_child import FLUSH, cannot_encode, cannot_write, encode_items
from stream_learner.errors import SinkError
from stream_learner.predictions import Predictions

logger = logging.getLogger(__name__)

_ROOT = str(Path(__file__).resolve().parent.parent)  # where ``connectors`` is importable from

Item = list[dict[str, Any]] | Predictions


def prepare_file(path: Path, resume_size: int | None) -> None:
    """Create ``path`` (and its folder) empty, or truncate it to ``resume_size`` bytes (a recovered run drops what was written after the recovered epoch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("r+b" if resume_size is not None and path.exists() else "wb") as file:
        if resume_size is not None:
            file.truncate(resume_size)


def complete_lines_size(path: Path, block: int = 1 << 16) -> int:
    """The size of ``path`` up to the end of its last complete line: where an appending run writes (a line a crash cut short is dropped).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> _ = path.write_bytes(b'{"a":1}\\n{"a":'); complete_lines_size(path)
    8
    """
    with path.open("rb") as file:
        end = file.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - block)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0


class JsonlWriter:
    """Appends records to one JSONL file from a child process (one caller at a time).

    Args:
        path: the file; its folder is created.
        resume_size: truncate the file to this many bytes (a recovered run
            drops what was written after the recovered epoch); ``None``
            starts an empty file.

    The parent creates or truncates the file here, and raises ``OSError``
    where it cannot, as an in-process writer would.
    """

    def __init__(self, path: str | Path, resume_size: int | None = None) -> None:
        self.path = Path(path)
        prepare_file(self.path, resume_size)
        self._size = resume_size or 0  # the file's size once the child has written everything sent
        self._unflushed = False  # sent since the last size()
        self._process: Any = None
        self._commands: Connection | None = None
        self._replies: Connection | None = None
        self._error: SinkError | None = None  # the child's failure, raised by every later call
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return self._process.pid if self._process is not None else None

    def write(self, items: Iterable[Item]) -> None:
        """Send a batch of items (lists of JSON-able dicts, or :class:`Predictions`) to be appended, in order."""
        wire = [item.to_wire() if type(item) is Predictions else item if type(item) is list else list(item) for item in items if item]
        if not wire:
            return
        try:
            payload = marshal.dumps(wire)
        except ValueError:  # a value marshal cannot carry: encode the batch here
            payload = marshal.dumps(encoded(self.path, wire))
        self._send(payload)
        self._unflushed = True

    def size(self) -> int:
        """The file's size, once everything written before this call is in the file."""
        self._raise_if_failed()
        if self._unflushed:
            self._send(FLUSH)
            self._size = self._receive()
            self._unflushed = False
        return self._size

    def close(self) -> None:
        """Flush and stop the child. Idempotent.

        Raises :class:`SinkError` if the flush fails; a failure that an
        earlier call raised is not raised again.
        """
        if self._closed:
            return
        try:
            if self._error is None:
                self.size()
        finally:
            self._closed = True
            self._stop(wait=False)  # flushed above: the child only has to exit

    # --- internals ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._closed:
            raise SinkError(f"the writer of {self.path} is closed")
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()
        # -S: no ``site``; what the child imports is found on this path (``connectors``, then orjson)
        path = [_ROOT, os.path.dirname(os.path.dirname(orjson.__file__)), os.environ.get("PYTHONPATH")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
        # its own session: a terminal's Ctrl-C reaches the parent, which finishes the stream and closes the sink
        self._process = subprocess.Popen(
            [sys.executable, "-S", "-m", "connectors.jsonl_child", str(commands_r), str(replies_w), os.path.abspath(self.path), str(os.getpid())],
            pass_fds=(commands_r, replies_w),
            env=env,
            start_new_session=True,
        )
        os.close(commands_r)  # the child holds the only reader: its exit breaks our pipe
        os.close(replies_w)  # and the only writer: its exit is our EOF
        self._commands, self._replies = Connection(commands_w, readable=False), Connection(replies_r, writable=False)
        widen_pipe(self._commands)
        logger.debug("JSONL writer process %d started for %s", self._process.pid, self.path)

    def _send(self, payload: bytes) -> None:
        self._raise_if_failed()
        if self._process is None:
            self._start()
        try:
            self._commands.send_bytes(payload)  # type: ignore[union-attr]
        except OSError:  # a broken pipe: the child is gone
            self._fail()

    def _receive(self) -> int:
        """The child's answer to a flush (its error, or its death, raised)."""
        replies = self._replies
        wait([replies])  # type: ignore[list-item]  # an answer, or EOF: the child ended
        try:
            kind, value = marshal.loads(replies.recv_bytes())  # type: ignore[union-attr]
        except (EOFError, OSError):
            self._fail()
        if kind == "error":
            self._fail(value)
        return value

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._replies is not None and self._replies.poll():  # only an error (or EOF) arrives unasked
            self._receive()

    def _fail(self, message: str | None = None) -> NoReturn:
        """Remember and raise the child's failure: its own report, else how it ended."""
        if message is None:
            try:
                while message is None and self._replies.poll(1.0):  # type: ignore[union-attr]
                    kind, value = marshal.loads(self._replies.recv_bytes())  # type: ignore[union-attr]
                    message = value if kind == "error" else None
            except (EOFError, OSError):
                pass
        if message is None:
            try:
                code = self._process.wait(1.0)
            except subprocess.TimeoutExpired:
                code = None
            message = f"the JSONL writer process of {self.path} exited unexpectedly (exit code {code})"
        self._error = SinkError(message)
        self._stop()
        raise self._error

    def _stop(self, wait: bool = True) -> None:
        """End the child (it flushes and closes the file on EOF) and release the pipes.

        ``wait=False`` (a clean close, everything already flushed): the child
        is reaped by a thread, so the caller does not wait the ~15 ms of its
        interpreter's exit.
        """
        process, self._process = self._process, None
        if process is None:
            return
        self._commands.close()  # type: ignore[union-attr]  # EOF: the child closes the file and exits
        self._replies.close()  # type: ignore[union-attr]
        if wait:
            _reap(process)
        else:
            threading.Thread(target=_reap, args=(process,), name="jsonl-writer-reaper", daemon=True).start()


class InlineJsonlWriter:
    """Appends records to one JSONL file from the calling thread: :class:`JsonlWriter`'s bytes, sizes and errors, no process.

    For files that receive a few records (metrics, dead letters), where a
    writer process's start-up would cost more CPU than it saves.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> writer = InlineJsonlWriter(path)
    >>> writer.write([[{"accuracy": 0.5}]]); writer.size(), path.read_bytes()
    (17, b'{"accuracy":0.5}\\n')
    >>> writer.close()
    """

    def __init__(self, path: str | Path, resume_size: int | None = None) -> None:
        self.path = Path(path)
        prepare_file(self.path, resume_size)
        self._file = self.path.open("ab")  # at the prepared file's end: its position is its size
        self._error: SinkError | None = None  # the first failure, raised by every later call

    def write(self, items: Iterable[Item]) -> None:
        """Encode a batch of items (lists of JSON-able dicts, or :class:`Predictions`) and append it."""
        self._raise_if_failed()
        data = self._fail_on_error(encoded, self.path, items)
        if data:
            self._fail_on_error(self._file.write, data)

    def size(self) -> int:
        """The file's size, everything written before this call in it."""
        self._raise_if_failed()
        self._fail_on_error(self._file.flush)
        return self._file.tell()

    def close(self) -> None:
        """Flush and close the file. Idempotent; a failure that an earlier call raised is not raised again."""
        if self._file.closed:
            return
        try:
            if self._error is None:
                self._fail_on_error(self._file.flush)
        finally:
            try:
                self._file.close()
            except OSError:  # its flush again, after a failure already raised: that buffer cannot be written
                pass

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._file.closed:
            raise SinkError(f"the writer of {self.path} is closed")

    def _fail_on_error(self, call: Any, *args: Any) -> Any:
        """``call(*args)``, with an OS error remembered and raised as :class:`SinkError` (as the writer process reports it)."""
        try:
            return call(*args)
        except OSError as exc:
            self._error = SinkError(cannot_write(self.path, exc))
        except SinkError as exc:
            self._error = exc
        raise self._error


def encoded(path: Path, items: Iterable[Any]) -> bytes:
    """The JSONL lines of a batch for ``path``; a record orjson refuses is a :class:`SinkError` naming the file."""
    try:
        return encode_items(items)
    except orjson.JSONEncodeError as exc:
        raise SinkError(cannot_encode(path, exc)) from None


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a child told to stop (killed after 5 s)."""
    try:
        process.wait(5.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5.0)
    logger.debug("JSONL writer process %d stopped (exit code %s)", process.pid, process.returncode)


def widen_pipe(connection: Any, size: int = 1 << 20) -> None:
    """Let a pipe (a file descriptor, or an object with ``fileno()``) hold ``size`` bytes (Linux; the default 64 KiB holds less than one batch), where allowed."""
    try:
        import fcntl

        fcntl.fcntl(connection, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass
