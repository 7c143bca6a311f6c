"""The local snapshot store when its files are damaged, and the directories that hold pickles."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from store_rows import drop_version, set_envelope, set_pointer

from connectors.local_store import SIGNING_KEY_FILE_ENV, LocalSnapshotStore
from connectors.private_dir import lock_directory, private_directory
from stream_learner.app.cli import main
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.snapshot import load_latest_valid, seal

KEY = b"secret"


def _blob(events: int) -> bytes:
    return seal(b"state-%d" % events, signing_key=KEY, key="k", learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events})


@pytest.fixture
def store(tmp_path: Path) -> LocalSnapshotStore:
    """Five versions (events 10..50) of key ``k``, versions 3..7 (retention dropped 1 and 2)."""
    s = LocalSnapshotStore(tmp_path / "snaps", app="a", retain=5)
    for events in (1, 2, 10, 20, 30, 40, 50):
        s.save("k", _blob(events))
    assert s.versions("k") == [3, 4, 5, 6, 7] and s.latest("k") == 7
    return s


# every way the pointer can be wrong (what it is set to; None: deleted), and the version the store falls back to: the newest that verifies
CORRUPTIONS: dict[str, object] = {
    "deleted": None,
    "empty": "",
    "not a number": "seven\x00",
    "below every version": 1,
    "above every version": 99,
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_wrong_pointer_falls_back_to_the_newest_valid_version_with_one_warning(store: LocalSnapshotStore, corruption: str) -> None:
    set_pointer(store, "k", CORRUPTIONS[corruption])
    assert store.keys() == ["k"]  # still listed without a pointer
    header, payload, refusals = load_latest_valid(store, "k", KEY)
    assert (header.events_seen, payload) == (50, b"state-50")
    [warning] = refusals
    assert "latest pointer of 'k'" in warning and "newest version that verifies" in warning


def test_a_wrong_pointer_skips_newer_versions_that_do_not_verify(store: LocalSnapshotStore) -> None:
    set_pointer(store, "k", None)
    set_envelope(store, "k", 7, store.load("k", 7)[:-1] + b"!")
    header, _, refusals = load_latest_valid(store, "k", KEY)
    assert header.events_seen == 40
    assert len(refusals) == 2 and "version 7" in refusals[1] and "checksum" in refusals[1]


def test_a_valid_pointer_to_an_older_version_is_obeyed(store: LocalSnapshotStore) -> None:
    store.set_latest("k", 5)  # an operator's restore
    header, _, refusals = load_latest_valid(store, "k", KEY)
    assert header.events_seen == 30 and refusals == []


def test_a_pointer_without_any_version_refuses_in_one_line(store: LocalSnapshotStore) -> None:
    for version in store.versions("k"):
        drop_version(store, "k", version)
    with pytest.raises(SnapshotError, match="names version 7, which is not stored, and 'k' has no stored version"):
        load_latest_valid(store, "k", KEY)
    set_pointer(store, "k", None)
    assert load_latest_valid(store, "k", KEY) is None  # nothing at all: a fresh start


def test_delete_with_a_wrong_pointer_repoints_it(store: LocalSnapshotStore) -> None:
    set_pointer(store, "k", "x")
    store.delete("k", 7)
    assert store.latest("k") == 6


def test_snapshot_files_and_directories_are_private(store: LocalSnapshotStore) -> None:
    directory = store.app_dir
    assert directory.stat().st_mode & 0o777 == 0o700
    assert {p.name for p in directory.iterdir()} >= {"snapshots.db", "snapshots.db-wal"}  # SQLite's journal too
    assert {p.stat().st_mode & 0o777 for p in directory.iterdir()} == {0o600}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_snapshots_list_and_show_report_a_wrong_pointer(store: LocalSnapshotStore, corruption: str, capsys: pytest.CaptureFixture[str]) -> None:
    set_pointer(store, "k", CORRUPTIONS[corruption])
    set_envelope(store, "k", 6, b"garbage")
    env = {"STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": KEY.decode()}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert main(["snapshots", "list", "--dir", str(store.root), "--app", "a", "--json"]) == 0
        [listing] = json.loads(capsys.readouterr().out)
        assert main(["snapshots", "show", "k", "--dir", str(store.root), "--app", "a", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert main(["snapshots", "list", "--dir", str(store.root), "--app", "a"]) == 0
        text = capsys.readouterr().out
    assert listing["latest"] is None and "latest pointer of 'k'" in listing["latest_error"]
    assert [(v["version"], v["verified"]) for v in listing["versions"]] == [(3, True), (4, True), (5, True), (6, False), (7, True)]
    assert (shown["version"], shown["verified"], shown["events_seen"]) == (7, True, 50)  # the newest stored, as a run would load
    assert shown["latest"] is None and shown["latest_error"] == listing["latest_error"]
    assert "k: latest None (the latest pointer of 'k'" in text and "v6" in text and "INVALID: snapshot is corrupt" in text


def test_snapshots_show_of_a_version_that_is_not_stored_is_one_error_line(store: LocalSnapshotStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshots", "show", "k", "--version", "2", "--dir", str(store.root), "--app", "a"]) == 2
    assert capsys.readouterr().err.splitlines() == ["stream-learner: error: no snapshot version 2 for key 'k'"]


def test_snapshots_list_shows_a_version_missing_under_the_pointer_as_bad(store: LocalSnapshotStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_LEARNER_SNAPSHOT__SIGNING_KEY", KEY.decode())
    drop_version(store, "k", 7)
    assert main(["snapshots", "list", "--dir", str(store.root), "--app", "a", "--json"]) == 0
    [listing] = json.loads(capsys.readouterr().out)
    assert listing["latest"] is None and "names version 7, which is not stored" in listing["latest_error"]
    assert [v["version"] for v in listing["versions"]] == [3, 4, 5, 6]


def test_a_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    for mode in (0o770, 0o707, 0o777):
        directory = tmp_path / f"d{mode:o}"
        directory.mkdir()
        directory.chmod(mode)
        with pytest.raises(ConfigError, match=f"writable by group or others \\(mode 0{mode:o}\\).*chmod 700"):
            private_directory(directory, "snapshot directory")
    (tmp_path / "ok").mkdir(mode=0o755)
    (tmp_path / "ok").chmod(0o755)  # readable by others is the owner's choice; writable is not
    assert private_directory(tmp_path / "ok", "snapshot directory") == tmp_path / "ok"
    assert (private_directory(tmp_path / "new" / "deeper", "x").stat().st_mode & 0o777) == 0o700


def test_an_embedded_run_refuses_a_group_writable_snapshot_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    (out / "snapshots").mkdir(parents=True)
    (out / "snapshots").chmod(0o775)
    assert main(["run", "--source", "synthetic:sea", "--max-events", "10", "--out", str(out), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("stream-learner: error: the snapshot directory") and "mode 0775" in line
    assert not (out / "predictions.jsonl").exists()  # before any work


def test_a_second_process_cannot_lock_a_locked_directory(tmp_path: Path) -> None:
    lock_directory(tmp_path, "recovery directory")
    lock_directory(tmp_path, "recovery directory")  # this process again: fine
    other = subprocess.run(
        [sys.executable, "-c", "import sys; from connectors.private_dir import lock_directory; lock_directory(sys.argv[1], 'recovery directory')", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert other.returncode != 0
    assert f"ConfigError: the recovery directory {tmp_path} is in use by process {os.getpid()}" in other.stderr


def test_the_signing_key_lives_outside_the_store_and_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    location = tmp_path / "config" / "signing-key"
    monkeypatch.setenv(SIGNING_KEY_FILE_ENV, str(location))
    store = LocalSnapshotStore(tmp_path / "snaps")
    assert store.signing_key(create=False) is None
    key = store.signing_key()
    assert store.signing_key() == key and len(key) == 64 and location.read_bytes() == key
    assert location.stat().st_mode & 0o777 == 0o600 and location.parent.stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "snaps").exists()


def test_the_signing_key_defaults_to_the_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_FILE_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    key = LocalSnapshotStore(tmp_path / "snaps").signing_key()
    assert (tmp_path / "xdg" / "stream-learner" / "signing-key").read_bytes() == key


def test_an_old_key_inside_the_store_is_still_read_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "snaps"
    root.mkdir()
    (root / ".signing-key").write_bytes(b"old-key")
    with caplog.at_level(logging.WARNING):
        assert LocalSnapshotStore(root).signing_key() == b"old-key"
    [record] = caplog.records
    assert "lies in the directory it protects" in record.getMessage()


@pytest.mark.parametrize("key", ["..", ".", "a/../../b", "é" * 256, "k" * 256])
def test_any_model_key_round_trips_and_stays_inside_the_store(tmp_path: Path, key: str) -> None:
    store = LocalSnapshotStore(tmp_path / "snaps", app="demo")
    assert store.save(key, b"blob") == 1
    assert store.save("other", b"other") == 1
    assert store.keys() == sorted([key, "other"])
    assert store.load(key, 1) == b"blob" and store.latest(key) == 1
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == ["demo"]  # nothing beside the application's folder
