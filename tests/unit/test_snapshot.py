from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from store_rows import set_envelope, set_pointer

from connectors.local_store import LocalSnapshotStore
from connectors.snapshot_writer import SnapshotWriter
from stream_learner.errors import SnapshotError
from stream_learner.snapshot import Snapshot, load_latest_valid, open_envelope, read_header, seal

KEY = b"secret"


def _blob(payload: bytes, events: int = 1) -> bytes:
    return seal(payload, signing_key=KEY, key="k", learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events})


def test_envelope_round_trip_carries_the_header() -> None:
    header, payload = open_envelope(_blob(b"state", 7), signing_key=KEY)
    assert payload == b"state"
    assert (header.format_version, header.key, header.learner_kind, header.events_seen, header.source_offsets) == (2, "k", "river", 7, {0: 7})
    assert header.created_at > 0 and len(header.checksum) == 64 and len(header.signature) == 64


def test_altered_payload_is_refused() -> None:
    blob = _blob(b"state")
    with pytest.raises(SnapshotError, match="checksum"):
        open_envelope(blob[:-1] + b"X", signing_key=KEY)


def test_altered_header_is_refused_even_with_a_matching_checksum() -> None:
    blob = _blob(b"state", 7)
    tampered = blob.replace(b'"events_seen":7', b'"events_seen":9')
    assert tampered != blob
    with pytest.raises(SnapshotError, match="signature"):
        open_envelope(tampered, signing_key=KEY)


def test_garbage_is_a_clear_snapshot_error() -> None:
    with pytest.raises(SnapshotError, match="corrupt"):
        read_header(b"hello")


def test_store_falls_back_to_the_previous_valid_version(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path, app="a")
    store.save("k", _blob(b"one", 1))
    v2 = store.save("k", _blob(b"two", 2))
    set_envelope(store, "k", v2, store.load("k", v2)[:-1] + b"!")
    header, payload, refusals = load_latest_valid(store, "k", KEY)
    assert payload == b"one" and header.events_seen == 1
    assert len(refusals) == 1 and "version 2" in refusals[0]


def test_store_with_no_valid_version_says_so(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path)
    assert load_latest_valid(store, "k", KEY) is None
    store.save("k", _blob(b"one"))
    with pytest.raises(SnapshotError, match="no valid snapshot left"):
        load_latest_valid(store, "k", b"wrong key")


class _CountingReads:
    """A store whose reads are counted (a read is a round trip to Redis)."""

    def __init__(self, store: LocalSnapshotStore) -> None:
        self.store, self.reads = store, 0

    def __getattr__(self, name: str) -> object:
        if name in {"load_latest", "latest", "versions", "boundary_versions", "load"}:
            self.reads += 1
        return getattr(self.store, name)


def test_a_key_never_snapshotted_costs_two_reads_and_a_missing_pointer_still_falls_back(tmp_path: Path) -> None:
    """A fleet's new keys each look for a snapshot: no pointer and no version is two reads, not a full search (four)."""
    counted = _CountingReads(LocalSnapshotStore(tmp_path))
    assert load_latest_valid(counted, "new", KEY) is None  # type: ignore[arg-type]
    assert counted.reads == 2
    counted.store.save("k", _blob(b"one", 1))
    counted.store.save("k", _blob(b"two", 2))
    set_pointer(counted.store, "k", None)  # the versions stay
    found = load_latest_valid(counted, "k", KEY)  # type: ignore[arg-type]
    assert found is not None and found[1] == b"two" and "pointer" in found[2][0]


def test_store_retains_the_last_versions_and_manages_latest(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path, retain=3)
    for i in range(5):
        store.save("key/with slash", _blob(b"%d" % i))
    assert store.keys() == ["key/with slash"]
    assert store.versions("key/with slash") == [3, 4, 5]
    store.set_latest("key/with slash", 4)
    assert store.latest("key/with slash") == 4
    store.delete("key/with slash", 4)
    assert store.latest("key/with slash") == 5
    with pytest.raises(SnapshotError):
        store.set_latest("key/with slash", 1)
    store.delete("key/with slash")
    assert store.keys() == [] and store.latest("key/with slash") is None


class _FlakyStore(LocalSnapshotStore):
    """A local store whose saves fail while ``down`` (a store that cannot be reached)."""

    def __init__(self, root: Path, fail_first: int = 0) -> None:
        super().__init__(root)
        self.down = False
        self.fail_first = fail_first
        self.attempts = 0

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        self.attempts += 1
        if self.down or self.attempts <= self.fail_first:
            raise ConnectionError("store unreachable")
        return super().save_many(items)


def _snap(events: int) -> Snapshot:
    return Snapshot("k", "river", "none", events, {0: events}, b"state-%d" % events)


def test_a_refused_snapshot_is_retried_until_the_store_saves_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _FlakyStore(tmp_path, fail_first=2)
    saved: list[int | None] = []
    writer = SnapshotWriter(store, KEY, lambda key, version: saved.append(version))
    with caplog.at_level(logging.WARNING):
        writer.submit([_snap(7)])
        writer.close()
    assert saved == [None, None, 1] and store.attempts == 3
    assert open_envelope(store.load("k", 1), signing_key=KEY)[1] == b"state-7"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "not saved (store unreachable): retrying" in messages[0] and "saves again, after 2 failed" in messages[1]


def test_a_newer_snapshot_replaces_one_waiting_for_a_retry(tmp_path: Path) -> None:
    store = _FlakyStore(tmp_path)
    store.down = True
    writer = SnapshotWriter(store, KEY)
    writer.submit([_snap(1)])
    while store.attempts == 0:
        threading.Event().wait(0.01)
    writer.submit([_snap(2)])
    store.down = False
    writer.close()
    assert store.versions("k") == [1]
    assert open_envelope(store.load("k", 1), signing_key=KEY)[0].events_seen == 2


def test_closing_gives_up_on_a_store_that_stays_down_and_names_the_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _FlakyStore(tmp_path)
    store.down = True
    writer = SnapshotWriter(store, KEY)
    with caplog.at_level(logging.WARNING):
        writer.submit([_snap(1)])
        writer.close(timeout=0.5)
    assert store.versions("k") == []
    assert "the final snapshots of ['k'] were not saved" in caplog.records[-1].getMessage()
