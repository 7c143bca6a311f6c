"""Snapshot rounds on the local store: batches, a crash in the middle of one, the layout of earlier releases, damage confined to one entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from store_rows import set_envelope

from connectors import snapshot_writer
from connectors.local_store import LocalSnapshotStore, _safe
from connectors.snapshot_writer import SnapshotWriter
from stream_learner.errors import SnapshotError
from stream_learner.snapshot import Snapshot, load_latest_valid, read_header, seal

KEY = b"secret"


def _blob(key: str, events: int) -> bytes:
    return seal(
        b"%s@%d" % (key.encode(), events), signing_key=KEY, key=key, learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events}, created_at=1.0
    )


def test_a_round_saves_every_key_with_retention_in_one_batch(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path, app="a", retain=2)
    keys = [f"k{i}" for i in range(300)]
    for events in (1, 2, 3):
        assert store.save_many([(k, _blob(k, events)) for k in keys]) == [events] * len(keys)
    assert store.keys() == sorted(keys)
    assert {tuple(store.versions(k)) for k in keys} == {(2, 3)}  # the oldest retired in the same round
    assert store.load_latest("k7") == (3, _blob("k7", 3)) and store.load("k7", 2) == _blob("k7", 2)
    assert store.save_many([("x", b"one"), ("x", b"two")]) == [1, 2] and store.load_latest("x") == (2, b"two")  # a key twice: in order
    assert store.save_many([]) == []


def test_a_single_save_and_load_latest_agree_with_a_round(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path, retain=3)
    assert store.load_latest("k") is None and store.keys() == [] and not store.path.exists()  # reading creates nothing
    assert store.save("k", b"a") == 1 and store.save_many([("k", b"b")]) == [2]
    store.set_latest("k", 1)
    assert store.load_latest("k") == (1, b"a") and store.latest("k") == 1


def test_a_damaged_entry_in_a_round_is_refused_alone(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path)
    store.save_many([(k, _blob(k, 1)) for k in ("a", "b", "c")])
    store.save_many([(k, _blob(k, 2)) for k in ("a", "b", "c")])
    set_envelope(store, "b", 2, _blob("b", 2)[:-1] + b"!")  # one entry of the second round, altered
    loaded = {k: load_latest_valid(store, k, KEY) for k in ("a", "b", "c")}
    assert {k: (found[0].events_seen, found[2]) for k, found in loaded.items() if found} == {
        "a": (2, []),
        "b": (1, ["version 2 of 'b' refused: snapshot checksum does not match its payload (the snapshot is corrupt or was altered)"]),
        "c": (2, []),
    }


_KILLED_WRITER = """
import os
import sys
from connectors.local_store import LocalSnapshotStore

class Stalling:
    # a round whose items stop coming half way, after the transaction began: the parent kills the writer there
    def __init__(self, items): self.items = items
    def __len__(self): return len(self.items)
    def __iter__(self):
        for i, item in enumerate(self.items):
            if i == len(self.items) // 2:
                print(os.path.getsize(store.path.with_name("snapshots.db-wal")), flush=True)
                sys.stdin.read()  # waits for the kill
            yield item

