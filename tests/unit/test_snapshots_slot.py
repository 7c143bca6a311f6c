"""``stream-learner snapshots list|show`` on a key with challengers: the snapshot holds a slot, whose champion serves."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from connectors.local_store import LocalSnapshotStore
from stream_learner.app.cli import main
from stream_learner.engine import EngineConfig
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.slot import Slot, new_step
from stream_learner.snapshot import seal

KEY = b"secret"


def test_list_and_show_name_the_champion_and_the_candidates(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config = EngineConfig(learner=LearnerSpec("logreg"), challengers=(LearnerSpec("hoeffding_tree"),), detector=None, promotion_window=200, min_champion_events=200)
    slot = new_step("k", config)
    assert isinstance(slot, Slot)
    rng = random.Random(1)
    events = [Event(str(i), "k", {"x1": (x := rng.random()), "x2": rng.random()}, 0.3 < x < 0.7, None, 0, i) for i in range(800)]
    slot.process(events, now=0.0)
    assert slot.champion_name == "hoeffding_tree"  # promoted: the champion is not the run's --model
    snapshot = slot.snapshot()
    LocalSnapshotStore(tmp_path, app="a").save("k", seal(snapshot.payload, signing_key=KEY, key="k", learner_kind="river", strategy="none", events_seen=800, source_offsets={0: 800}))
    monkeypatch.setenv("STREAM_LEARNER_SNAPSHOT__SIGNING_KEY", KEY.decode())

    assert main(["snapshots", "show", "k", "--dir", str(tmp_path), "--app", "a", "--json"]) == 0
    learner = json.loads(capsys.readouterr().out)["learner"]
    tree = slot.champion_step
    assert learner == {
        "model": "hoeffding_tree", "strategy": None, "events": 800, "labelled": 800, "accuracy": tree.metrics.accuracy, "mae": None,
        "concept": 0, "concepts": 1, "drifts": 0, "failures": 0, "candidates": ["logreg", "hoeffding_tree"], "champion": "hoeffding_tree",
    }  # fmt: skip
    assert main(["snapshots", "list", "--dir", str(tmp_path), "--app", "a", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert [v["model"] for v in entry["versions"]] == ["hoeffding_tree"]  # the model that serves, not None
