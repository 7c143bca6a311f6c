"""Boundary versions: the outgoing model at each concept boundary, kept in the store as a version of its own kind, for a rollback."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from store_rows import set_envelope

from connectors.local_store import LocalSnapshotStore
from connectors.snapshot_writer import SnapshotWriter
from stream_learner.app.assembly import rollback_reader
from stream_learner.control import Command
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import SnapshotError
from stream_learner.events import ControlAnswer, Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import Snapshot, boundary_version, load_latest_valid, open_envelope, read_header, seal
from stream_learner.state import decode

KEY = b"secret"
CONFIG = EngineConfig(learner=LearnerSpec("logreg"), detector=None, forgetting_every=0, boundary_versions=True)
PROBES = [{"a": a / 10, "b": -a / 20} for a in range(-10, 11)]


def envelope(events: int, kind: str = "regular", concept: int | None = None, key: str = "k") -> bytes:
    return seal(
        b"%d" % events, signing_key=KEY, key=key, learner_kind="river", strategy="none", events_seen=events, source_offsets={0: events}, kind=kind, concept=concept  # type: ignore[arg-type]
    )


def task_events(tasks: Sequence[str], per_task: int, key: str = "k") -> list[Event]:
    """``per_task`` labelled events of each task in turn; each task flips the rule, so each concept's model differs."""
    rng = random.Random(3)
    out = []
    for t, task in enumerate(tasks):
        for i in range(per_task):
            x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
            label = (x["a"] + 0.3 * x["b"] > 0) != (task == "b")
            offset = t * per_task + i
            out.append(Event(str(offset), key, x, label, task, 0, offset))
    return out


def probe(step: KeyedLearner) -> list[object]:
    return [step.learner.predict(x) for x in PROBES]


# --- the stores ---------------------------------------------------------------------------------


def test_a_store_files_versions_by_kind_and_latest_names_regular_ones_only(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path, retain=2)
    assert store.save_many([("k", envelope(10)), ("k", envelope(20, "boundary", 0)), ("k", envelope(30))]) == [1, 2, 3]
    assert store.versions("k") == [1, 2, 3] and store.boundary_versions("k") == [2] and store.latest("k") == 3
    assert store.save("k", envelope(40, "boundary", 1)) == 4 and store.latest("k") == 3  # a boundary version never becomes latest
    assert store.save_many([("k", envelope(50, "boundary", 2)), ("k", envelope(60))]) == [5, 6]
    # each kind keeps its own last 2: regular 3 and 6, boundary 4 and 5
    assert store.versions("k") == [3, 4, 5, 6] and store.boundary_versions("k") == [4, 5] and store.latest("k") == 6
    assert boundary_version(store, "k", 1) == 4 and boundary_version(store, "k", 0) is None  # concept 0's was retired
    with pytest.raises(SnapshotError, match="version 5 of key 'k' is a boundary version"):
        store.set_latest("k", 5)
    store.delete("k", 6)
    assert store.latest("k") == 3  # the newest regular version left, not boundary 5
    store.delete("k", 3)
    assert store.latest("k") is None and store.keys() == ["k"] and store.boundary_versions("k") == [4, 5]
    assert load_latest_valid(store, "k", KEY) is None  # nothing to resume from: a resumed key starts afresh, not from a boundary


def test_resuming_never_falls_back_to_a_boundary_version(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path)
    store.save_many([("k", envelope(10)), ("k", envelope(20, "boundary", 0))])
    set_envelope(store, "k", 1, envelope(10)[:-1] + b"!")  # the only regular version, damaged
    with pytest.raises(SnapshotError, match="no valid snapshot left") as refused:
        load_latest_valid(store, "k", KEY)
    assert "version 2" not in str(refused.value)  # never a candidate


def test_a_store_of_a_release_before_version_kinds_reads_as_regular_and_gains_kinds(tmp_path: Path) -> None:
    app_dir = tmp_path / "stream-learner"
    app_dir.mkdir(mode=0o700)
    db = sqlite3.connect(app_dir / "snapshots.db")
    db.executescript(
        "CREATE TABLE versions (key TEXT NOT NULL, version INTEGER NOT NULL, envelope BLOB NOT NULL, PRIMARY KEY (key, version));"
        "CREATE TABLE latest (key TEXT PRIMARY KEY, version NOT NULL);"
    )
    db.executemany("INSERT INTO versions VALUES (?, ?, ?)", [("k", 1, envelope(10)), ("k", 2, envelope(20))])
    db.execute("INSERT INTO latest VALUES ('k', 2)")
    db.commit()
    db.close()
    store = LocalSnapshotStore(tmp_path, retain=2)
    assert store.versions("k") == [1, 2] and store.boundary_versions("k") == [] and store.latest("k") == 2
    header, _, _ = load_latest_valid(store, "k", KEY) or pytest.fail("the old version must verify")
    assert header.kind == "regular" and header.events_seen == 20
    assert store.save_many([("k", envelope(30, "boundary", 0)), ("k", envelope(40))]) == [3, 4]
    assert store.versions("k") == [2, 3, 4] and store.boundary_versions("k") == [3] and store.latest("k") == 4
    store.close()
    assert LocalSnapshotStore(tmp_path, retain=2).boundary_versions("k") == [3]  # opened again: migrated once