store = LocalSnapshotStore(sys.argv[1], app="a", retain=2)
keys = [f"k{i}" for i in range(2000)]
store.save_many([(k, b"round-1 " + k.encode() * 50) for k in keys])
print(os.path.getsize(store.path.with_name("snapshots.db-wal")), flush=True)
store.save_many(Stalling([(k, b"round-2 " + k.encode() * 800) for k in keys]))  # half of it outgrows SQLite's page cache: written, uncommitted
"""


def test_a_writer_killed_in_the_middle_of_a_round_leaves_the_round_before(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            committed, half = int(child.stdout.readline()), int(child.stdout.readline())
            assert half > committed + 1_000_000  # half of round 2 is in the log, not committed
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(30)
    store = LocalSnapshotStore(tmp_path, app="a", retain=2)
    assert len(store.keys()) == 2000
    assert {tuple(store.versions(k)) for k in store.keys()} == {(1,)}
    assert store.load_latest("k1999") == (1, b"round-1 " + b"k1999" * 50)
    assert store.save_many([("k0", b"next")]) == [2]  # and it takes the next round


def _write_earlier_layout(root: Path, app: str, key: str, blobs: list[bytes], pointer: bytes | None) -> Path:
    """What releases before the SQLite store wrote: ``ROOT/APP/KEY/v000001.snap`` per version and a ``LATEST`` file (a ``KEY`` file where the folder's name could not hold the key)."""
    folder = root / _safe(app) / _safe(key)
    folder.mkdir(parents=True)
    if folder.name != key.replace("/", "%2F") or len(key) > 200:
        (folder / "KEY").write_bytes(key.encode())
    for version, blob in enumerate(blobs, start=1):
        (folder / f"v{version:06d}.snap").write_bytes(blob)
    if pointer is not None:
        (folder / "LATEST").write_bytes(pointer)
    (folder / ".v000009.snap.123.tmp").write_bytes(b"half")  # a crash mid-write, in that layout: not a version
    return folder


def test_a_store_of_an_earlier_release_is_moved_in_on_open_and_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    long_key = "é" * 150
    folders = [
        _write_earlier_layout(tmp_path, "a", "sensor/1", [_blob("sensor/1", e) for e in (1, 2, 3)], b"2"),
        _write_earlier_layout(tmp_path, "a", long_key, [_blob(long_key, 5)], b"1"),
        _write_earlier_layout(tmp_path, "a", "damaged", [_blob("damaged", 7)], b"seven"),
    ]
    store = LocalSnapshotStore(tmp_path, app="a", retain=3)
    assert store.keys() == sorted(["sensor/1", long_key, "damaged"])
    assert not any(folder.exists() for folder in folders)
    assert store.versions("sensor/1") == [1, 2, 3] and store.load_latest("sensor/1") == (2, _blob("sensor/1", 2))  # an operator's restore kept
    assert read_header(store.load(long_key, 1)).key == long_key
    with pytest.raises(SnapshotError, match="latest pointer of 'damaged' is not a version number"):
        store.latest("damaged")
    assert load_latest_valid(store, "damaged", KEY)[0].events_seen == 7  # type: ignore[index]  # falls back as before
    assert store.save("sensor/1", _blob("sensor/1", 4)) == 4 and store.versions("sensor/1") == [2, 3, 4]
    assert LocalSnapshotStore(tmp_path, app="a").versions("sensor/1") == [2, 3, 4]  # opened again: nothing moved twice


def test_a_folder_left_by_an_interrupted_move_yields_to_the_database(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path, app="a")
    store.save_many([("k", b"new")])
    store.close()
    _write_earlier_layout(tmp_path, "a", "k", [b"old"], b"1")  # the folder a move committed but did not remove yet
    assert LocalSnapshotStore(tmp_path, app="a").load_latest("k") == (1, b"new")
    assert not (tmp_path / "a" / "k").exists()


class _CountingStore(LocalSnapshotStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.batches: list[int] = []

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        self.batches.append(len(items))
        return super().save_many(items)


def test_the_writer_saves_what_is_queued_as_one_batch(tmp_path: Path) -> None:
    store = _CountingStore(tmp_path)
    writer = SnapshotWriter(store, KEY)
    with writer._cond:  # hold the writer thread back while the round is submitted in parts, as the dataflow's batches do
        writer.submit([Snapshot(f"k{i}", "river", "none", 1, {0: 1}, b"s") for i in range(300)])
        writer.submit([Snapshot(f"k{i}", "river", "none", 2, {0: 2}, b"s") for i in range(200)])  # newer ones replace
    writer.close()
    assert store.batches == [300] and writer.rounds[0][0] == 300
    assert sorted(read_header(store.load(k, 1)).events_seen for k in store.keys()) == [1] * 100 + [2] * 200


def test_a_large_round_goes_in_bounded_batches_and_a_refused_one_takes_the_rest_to_the_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_writer, "BATCH_BYTES", 1)  # one envelope a batch
    store = LocalSnapshotStore(tmp_path)
    saved: list[tuple[str, int | None]] = []
    batches: list[list[str]] = []
    save_many = store.save_many

    def flaky(items: Sequence[tuple[str, bytes]]) -> list[int]:
        batches.append([key for key, _ in items])
        if len(batches) == 2:  # the second batch is refused, once
            raise ConnectionError("store unreachable")
        return save_many(items)

    monkeypatch.setattr(store, "save_many", flaky)
    writer = SnapshotWriter(store, KEY, lambda key, version: saved.append((key, version)))
    writer.submit([Snapshot(f"k{i}", "river", "none", 1, {0: 1}, b"s") for i in range(4)])
    writer.close()
    assert batches == [["k0"], ["k1"], ["k1"], ["k2"], ["k3"]]  # k1 refused, k2 and k3 not tried; then k1, k2, k3 after the retry delay
    assert saved == [("k0", 1), ("k1", None), ("k1", 1), ("k2", 1), ("k3", 1)]
    assert store.keys() == ["k0", "k1", "k2", "k3"]
