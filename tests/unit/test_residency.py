"""The resident set and the evicting store (stream_learner.residency), on a real local snapshot store."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from plain_state import plain

from connectors.local_store import LocalSnapshotStore
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import SnapshotError
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.residency import EvictingStore, ResidentSet, UseCounts, eviction_snapshot
from stream_learner.slot import new_step
from stream_learner.snapshot import Snapshot, load_latest_valid, read_header, seal

SIGNING_KEY = b"residency"
CONFIGS = {
    "hoeffding_tree": EngineConfig(learner=LearnerSpec("hoeffding_tree"), metrics_every=50, snapshot_seconds=0),
    "logreg+feature drift": EngineConfig(learner=LearnerSpec("logreg"), metrics_every=50, snapshot_seconds=0, feature_drift={}),
    "torch:mlp+ewc": EngineConfig(
        learner=LearnerSpec.parse("torch:mlp", '{"hidden": [8], "batch_size": 4}', strategy="ewc"), metrics_every=50, snapshot_seconds=0, forgetting_every=40
    ),
    "logreg with a hoeffding_tree challenger": EngineConfig(
        learner=LearnerSpec("logreg"), challengers=(LearnerSpec("hoeffding_tree"),), promotion_window=30, min_champion_events=30, metrics_every=50, snapshot_seconds=0
    ),
    "torch:mlp+replay": EngineConfig(
        learner=LearnerSpec.parse("torch:mlp", '{"hidden": [8], "batch_size": 4}', strategy="replay", strategy_params={"mem_size": 30}), metrics_every=50, snapshot_seconds=0
    ),
}


def events(key: str, start: int, n: int, seed: int = 1) -> list[Event]:
    """Labelled events with an explicit task change halfway (a boundary: strategies consolidate, replay fills its buffer)."""
    rng = random.Random(seed + start)
    out = []
    for i in range(start, start + n):
        x = {"x": rng.random(), "y": rng.random()}
        task = 1 if i >= start + n // 2 else 0
        out.append(Event(f"e{i}", key, x, (x["x"] > x["y"]) != bool(task), task, 0, i))
    return out


def store_at(tmp_path: Path, config: EngineConfig, retain: int = 5) -> EvictingStore:
    return EvictingStore(LocalSnapshotStore(tmp_path, retain=retain), SIGNING_KEY, config)


@pytest.mark.parametrize("model", CONFIGS)
def test_a_restored_key_equals_the_evicted_one_exactly(tmp_path: Path, model: str) -> None:
    config = CONFIGS[model]
    learner = new_step("k", config)
    learner.process(events("k", 0, 120), now=1.0)
    store = store_at(tmp_path, config)
    before = plain(learner.state_dict())

    back = store.restore("k", store.evict([eviction_snapshot(learner)])[0])

    assert plain(back.state_dict()) == before  # every part: model, strategy, metrics, detectors, forgetting, offsets, cadence
    assert plain(learner.state_dict()) == before  # evicting changed nothing in the learner (its snapshot cadence included)
    # and it goes on exactly as the learner that never left would
    more = events("k", 120, 40, seed=2)
    assert back.process(more, now=2.0).predictions.rows == learner.process(more, now=2.0).predictions.rows  # type: ignore[union-attr]
    assert plain(back.state_dict()) == plain(learner.state_dict())


def test_an_eviction_is_a_normal_signed_snapshot_version_of_the_key(tmp_path: Path) -> None:
    config = CONFIGS["hoeffding_tree"]
    learner = KeyedLearner("k", config)
    learner.process(events("k", 0, 30), now=1.0)
    store = store_at(tmp_path, config)
    version = store.evict([eviction_snapshot(learner)])[0]
    header, payload, refusals = load_latest_valid(LocalSnapshotStore(tmp_path), "k", SIGNING_KEY)  # any reader of the store finds it
    assert refusals == [] and header.events_seen == 30 and header.source_offsets == {0: 30}
    assert LocalSnapshotStore(tmp_path).latest("k") == version
    assert KeyedLearner.restore(payload, config).learned == 30


def test_a_regular_snapshot_taken_before_an_eviction_never_becomes_latest_after_it(tmp_path: Path) -> None:
    config = CONFIGS["hoeffding_tree"]
    learner = KeyedLearner("k", config)
    learner.process(events("k", 0, 20), now=1.0)
    old = seal(learner.snapshot().payload, signing_key=SIGNING_KEY, key="k", learner_kind="river", strategy="none", events_seen=learner.events, source_offsets={0: 20})
    learner.process(events("k", 20, 20), now=1.0)
    store = store_at(tmp_path, config)
    evicted = store.evict([eviction_snapshot(learner)])[0]
    # the writer thread saves the older snapshot only now: skipped, the eviction stays latest
    assert store.save("k", old) == evicted and store.latest("k") == evicted
    assert store.save_many([("k", old)]) == [evicted] and store.versions("k") == [evicted]
    # once restored, the key's newer snapshots are saved again
    back = store.restore("k", evicted)
    back.process(events("k", 40, 5), now=1.0)
    new = seal(back.snapshot().payload, signing_key=SIGNING_KEY, key="k", learner_kind="river", strategy="none", events_seen=back.events, source_offsets={0: 45})
    assert store.save("k", new) == evicted + 1 and read_header(store.load("k", evicted + 1)).events_seen == 45
    assert store.save("other", old) == 1  # other keys are not concerned


def test_a_pruned_eviction_version_restores_from_the_latest_valid_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = CONFIGS["hoeffding_tree"]
    learner = KeyedLearner("k", config)
    learner.process(events("k", 0, 20), now=1.0)
    store = store_at(tmp_path, config, retain=1)
    first = store.evict([eviction_snapshot(learner)])[0]
    learner.process(events("k", 20, 20), now=1.0)
    store.evict([eviction_snapshot(learner)])[0]  # retain=1: the first version is gone
    back = store.restore("k", first)
    assert back.events == 40 and "restoring its latest valid version" in caplog.text


def _evicted_and_lost(tmp_path: Path, lost_state: str) -> tuple[EvictingStore, int, list[str], list[str]]:
    """Key k evicted, then every version of it deleted from the store (a store that lost its data); the store, the
    eviction's version, and the keys its ``on_lost`` and ``on_restored`` saw."""
    config = CONFIGS["hoeffding_tree"]
    learner = KeyedLearner("k", config)
    learner.process(events("k", 0, 20), now=1.0)
    lost: list[str] = []
    restored: list[str] = []
    store = EvictingStore(
        LocalSnapshotStore(tmp_path), SIGNING_KEY, config, on_restored=lambda key, seconds: restored.append(key), lost_state=lost_state, on_lost=lost.append
    )
    version = store.evict([eviction_snapshot(learner)])[0]
    store.delete("k")
    return store, version, lost, restored


