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
  (most runs' dead letters) starts none.
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

Start: ``python -m connectors.jsonl_writer`` by ``subprocess`` (never a
fork of the parent, which runs Bytewax's Rust threads), with the two pipe
ends passed as file descriptors. Unlike ``multiprocessing``'s ``spawn`` and
``forkserver``, which run the parent's main script again in the child (a
script that imports Bytewax and river: about a second a child), the child
imports only this module: about 0.1 s of CPU, on the other core, and
about a millisecond of the parent's. One child per file, started at its
first write: the test suite's few dozen writer children do not show in its
time, and each file keeps its own errors, flushes and back-pressure.

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
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NoReturn

import orjson

from stream_learner.errors import SinkError
from stream_learner.predictions import Predictions, records_of

logger = logging.getLogger(__name__)

_JSONL = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
_FLUSH = b""  # the one message marshal never produces

Item = list[dict[str, Any]] | Predictions


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("r+b" if resume_size is not None and self.path.exists() else "wb") as file:
            if resume_size is not None:
                file.truncate(resume_size)  # drop what was written after the recovered epoch
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
            payload = marshal.dumps(self._encode(wire))
        self._send(payload)
        self._unflushed = True

    def size(self) -> int:
        """The file's size, once everything written before this call is in the file."""
        self._raise_if_failed()
        if self._unflushed:
            self._send(_FLUSH)
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

    def _encode(self, items: list[Any]) -> bytes:
        try:
            return encode_items(items)
        except orjson.JSONEncodeError as exc:
            raise SinkError(f"cannot encode a record for {self.path}: {exc}") from None

    def _start(self) -> None:
        if self._closed:
            raise SinkError(f"the writer of {self.path} is closed")
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()
        root = str(Path(__file__).resolve().parent.parent)  # where ``connectors`` is importable from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        # its own session: a terminal's Ctrl-C reaches the parent, which finishes the stream and closes the sink
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(commands_r), str(replies_w), os.path.abspath(self.path), str(os.getpid())],
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
            kind, value = replies.recv()  # type: ignore[union-attr]
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
                    kind, value = self._replies.recv()  # type: ignore[union-attr]
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


def encode_items(items: Iterable[Item | tuple[Any, ...]]) -> bytes:
    """The JSONL lines of a batch: each item a list of records, a :class:`Predictions`, or its wire tuple."""
    dumps = orjson.dumps
    buffer = bytearray()  # appending each line frees it at once; joining a list of them was 5x slower
    for item in items:
        for record in records_of(item):
            buffer += dumps(record, option=_JSONL)
    return bytes(buffer)


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a child told to stop (killed after 5 s)."""
    try:
        process.wait(5.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5.0)
    logger.debug("JSONL writer process %d stopped (exit code %s)", process.pid, process.returncode)


# --- the child ------------------------------------------------------------------------------------


def widen_pipe(connection: Any, size: int = 1 << 20) -> None:
    """Let a pipe hold ``size`` bytes (Linux; the default 64 KiB holds less than one batch), where allowed."""
    try:
        import fcntl

        fcntl.fcntl(connection.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass


def _exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this (child) process soon after its parent (``parent``, its pid) dies, also where a process the parent forked still holds the commands pipe."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(commands: Connection, replies: Connection, path: str, parent: int) -> None:
    """Append each batch to the file, answer flushes with its size, report the first error and stop.

    The parent holds the only writer of ``commands``: its end, even by
    SIGKILL, is this loop's EOF (and a watch on the parent's pid ends it
    where a forked process of the parent still holds that writer).
    """
    _exit_with_parent(parent)
    try:
        with open(path, "ab") as file:
            while True:
                try:
                    message = commands.recv_bytes()
                except EOFError:  # the parent is done
                    break
                if message == _FLUSH:
                    file.flush()
                    replies.send(("size", file.tell()))
                    continue
                payload = marshal.loads(message)
                file.write(payload if type(payload) is bytes else encode_items(payload))
    except OSError as exc:
        _report(replies, f"cannot write {path}: {exc.strerror or exc}")
    except orjson.JSONEncodeError as exc:
        hint = " (marshal carries numpy values and other buffers as bytes)" if str(exc).endswith("bytes") else ""
        _report(replies, f"cannot encode a record for {path}: {exc}{hint}")
    except Exception as exc:  # noqa: BLE001 - any failure is the parent's to raise
        _report(replies, f"the JSONL writer of {path} failed: {type(exc).__name__}: {exc}")


def _report(replies: Connection, message: str) -> None:
    try:
        replies.send(("error", message))
    except OSError:  # the parent is gone
        pass


if __name__ == "__main__":  # started by JsonlWriter: python -m connectors.jsonl_writer COMMANDS_FD REPLIES_FD PATH PARENT_PID
    _child_main(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), sys.argv[3], int(sys.argv[4]))
