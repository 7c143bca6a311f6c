"""``stream-learner snapshots show`` reads what a verified snapshot's learner holds from its state, without loading its model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.local_store import LocalSnapshotStore
from stream_learner.app.cli import main
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import seal

KEY = b"secret"


def _saved(tmp_path: Path, payload: bytes, events: int) -> None:
    store = LocalSnapshotStore(tmp_path, app="a")
    store.save("k", seal(payload, signing_key=KEY, key="k", learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events}))


def test_show_says_what_the_learner_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"), detector=None))
    step.process([Event(str(i), "k", {"x": float(i % 3)}, i % 3 == 1, "t0" if i < 60 else "t1", 0, i) for i in range(100)], now=0.0)
    _saved(tmp_path, step.snapshot().payload, 100)
    monkeypatch.setenv("STREAM_LEARNER_SNAPSHOT__SIGNING_KEY", KEY.decode())
    assert main(["snapshots", "show", "k", "--dir", str(tmp_path), "--app", "a", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["verified"] is True and shown["learner"] == {
        "model": "logreg", "strategy": None, "events": 100, "labelled": 100, "accuracy": step.metrics.accuracy, "mae": None,
        "concept": 1, "concepts": 2, "drifts": step.drifts, "failures": 0,
    }  # fmt: skip
    assert 0.0 < shown["learner"]["accuracy"] < 1.0


def test_show_without_the_signing_key_reads_no_learner(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"), detector=None))
    _saved(tmp_path, step.snapshot().payload, 0)
    monkeypatch.delenv("STREAM_LEARNER_SNAPSHOT__SIGNING_KEY", raising=False)
    monkeypatch.setenv("STREAM_LEARNER_SIGNING_KEY_FILE", str(tmp_path / "no-key"))
    assert main(["snapshots", "show", "k", "--dir", str(tmp_path), "--app", "a", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["verified"] is None and "learner" not in shown
