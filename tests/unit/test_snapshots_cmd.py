"""``stream-learner snapshots``: where it looks, what it says of each version, and a delete that asks first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.local_store import SIGNING_KEY_FILE_ENV, LocalSnapshotStore
from stream_learner.app.cli import main
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import seal

KEY = b"local-key"


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalSnapshotStore:
    """The store an embedded run in ``tmp_path`` wrote (``out/snapshots``), no Redis in the settings, its key in the key file."""
    monkeypatch.chdir(tmp_path)
    for name in ("STREAM_LEARNER_REDIS__URL", "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "key").write_bytes(KEY)
    monkeypatch.setenv(SIGNING_KEY_FILE_ENV, str(tmp_path / "key"))
    return LocalSnapshotStore(tmp_path / "out" / "snapshots", app="stream-learner")


def _save(store: LocalSnapshotStore, model: str, strategy: str | None = None) -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec(model, strategy=strategy), detector=None))
    store.save("k", seal(step.snapshot().payload, signing_key=KEY, key="k", learner_kind="river", strategy=strategy or "none", events_seen=0, source_offsets={}))


def test_list_with_no_flags_reads_the_embedded_runs_store_and_says_so(local: LocalSnapshotStore, capsys: pytest.CaptureFixture[str]) -> None:
    _save(local, "logreg")
    assert main(["snapshots", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "snapshots in out/snapshots (app 'stream-learner'):" and lines[1] == "k: latest 1"
    assert lines[2].split()[-3:] == ["logreg", "(none)", "ok"]


def test_a_missing_directory_is_one_error_line(local: LocalSnapshotStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshots", "list", "--dir", "nowhere"]) == 2
    assert capsys.readouterr().err.splitlines() == ["stream-learner: error: no snapshot directory nowhere"]
    assert main(["snapshots", "list"]) == 2  # nothing written yet where the embedded run writes
    assert capsys.readouterr().err.splitlines() == [
        "stream-learner: error: no snapshot directory out/snapshots (the embedded run's; name one with --dir DIR, or Redis with --redis-url URL)"
    ]


def test_list_and_show_name_each_versions_model_and_strategy(local: LocalSnapshotStore, capsys: pytest.CaptureFixture[str]) -> None:
    _save(local, "logreg")
    _save(local, "hoeffding_tree", strategy="reset")  # a run of another model stacked on the same key
    assert main(["snapshots", "list", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert [(v["model"], v["strategy"]) for v in entry["versions"]] == [("logreg", "none"), ("hoeffding_tree", "reset")]
    assert main(["snapshots", "show", "k", "--version", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "logreg"


def test_delete_asks_first_and_off_a_terminal_needs_yes(local: LocalSnapshotStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _save(local, "logreg")
    assert main(["snapshots", "delete", "k"]) == 2  # pytest's stdin is no terminal
    [line] = capsys.readouterr().err.splitlines()
    assert line == "stream-learner: error: snapshots delete would delete every version of key 'k' from out/snapshots (app 'stream-learner'): give --yes to confirm (no terminal to ask on)"
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["snapshots", "delete", "k"]) == 0 and capsys.readouterr().out == "nothing deleted\n"
    assert local.versions("k") == [1]
    assert main(["snapshots", "delete", "k", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"key": "k", "deleted": "all", "latest": None} and local.versions("k") == []


def test_list_and_show_name_each_versions_kind_and_restore_refuses_a_boundary_version(local: LocalSnapshotStore, capsys: pytest.CaptureFixture[str]) -> None:
    stream = [Event(str(i), "k", {"x": float(i % 2)}, bool(i % 2) != (i >= 50), "a" if i < 50 else "b", 0, i) for i in range(100)]
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"), detector=None, boundary_versions=True))
    (boundary,) = step.process(stream, now=0.0).boundary_snapshots
    for snap in (boundary, step.snapshot()):
        local.save("k", seal(snap.payload, signing_key=KEY, key="k", learner_kind="river", strategy="none", events_seen=snap.events_seen, source_offsets={}, kind=snap.kind, concept=snap.concept))
    assert main(["snapshots", "list", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["kind"], v.get("concept")) for v in entry["versions"]] == [(1, "boundary", 0), (2, "regular", None)] and entry["latest"] == 2
    assert main(["snapshots", "list"]) == 0
    assert [line.split()[1:3] for line in capsys.readouterr().out.splitlines()[2:]] == [["boundary", "c0"], ["regular", "100"]]  # the kind column, then the events seen
    assert main(["snapshots", "show", "k", "--version", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["kind"], shown["concept"], shown["learner"]["events"], shown["latest"]) == ("boundary", 0, 50, 2)
    assert main(["snapshots", "restore", "k", "1"]) == 2
    assert "version 1 of key 'k' is a boundary version" in capsys.readouterr().err
    assert local.latest("k") == 2
