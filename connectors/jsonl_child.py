"""The JSONL writer's child process: decode each batch, encode its records as JSON lines, append them.

Started by :class:`connectors.jsonl_writer.JsonlWriter` as
``python -S -m connectors.jsonl_child COMMANDS_FD REPLIES_FD PATH PARENT_PID``.
Its start-up is CPU that the learner's core shares on a small machine, so
it is kept short: ``-S`` skips ``site`` (the parent puts this package and
orjson on ``PYTHONPATH``), and this module imports only ``orjson``,
``marshal`` and :mod:`stream_learner.predictions` (about 35 ms of CPU in
all, where ``site``, ``pathlib`` and ``multiprocessing`` took 70).

The pipes carry the frames of :meth:`multiprocessing.connection.Connection.send_bytes`
(a 4-byte big-endian signed length, or -1 and an 8-byte length, then the
bytes), which the parent's ``Connection`` writes and reads; this side
reads and writes them by hand rather than import ``multiprocessing``.
Each command is a marshalled batch (a list of items, or ``bytes`` the
parent encoded itself) or the empty flush request; each reply is a
marshalled ``("size", file size)`` after a flush, or ``("error", message)``,
after which the child stops.
"""

from __future__ import annotations

import marshal
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, BinaryIO

import orjson

from stream_learner.predictions import records_of

JSONL = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
FLUSH = b""  # the one message marshal never produces


def encode_items(items: Iterable[Any]) -> bytes:
    """The JSONL lines of a batch: each item a list of records, a :class:`~stream_learner.predictions.Predictions`, or its wire tuple."""
    dumps = orjson.dumps
    buffer = bytearray()  # appending each line frees it at once; joining a list of them was 5x slower
    for item in items:
        for record in records_of(item):
            buffer += dumps(record, option=JSONL)
    return bytes(buffer)


def cannot_write(path: object, exc: OSError) -> str:
    """The message of a file that cannot be written, the same from the child, the inline writer and the sink."""
    return f"cannot write {path}: {exc.strerror or exc}"


def cannot_encode(path: object, exc: Exception) -> str:
    """The message of a record orjson refuses, the same from the child and the inline writer."""
    return f"cannot encode a record for {path}: {exc}"


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next message of ``Connection.send_bytes`` framing, or ``None`` at EOF."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    size = int.from_bytes(header, "big", signed=True)
    if size == -1:
        size = int.from_bytes(stream.read(8), "big")
    message = stream.read(size)
    return message if len(message) == size else None


def send_frame(fd: int, value: Any) -> None:
    """``value`` marshalled, framed for ``Connection.recv_bytes``."""
    data = marshal.dumps(value)
    data = len(data).to_bytes(4, "big", signed=True) + data
    while data:
        data = data[os.write(fd, data) :]


def exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this process soon after its parent (``parent``, its pid) dies, also where a process the parent forked still holds the commands pipe."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(commands: BinaryIO, replies: int, path: str, parent: int) -> None:
    """Append each batch to the file, answer flushes with its size, report the first error and stop.

    The parent holds the only writer of ``commands``: its end, even by
    SIGKILL, is this loop's EOF (and a watch on the parent's pid ends it
    where a forked process of the parent still holds that writer).
    """
    exit_with_parent(parent)
    try:
        with open(path, "ab") as file:
            while (message := read_frame(commands)) is not None:
                if message == FLUSH:
                    file.flush()
                    send_frame(replies, ("size", file.tell()))
                    continue
                payload = marshal.loads(message)
                file.write(payload if type(payload) is bytes else encode_items(payload))
    except OSError as exc:
        report(replies, cannot_write(path, exc))
    except orjson.JSONEncodeError as exc:
        hint = " (marshal carries numpy values and other buffers as bytes)" if str(exc).endswith("bytes") else ""
        report(replies, cannot_encode(path, exc) + hint)
    except Exception as exc:  # noqa: BLE001 - any failure is the parent's to raise
        report(replies, f"the JSONL writer of {path} failed: {type(exc).__name__}: {exc}")


def report(replies: int, message: str) -> None:
    try:
        send_frame(replies, ("error", message))
    except OSError:  # the parent is gone
        pass


if __name__ == "__main__":
    main(open(int(sys.argv[1]), "rb"), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
