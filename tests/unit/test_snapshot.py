from __future__ import annotations

from pathlib import Path

import pytest

from connectors.local_store import LocalSnapshotStore
from stream_learner.errors import SnapshotError
from stream_learner.snapshot import load_latest_valid, open_envelope, read_header, seal

KEY = b"secret"


def _blob(payload: bytes, events: int = 1) -> bytes:
    return seal(payload, signing_key=KEY, key="k", learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events})


def test_envelope_round_trip_carries_the_header() -> None:
    header, payload = open_envelope(_blob(b"state", 7), signing_key=KEY)
    assert payload == b"state"
    assert (header.format_version, header.key, header.learner_kind, header.events_seen, header.source_offsets) == (1, "k", "river", 7, {0: 7})
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
    path = tmp_path / "a" / "k" / f"v{v2:06d}.snap"
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    header, payload, refusals = load_latest_valid(store, "k", KEY)
    assert payload == b"one" and header.events_seen == 1
    assert len(refusals) == 1 and "version 2" in refusals[0]


def test_store_with_no_valid_version_says_so(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path)
    assert load_latest_valid(store, "k", KEY) is None
    store.save("k", _blob(b"one"))
    with pytest.raises(SnapshotError, match="no valid snapshot left"):
        load_latest_valid(store, "k", b"wrong key")


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
