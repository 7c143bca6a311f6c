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
  pipe's read end), and a wait for its answer also watches its sentinel.
  A child that is alive is waited for as long as it takes, as a write to
  the file was before.
* The child ignores SIGINT (a terminal's Ctrl-C reaches the whole process
  group; the parent finishes and closes the sink), once started: one in
  the few milliseconds of its start-up ends it, and the next call raises.
  It exits as soon as its parent dies, so a ``kill -9`` leaves no orphan.

Start method: ``forkserver``, never ``fork`` (the parent runs Bytewax's Rust
threads), with this module preloaded in the server. Measured here (2
cores, a child that answers once): ``spawn`` costs about 65 ms of wall time
and 65 ms of CPU per child (a new interpreter and its imports);
``forkserver`` about 6 ms and 5 ms, once its server runs (its start: about
70-100 ms, once per process); the parent's own share is under 1 ms either
way. Both would also run the parent's main script again in every child
(as ``__mp_main__``; about a second each for a benchmark script that
imports Bytewax and river): the writer's child is launched without it
(:class:`_Popen`), so it imports nothing but this module, and a script that
writes JSONL needs no ``if __name__ == "__main__":`` guard for it.

One child per file, not one writer shared by the sinks of a process: at
6 ms a child, and none for a sink that gets nothing (the unit, embedded-run
and CLI tests start 35 in all), the cost does not show in the test suite's
time, and one child per file keeps each file's errors, flushes and
back-pressure its own, with no routing and no locks.

This module imports neither Bytewax nor Kafka. :func:`widen_pipe` and
:func:`exit_with_parent` repeat :mod:`connectors.kafka_producer`'s, which
imports kafka-python: ~0.2 s that an embedded run does not otherwise pay.
"""

from __future__ import annotations

import io
import logging
import marshal
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable
from multiprocessing import context, forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NoReturn

import orjson

from stream_learner.errors import SinkError
from stream_learner.predictions import Predictions

logger = logging.getLogger(__name__)

CONTEXT = multiprocessing.get_context("forkserver")  # the parent runs Bytewax's Rust threads: never fork it
_JSONL = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
_FLUSH = b""  # the one message marshal never produces

Item = list[dict[str, Any]] | Predictions


_preloaded = False


def _preload() -> None:
    """Have the fork server import this module once, and nothing else (it must be asked before the server starts)."""
    global _preloaded
    if not _preloaded:
        CONTEXT.set_forkserver_preload([__name__])
        _preloaded = True


class _Popen(popen_forkserver.Popen):
    """The fork server's ``Popen``, less the main module: a child forked from the server imports no script.

    Both ``spawn`` and ``forkserver`` children run the parent's main script
    again (as ``__mp_main__``) before their target: a script that imports
    Bytewax and river costs each child about a second (Python 3.11's fork
    server does not preload ``__main__`` although it is asked to). The
    writer needs only this module, which the server has imported, so its
    preparation data names no main module. Otherwise this is the 3.11
    ``popen_forkserver.Popen._launch``.
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        parent_w = os.dup(w)  # kept open: the child's sentinel of this process (multiprocessing.parent_process())
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _WriterProcess(CONTEXT.Process):  # type: ignore[name-defined, misc]
    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


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
            self._stop()

    # --- internals ------------------------------------------------------------------------------

    def _encode(self, items: list[Any]) -> bytes:
        try:
            return encode_items(items)
        except orjson.JSONEncodeError as exc:
            raise SinkError(f"cannot encode a record for {self.path}: {exc}") from None

    def _start(self) -> None:
        if self._closed:
            raise SinkError(f"the writer of {self.path} is closed")
        _preload()
        commands_r, self._commands = CONTEXT.Pipe(duplex=False)
        self._replies, replies_w = CONTEXT.Pipe(duplex=False)
        widen_pipe(self._commands)
        self._process = _WriterProcess(
            target=_child_main, args=(commands_r, replies_w, os.path.abspath(self.path)), name=f"stream-learner-jsonl-{self.path.name}", daemon=True
        )
        self._process.start()
        commands_r.close()  # the child holds the only reader: its exit breaks our pipe
        replies_w.close()  # and the only writer: its exit is our EOF
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
        replies, sentinel = self._replies, self._process.sentinel
        if replies not in wait([replies, sentinel]) and not replies.poll():  # type: ignore[list-item, union-attr]
            self._fail()  # it ended without a word
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
            self._process.join(1.0)
            message = f"the JSONL writer process of {self.path} exited unexpectedly (exit code {self._process.exitcode})"
        self._error = SinkError(message)
        self._stop()
        raise self._error

    def _stop(self) -> None:
        """End the child (it flushes and closes the file on EOF) and release the pipes."""
        process, self._process = self._process, None
        if process is None:
            return
        self._commands.close()  # type: ignore[union-attr]
        process.join(5.0)
        if process.is_alive():
            process.kill()
            process.join(5.0)
        self._replies.close()  # type: ignore[union-attr]
        logger.debug("JSONL writer process %d stopped (exit code %s)", process.pid, process.exitcode)


def encode_items(items: Iterable[Item | tuple[Any, ...]]) -> bytes:
    """The JSONL lines of a batch: each item a list of records, a :class:`Predictions`, or its wire tuple."""
    dumps = orjson.dumps
    buffer = bytearray()  # appending each line frees it at once; joining a list of them was 5x slower
    for item in items:
        for record in Predictions.from_wire(item) if type(item) is tuple else item:
            buffer += dumps(record, option=_JSONL)
    return bytes(buffer)


# --- the child ------------------------------------------------------------------------------------


def widen_pipe(connection: Any, size: int = 1 << 20) -> None:
    """Let a pipe hold ``size`` bytes (Linux; the default 64 KiB holds less than one batch), where allowed."""
    try:
        import fcntl

        fcntl.fcntl(connection.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass


def exit_with_parent() -> None:
    """End this (child) process as soon as the parent dies (even by SIGKILL)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(commands: Connection, replies: Connection, path: str) -> None:
    """Append each batch to the file, answer flushes with its size, report the first error and stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
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
