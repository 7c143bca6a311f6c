"""A snapshot's bytes read by two threads at once: the writer thread saving it and the stream's, whose undo journal starts again from it.

At the end of a stream, :meth:`KeyedLearner.finish` hands the journal the
final snapshot and so reads the round's snapshot before it
(:meth:`~stream_learner.learners.base.Journal.restart_at`) while the writer
thread may still be waiting for that round's child to save it. Each reader
must get the bytes; before, the second reader of a round's share was told
"the snapshot of 'b' was discarded" (and the snapshot was lost) and the
second reader of a key's own child reaped it again ("[Errno 10] No child
processes").

Each test holds the child until both readers are in: its state reads a
byte from a pipe the test writes only then.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.local_store import LocalSnapshotStore
from connectors.snapshot_writer import SnapshotWriter
from stream_learner.errors import SnapshotError
from stream_learner.forked_pickle import CAN_FORK, ForkedPickle
from stream_learner.snapshot import RoundShare, Snapshot, SnapshotPart, read_header
from stream_learner.state import decode

pytestmark = pytest.mark.skipif(not CAN_FORK, reason="forked snapshots are for Linux")

KEY = b"secret"
GRACE_SECONDS = 0.5
"""How long both readers get to reach their wait before the child is let go.

A reader slower than that finds the bytes already collected: the test then
passes without having raced, and never fails because of the wait.
"""


class Gate:
    """A pipe a forked child waits on: its state is made only once :meth:`open` is called."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def held(self, state: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """A state function for a :class:`SnapshotPart`: waits for the gate (in the child), then gives ``state``."""

        def made() -> dict[str, Any]:
            os.read(self._read, 1)
            return state

        return made

    def open(self, children: int) -> None:
        os.write(self._write, b"x" * children)

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


@pytest.fixture
def gate() -> Iterator[Gate]:
    held = Gate()
    yield held
    held.close()


def part(key: str, state: Callable[[], dict[str, Any]], events: int = 1) -> SnapshotPart:
    return SnapshotPart(state, key, "river", "none", events, {0: events})


def read_together(readers: list[Callable[[], bytes]], gate: Gate, children: int) -> list[bytes | BaseException]:
    """Call each reader on a thread of its own while the children are held, then let them go; what each returned or raised."""
    results: list[bytes | BaseException] = [b""] * len(readers)
    started = [threading.Event() for _ in readers]

    def run(i: int) -> None:
        started[i].set()
        try:
            results[i] = readers[i]()
        except BaseException as exc:  # noqa: BLE001 - the test says what each reader got
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(readers))]
    for thread in threads:
        thread.start()
    for event in started:
        assert event.wait(30)
    for thread in threads:
        thread.join(GRACE_SECONDS)  # both wait for the child (a reader told to give up returns here)
    gate.open(children)
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    return results


def gone(pid: int) -> bool:
    """Whether ``pid`` is no child of ours any more (reaped)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_two_threads_reading_one_share_of_a_round_both_get_its_bytes(gate: Gate) -> None:
    a, b = Snapshot.round([part("a", lambda: {"n": 1}), part("b", gate.held({"n": 2}))], background=True)
    assert isinstance(b.pickled, RoundShare)
    writer_read, journal_read = read_together([lambda: b.payload, lambda: b.payload], gate, children=1)
    assert writer_read == journal_read and not isinstance(writer_read, BaseException)
    assert decode(writer_read) == {"n": 2}
    assert decode(a.payload) == {"n": 1}  # the other share is whole too


def test_two_threads_reading_a_snapshot_with_a_child_of_its_own_both_get_its_bytes_and_the_child_is_reaped_once(gate: Gate) -> None:
    [snap] = Snapshot.round([part("a", gate.held({"n": 1}))], background=True)
    assert isinstance(snap.pickled, ForkedPickle)
    writer_read, journal_read = read_together([lambda: snap.payload, lambda: snap.payload], gate, children=1)
    assert writer_read == journal_read and not isinstance(writer_read, BaseException)
    assert decode(writer_read) == {"n": 1}
    assert gone(snap.pickled._pid)


def test_a_discard_while_another_thread_reads_leaves_the_reader_its_bytes(gate: Gate) -> None:
    # the writer discards a superseded snapshot while the journal reads it: whoever comes first decides, and nothing is reaped twice
    [snap] = Snapshot.round([part("a", gate.held({"n": 1}))], background=True)

    def discard_then_read() -> bytes:
        snap.discard()
        return snap.payload

    reader, discarder = read_together([lambda: snap.payload, discard_then_read], gate, children=1)
    if isinstance(reader, BaseException):  # the discard came first: both are told so, the same way
        assert isinstance(discarder, SnapshotError) and str(reader) == str(discarder) and "discarded" in str(reader)
    else:  # the read came first: the discard keeps the bytes for everyone
        assert discarder == reader and decode(reader) == {"n": 1}
    assert gone(snap.pickled._pid)  # type: ignore[union-attr]


def test_a_failed_child_gives_every_reader_its_reason_every_time() -> None:
    reason = r"^the snapshot's child process failed: TypeError: a learner state holds a builtins.object, which is not plain data$"
    [alone] = Snapshot.round([part("a", lambda: {"bad": object()})], background=True)
    shared = Snapshot.round([part("a", lambda: {"n": 1}), part("b", lambda: {"bad": object()})], background=True)
    for snap in (alone, *shared):
        for _ in range(2):  # read again (the writer's retry, the journal): the same reason, not "discarded", not a second reap
            with pytest.raises(SnapshotError, match=reason):
                snap.payload  # noqa: B018


def test_the_writer_saves_a_round_the_stream_reads_at_the_same_time_with_a_boundary_snapshot_before_it(tmp_path: Path, gate: Gate, caplog: pytest.LogCaptureFixture) -> None:
    """The run's case: a boundary snapshot of key b and the round of b and a, and the stream reading b's share (its journal) while the writer waits for it."""
    store = LocalSnapshotStore(tmp_path)
    saved: list[tuple[str, int | None]] = []
    writer = SnapshotWriter(store, KEY, on_saved=lambda key, version: saved.append((key, version)))
    boundary = Snapshot.boundary(part("b", lambda: {"concept": 0}, events=10), concept=0)
    round_ = Snapshot.round([part("b", gate.held({"n": 13}), events=13), part("a", lambda: {"n": 12}, events=12)], background=True)
    with caplog.at_level(logging.ERROR, logger="connectors.snapshot_writer"):
        writer.submit([boundary, *round_])
        [journal_read] = read_together([lambda: round_[0].payload], gate, children=1)
        writer.close()
    assert not isinstance(journal_read, BaseException) and decode(journal_read) == {"n": 13}
    assert [record.getMessage() for record in caplog.records] == []
    assert saved == [("b", 1), ("b", 2), ("a", 1)]
    assert store.boundary_versions("b") == [1] and store.latest("b") == 2 and store.latest("a") == 1
    assert [read_header(store.load("b", v)).events_seen for v in (1, 2)] == [10, 13]