def test_a_key_whose_every_version_the_store_lost_stops_the_run_by_default(tmp_path: Path) -> None:
    store, version, lost, restored = _evicted_and_lost(tmp_path, "error")
    for newest in (False, True):  # its eviction's version, or its final snapshot
        with pytest.raises(SnapshotError, match=rf"^model key 'k' was evicted as snapshot version {version}, and the snapshot store holds no version .* snapshot.lost_state"):
            store.restore("k", version, newest)
    assert lost == restored == []


def test_with_lost_state_new_learner_such_a_key_starts_afresh_said_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, version, lost, restored = _evicted_and_lost(tmp_path, "new_learner")
    back = store.restore("k", version)
    assert (back.key, back.events, back.learned) == ("k", 0, 0)  # a new learner: nothing of the lost state
    assert lost == ["k"] and restored == []  # counted as lost, not as restored
    assert [r.levelname for r in caplog.records if "starting it afresh" in r.getMessage()] == ["ERROR"]
    back.process(events("k", 20, 5), now=1.0)  # it learns on, and its snapshots are saved as the key's again
    assert store.save("k", seal(back.snapshot().payload, signing_key=SIGNING_KEY, key="k", learner_kind="river", strategy="none", events_seen=5, source_offsets={0: 25})) >= 1
    assert read_header(store.load_latest("k")[1]).events_seen == 5


def test_an_unknown_lost_state_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lost_state must be one of error, new_learner"):
        EvictingStore(LocalSnapshotStore(tmp_path), SIGNING_KEY, CONFIGS["hoeffding_tree"], lost_state="ignore")


class Holder:
    """A key's holder; the resident set's ``write`` is a real store's save_many."""

    def __init__(self, key: str, pinned: bool = False) -> None:
        self.key, self.pinned = key, pinned
        self.version: int | None = None

    def leaving(self) -> Snapshot:
        return Snapshot(self.key, "river", "none", 0, {}, b"state of " + self.key.encode())

    def left(self, version: int) -> None:
        self.version = version