def test_a_regular_envelope_is_signed_as_before_version_kinds() -> None:
    regular = envelope(5)
    assert b'"kind"' not in regular and b'"concept"' not in regular  # an older release's envelopes verify, and an older release reads ours
    boundary = envelope(5, "boundary", 3)
    header, _ = open_envelope(boundary, signing_key=KEY)
    assert (header.kind, header.concept) == ("boundary", 3)
    with pytest.raises(SnapshotError, match="signature"):
        open_envelope(boundary.replace(b'"concept":3', b'"concept":4'), signing_key=KEY)  # the kind and concept are signed


# --- the writer ---------------------------------------------------------------------------------


class GatedStore(LocalSnapshotStore):
    """A local store whose first ``save_many`` waits for ``release``, and which records each round's items."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.rounds: list[list[tuple[str, str, int | None]]] = []

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        self.entered.set()
        self.release.wait(30)
        self.rounds.append([(key, read_header(blob).kind, read_header(blob).concept) for key, blob in items])
        return super().save_many(items)


def snapshot(events: int, kind: str = "regular", concept: int | None = None) -> Snapshot:
    return Snapshot("k", "river", "none", events, {0: events}, b"%d" % events, kind, concept)  # type: ignore[arg-type]


def test_the_writer_keeps_every_boundary_snapshot_of_a_round_and_saves_them_first(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    writer = SnapshotWriter(store, KEY)
    writer.submit([snapshot(1)])
    assert store.entered.wait(30)  # the first round is in flight: what follows queues up as one round
    writer.submit([snapshot(10, "boundary", 0), snapshot(11)])
    writer.submit([snapshot(20, "boundary", 1), snapshot(21)])  # the regular one replaces 11; the boundary one is kept
    store.release.set()
    writer.close()
    assert store.rounds == [[("k", "regular", None)], [("k", "boundary", 0), ("k", "boundary", 1), ("k", "regular", None)]]
    assert store.versions("k") == [1, 2, 3, 4] and store.boundary_versions("k") == [2, 3] and store.latest("k") == 4
    assert [read_header(store.load("k", v)).events_seen for v in (2, 3, 4)] == [10, 20, 21]


class RefusingOnce(LocalSnapshotStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.refused = False

    def save_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        if not self.refused:
            self.refused = True
            raise SnapshotError("down")
        return super().save_many(items)


def test_a_refused_round_keeps_its_boundary_snapshots_for_the_retry(tmp_path: Path) -> None:
    store = RefusingOnce(tmp_path)
    saved: list[tuple[str, int | None]] = []
    writer = SnapshotWriter(store, KEY, on_saved=lambda key, version: saved.append((key, version)))
    writer.submit([snapshot(10, "boundary", 0), snapshot(11)])
    writer.close(timeout=30)
    assert store.boundary_versions("k") == [1] and store.latest("k") == 2
    assert saved == [("k", None), ("k", None), ("k", 1), ("k", 2)]


# --- the learner step ---------------------------------------------------------------------------


def test_each_task_boundary_emits_the_outgoing_model_of_the_concept_that_ends() -> None:
    stream = task_events(["a", "b", "a"], per_task=150)
    step = KeyedLearner("k", CONFIG)
    out = step.process(stream, now=0.0)
    assert [(s.kind, s.concept, s.events_seen) for s in out.boundary_snapshots] == [("boundary", 0, 150), ("boundary", 1, 300)]
    for snap, end in zip(out.boundary_snapshots, (150, 300)):
        reference = KeyedLearner("k", CONFIG)
        reference.process(stream[:end], now=0.0)  # the model live at the end of that concept
        kept = KeyedLearner.from_state(decode(snap.payload), CONFIG)
        assert probe(kept) == probe(reference)
    assert not KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"), detector=None)).process(stream, now=0.0).boundary_snapshots  # off: none


def test_a_new_label_boundary_emits_one_too() -> None:
    config = EngineConfig(learner=LearnerSpec("logreg"), detector=None, forgetting_every=0, new_label_gap=10, boundary_versions=True)
    step = KeyedLearner("k", config)
    events = [Event(str(i), "k", {"x": float(i % 3)}, i % 3 if i < 100 else i % 3 + 3, None, 0, i) for i in range(200)]
    out = step.process(events, now=0.0)
    assert [(s.kind, s.concept) for s in out.boundary_snapshots] == [("boundary", 0)]
    assert out.boundary_snapshots[0].events_seen == 100  # the model as the first new label arrived, before learning it
    assert decode(out.boundary_snapshots[0].payload)["learned"] == 100


def test_each_detected_drift_emits_the_model_of_the_concept_it_ends(drift_pairs: list[tuple[dict[str, object], object]]) -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("hoeffding_tree"), forgetting_every=0, boundary_versions=True))
    out = step.process([Event(str(i), "k", x, y, None, 0, i) for i, (x, y) in enumerate(drift_pairs)], now=0.0)  # type: ignore[arg-type]
    drifts = [m for m in out.metrics if m["type"] == "drift"]
    assert drifts and step.concepts == len(drifts) + 1
    assert [s.concept for s in out.boundary_snapshots] == list(range(len(drifts)))
    assert [s.events_seen for s in out.boundary_snapshots] == [d["at_event"] for d in drifts]  # the model as the drift was found, the event that found it learned
    assert [decode(s.payload)["concepts"]["concept"] for s in out.boundary_snapshots] == list(range(len(drifts)))


def test_a_rollback_to_a_concept_installs_its_boundary_version_and_says_which(tmp_path: Path) -> None:
    stream = task_events(["a", "b", "c", "a"], per_task=120)
    step = KeyedLearner("k", CONFIG)
    out = step.process(stream, now=0.0)
    store = LocalSnapshotStore(tmp_path)
    writer = SnapshotWriter(store, KEY)
    writer.submit([*out.boundary_snapshots, step.snapshot()])
    writer.close()
    assert store.boundary_versions("k") == [1, 2, 3] and store.latest("k") == 4
    target = rollback_reader(store, KEY)
    found = target("k", "concept:1")
    assert found is not None and found[0] == 2
    assert target("k", "concept:7") is None and target("k", 9) is None
    answer = step.apply(Command("c1", "k", "rollback", "concept:1", 0.0, version=found[0]), now=1.0, version=found[1]).metrics[0]
    assert answer["status"] == "applied" and answer["version"] == 2 and answer["arg"] == "concept:1"
    assert ControlAnswer.model_validate(answer).version == 2  # within the contract
    reference = KeyedLearner("k", CONFIG)
    reference.process(stream[:240], now=0.0)  # concept 1 (task b) ended at event 240
    assert probe(step) == probe(reference)
    refused = step.apply(Command("c2", "k", "rollback", "concept:7", 0.0), now=1.0, version=None).metrics[0]
    assert refused["status"] == "refused" and refused["reason"].startswith("model key 'k' keeps no boundary version of concept 7") and "version" not in refused


def test_a_boundary_snapshot_written_after_its_keys_eviction_is_kept(tmp_path: Path) -> None:
    from stream_learner.residency import EvictingStore

    store = EvictingStore(LocalSnapshotStore(tmp_path), KEY, CONFIG)
    step = KeyedLearner("k", CONFIG)
    out = step.process(task_events(["a", "b"], per_task=100), now=0.0)
    (boundary,) = out.boundary_snapshots  # taken at event 100, still queued in the writer when...
    evicted = store.evict([step.snapshot()])  # ...the key leaves memory at event 200
    writer = SnapshotWriter(store, KEY)
    writer.submit([boundary, snapshot(150)])  # and a regular one taken before the eviction, which the eviction's state supersedes
    writer.close()
    assert store.versions("k") == [1, 2] and store.boundary_versions("k") == [2] and store.latest("k") == evicted[0] == 1
    assert read_header(store.load("k", 2)).events_seen == 100


def test_a_stored_concepts_model_coming_back_keeps_the_model_it_replaces() -> None:
    from stream_learner.step.recurring import ConceptReuse

    config = EngineConfig(learner=LearnerSpec("logreg"), detector=None, forgetting_every=0, concept_reuse=ConceptReuse(window=100, looks=4), boundary_versions=True)
    step = KeyedLearner("k", config)
    out = step.process(task_events(["a", "b", "a"], per_task=300), now=0.0)
    (back,) = [m for m in out.metrics if m["type"] == "drift" and m["detector"] == "recurring"]
    assert [s.concept for s in out.boundary_snapshots] == [0, 1, 0]  # a -> b, b -> a, then concept 0's stored model back
    replaced = out.boundary_snapshots[2]
    assert replaced.events_seen == back["at_event"]  # the live model as it was when the stored one proved better
    assert decode(replaced.payload)["learner"] != decode(out.boundary_snapshots[1].payload)["learner"]  # it had learned concept 0's first events


def test_with_challengers_the_champions_boundaries_are_kept_and_a_rollback_makes_that_model_champion() -> None:
    from stream_learner.slot import Slot, new_step

    config = EngineConfig(
        learner=LearnerSpec("logreg"), challengers=(LearnerSpec("hoeffding_tree"),), detector=None, forgetting_every=0, min_champion_events=10**6, boundary_versions=True
    )
    slot = new_step("k", config)
    assert isinstance(slot, Slot)
    stream = task_events(["a", "b", "c"], per_task=150)
    out = slot.process(stream, now=0.0)
    assert [(s.concept, decode(s.payload)["spec"]["model"]) for s in out.boundary_snapshots] == [(0, "logreg"), (1, "logreg")]  # the champion's only
    answer = slot.apply(Command("c1", "k", "rollback", "concept:1", 0.0, version=7), now=1.0, version=decode(out.boundary_snapshots[1].payload)).metrics[0]
    assert (answer["status"], answer["version"], slot.champion_name) == ("applied", 7, "logreg")
    reference = KeyedLearner("k", CONFIG)
    reference.process(stream[:300], now=0.0)
    assert [slot.learner.predict(x) for x in PROBES] == probe(reference)