class Writes:
    def __init__(self, store: LocalSnapshotStore, refuse: bool = False) -> None:
        self.store, self.refuse, self.rounds = store, refuse, []

    def __call__(self, snapshots: list[Snapshot]) -> list[int]:
        if self.refuse:
            raise OSError("disk full")
        self.rounds.append([s.key for s in snapshots])
        return self.store.save_many([(s.key, s.payload) for s in snapshots])


def test_plain_least_recently_used_evicts_the_least_recently_used_down_to_its_bound(tmp_path: Path) -> None:
    writes, counts = Writes(LocalSnapshotStore(tmp_path)), []
    resident = ResidentSet(3, writes, counted=counts.append, by_frequency=False)
    holders = {key: Holder(key) for key in "abcde"}
    for key in "abc":
        resident.admit(key, holders[key])
    resident.touch("a")
    resident.admit("d", holders["d"])
    resident.admit("e", holders["e"])
    assert writes.rounds == [["b"], ["c"]] and list(resident) == ["a", "d", "e"]
    assert holders["b"].version == 1 and writes.store.load("b", 1) == b"state of b" and holders["a"].version is None
    assert sum(counts) == len(resident) == 3


def test_a_key_used_more_often_outlives_a_burst_of_keys_seen_once(tmp_path: Path) -> None:
    """Plain least-recently-used would evict ``a`` once four other keys came by."""
    writes, counts = Writes(LocalSnapshotStore(tmp_path)), []
    resident = ResidentSet(4, writes, counted=counts.append)
    resident.admit("a", Holder("a"))
    resident.touch("a")
    for key in "bcdefgh":
        resident.admit(key, Holder(key))
    assert writes.rounds == [["d"], ["e"], ["f"], ["g"]] and list(resident) == ["h", "c", "b", "a"]
    assert sum(counts) == len(resident) == 4


def test_use_counts_forget_keys_used_once_long_ago() -> None:
    counts = UseCounts(period=100)
    for i in range(10_000):
        counts.add(f"k{i}")
        counts.add("busy")
    assert len(counts) <= 200 and counts["k0"] == 0 and counts["busy"] > 1
    assert counts.add("new") == counts["new"] == 1 and counts["busy"] > counts["new"]


def test_a_full_resident_set_evicts_a_batch_in_one_write_round(tmp_path: Path) -> None:
    writes = Writes(LocalSnapshotStore(tmp_path))
    resident = ResidentSet(4, writes, batch=3, by_frequency=False)
    for key in "abcdef":
        resident.admit(key, Holder(key))
    assert writes.rounds == [["a", "b", "c"]] and list(resident) == ["d", "e", "f"]


def test_a_refused_eviction_keeps_the_keys_and_is_not_retried_at_once(tmp_path: Path) -> None:
    failed: list[str] = []
    writes = Writes(LocalSnapshotStore(tmp_path), refuse=True)
    resident = ResidentSet(1, writes, failed=failed.append, by_frequency=False)
    holders = {key: Holder(key) for key in "abc"}
    resident.admit("a", holders["a"])
    resident.admit("b", holders["b"])
    assert failed == ["a"] and list(resident) == ["a", "b"] and holders["a"].version is None  # over the bound, nothing dropped
    writes.refuse = False
    resident.admit("c", holders["c"])  # within the back-off: no new try
    assert failed == ["a"] and writes.rounds == [] and len(resident) == 3
    with pytest.raises(ValueError):
        ResidentSet(0, writes)


def test_a_pinned_key_is_passed_over_until_unpinned(tmp_path: Path) -> None:
    writes = Writes(LocalSnapshotStore(tmp_path))
    resident = ResidentSet(2, writes, by_frequency=False)
    holders = {key: Holder(key, pinned=key == "a") for key in "abcde"}
    for key in "abc":
        resident.admit(key, holders[key])
    assert writes.rounds == [["b"]] and list(resident) == ["c", "a"]  # a passed over, and behind c now
    resident.admit("d", holders["d"])
    assert writes.rounds == [["b"], ["c"]] and list(resident) == ["a", "d"]
    holders["d"].pinned = True
    resident.admit("e", holders["e"])  # every other key pinned: over the bound for now, nothing written
    assert writes.rounds == [["b"], ["c"]] and len(resident) == 3
    holders["a"].pinned = False  # its epoch closed
    resident.admit("f", Holder("f"))
    assert writes.rounds[-1] == ["e", "a"] and sorted(resident) == ["d", "f"]
