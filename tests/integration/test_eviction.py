"""A bound on resident keys changes nothing a key predicts or learns (issue #17).

Every key of a shuffled 30-key stream is evicted to the snapshot store and
restored from it many times (at most 5 resident, small source batches); the
predictions (every field but the wall-clock ``ts``), each key's final
metrics and each key's last snapshot equal a run without the bound.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from plain_state import plain

from connectors.base import RawRecord
from connectors.files import JsonlFileSource
from connectors.local_store import LocalSnapshotStore
from stream_learner.app.runner import RunOptions, run
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import SnapshotError
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import load_latest_valid
from stream_learner.state import decode, encode

pytestmark = pytest.mark.integration

SIGNING_KEY = b"eviction-test"
KEYS = 30
RESIDENT = 5


def stream(events: int, keys: int, seed: int = 3) -> list[bytes]:
    """``events`` labelled events over ``keys`` model keys in a shuffled order, each key its own concept (its own threshold)."""
    rng = random.Random(seed)
    lines = []
    for i in range(events):
        key = rng.randrange(keys)
        x, y = rng.random(), rng.random()
        lines.append(orjson.dumps({"id": f"e{i}", "key": f"k{key}", "features": {"x": x, "y": y}, "label": x + y > 0.5 + key / keys}))
    return lines


def run_file(
    tmp_path: Path, name: str, lines: list[bytes], engine: EngineConfig, max_resident_keys: int = 0, batch_size: int = 100, workers: int = 1
) -> dict[str, Any]:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / name
    options = RunOptions(engine=engine, out=out, progress=False, console=False, signing_key=SIGNING_KEY, max_resident_keys=max_resident_keys, workers=workers)
    return run(options, source=JsonlFileSource(str(path), batch_size=batch_size))


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def without_ts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "ts"} for r in records]


def comparable(learner: KeyedLearner) -> Any:
    """The learner's state as plain values, but for the wall-clock time of its last snapshot."""
    state = learner.state_dict()
    state["cadence"] = {**state["cadence"], "snapshot_at": None}
    return plain(decode(encode(state)))


def last_states(out: Path, engine: EngineConfig) -> dict[str, Any]:
    """Each key's latest snapshot, as the (comparable) state of the learner it restores to."""
    store = LocalSnapshotStore(out / "snapshots")
    states = {}
    for key in store.keys():
        found = load_latest_valid(store, key, SIGNING_KEY)
        assert found is not None
        states[key] = comparable(KeyedLearner.restore(found[1], engine))
    return states


ENGINES = {
    "logreg": EngineConfig(learner=LearnerSpec("logreg"), metrics_every=20, snapshot_every=30, snapshot_seconds=0),
    "hoeffding_tree": EngineConfig(learner=LearnerSpec("hoeffding_tree"), metrics_every=20, snapshot_seconds=0),
    "torch:mlp+replay": EngineConfig(
        learner=LearnerSpec.parse("torch:mlp", '{"hidden": [8], "batch_size": 4}', seed=42, strategy="replay", strategy_params={"mem_size": 20}),
        metrics_every=20, snapshot_every=30, snapshot_seconds=0,
    ),
}  # fmt: skip
SIZES = {"logreg": (800, KEYS, RESIDENT), "hoeffding_tree": (800, KEYS, RESIDENT), "torch:mlp+replay": (240, 10, 3)}  # events, keys, resident


@pytest.mark.parametrize("model", ENGINES)
def test_eviction_on_and_off_give_the_same_predictions_metrics_and_snapshots(tmp_path: Path, model: str) -> None:
    (events, keys, resident), engine = SIZES[model], ENGINES[model]
    lines = stream(events, keys)
    free = run_file(tmp_path, "free", lines, engine, batch_size=events // 40)
    bound = run_file(tmp_path, "bound", lines, engine, max_resident_keys=resident, batch_size=events // 40)

    # every key was evicted and restored many times, and at most `resident` were in memory at once
    assert bound["evictions"]["count"] >= 8 * keys and bound["restores"]["count"] >= 8 * keys, bound
    assert bound["resident_keys_max"] == resident + 1  # the key coming in, just before the coldest goes out
    assert free["evictions"]["count"] == 0
    predicted = without_ts(read(tmp_path / "free" / "predictions.jsonl"))
    assert len(predicted) == len(lines)
    assert without_ts(read(tmp_path / "bound" / "predictions.jsonl")) == predicted  # event for event, every field
    assert without_ts(read(tmp_path / "bound" / "metrics.jsonl")) == without_ts(read(tmp_path / "free" / "metrics.jsonl"))
    assert {k: v for k, v in bound.items() if k in ("events", "labelled", "accuracy", "drifts", "keys")} == {
        k: v for k, v in free.items() if k in ("events", "labelled", "accuracy", "drifts", "keys")
    }
    # each key's last snapshot holds the learner the unbounded run ends with
    assert last_states(tmp_path / "bound", engine) == last_states(tmp_path / "free", engine)


def test_two_workers_each_bounded_predict_as_one_unbounded(tmp_path: Path) -> None:
    """Each worker holds at most the bound of its own keys; the predictions (in any order across keys) and final states are the unbounded run's."""
    engine, lines = ENGINES["logreg"], stream(600, KEYS)
    run_file(tmp_path, "free", lines, engine, batch_size=15)
    bound = run_file(tmp_path, "bound", lines, engine, max_resident_keys=3, batch_size=15, workers=2)
    assert bound["evictions"]["count"] >= 3 * KEYS and bound["resident_keys_max"] <= 2 * (3 + 1), bound

    def by_id(name: str) -> dict[str, Any]:
        return {p["id"]: p for p in without_ts(read(tmp_path / name / "predictions.jsonl"))}

    assert len(by_id("free")) == 600 and by_id("bound") == by_id("free")
    assert last_states(tmp_path / "bound", engine) == last_states(tmp_path / "free", engine)


class _LosesItsStore(JsonlFileSource):
    """A file source that, as it reads line ``at``, deletes every version the run's snapshot directory holds (a store
    that lost its data while cold keys waited in it)."""

    def __init__(self, path: Path, snapshots: Path, at: int, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.snapshots, self.at = snapshots, at

    def read_from(self, offset: int) -> Iterator[RawRecord]:
        for record in super().read_from(offset):
            if record.origin.offset == self.at:
                store = LocalSnapshotStore(self.snapshots)
                for key in store.keys():
                    store.delete(key)
            yield record


def run_losing_the_store(tmp_path: Path, lines: list[bytes], lost_state: str) -> dict[str, Any]:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / lost_state
    options = RunOptions(
        engine=ENGINES["logreg"], out=out, progress=False, console=False, signing_key=SIGNING_KEY, max_resident_keys=RESIDENT, lost_state=lost_state
    )
    return run(options, source=_LosesItsStore(path, out / "snapshots", at=len(lines) // 2, batch_size=20))


def test_a_store_that_loses_its_data_under_cold_keys_stops_the_run_or_with_new_learner_starts_them_afresh(tmp_path: Path) -> None:
    lines = stream(800, KEYS)
    with pytest.raises(SnapshotError, match="holds no version of it that can be read .* set snapshot.lost_state to new_learner"):
        run_losing_the_store(tmp_path, lines, "error")
    assert len(read(tmp_path / "error" / "predictions.jsonl")) < len(lines)

    summary = run_losing_the_store(tmp_path, lines, "new_learner")
    predicted = read(tmp_path / "new_learner" / "predictions.jsonl")
    assert sorted(p["id"] for p in predicted) == sorted(orjson.loads(line)["id"] for line in lines)  # each event once
    versions: dict[str, list[int]] = {}
    for p in predicted:
        versions.setdefault(p["key"], []).append(p["model_version"])
    jumps = {key: [b for a, b in zip(seen, seen[1:]) if b != a + 1] for key, seen in versions.items()}
    started_afresh = {key for key, to in jumps.items() if to}
    assert all(jumps[key] == [0] for key in started_afresh)  # once, back to a model that learned nothing
    assert summary["lost_states"] == len(started_afresh) == KEYS - RESIDENT, (summary, started_afresh)  # the cold keys, not the resident ones


def test_at_most_max_keys_keys_per_worker_evicted_ones_included_and_the_others_events_are_dead_letters(tmp_path: Path) -> None:
    """A stream of ever-new keys (a producer that put an event id in ``key``) cannot grow a worker without end."""
    lines = stream(800, KEYS)
    free = run_file(tmp_path, "free", lines, ENGINES["logreg"], batch_size=20)
    limited = run_file(tmp_path, "limited", lines, replace(ENGINES["logreg"], max_keys=10), max_resident_keys=3, batch_size=20)
    predicted = without_ts(read(tmp_path / "limited" / "predictions.jsonl"))
    held = {p["key"] for p in predicted}
    assert len(held) == limited["keys"] == 10 and limited["evictions"]["count"] >= 30  # held keys came back from the store: no new keys
    dead = read(tmp_path / "limited" / "dead_letters.jsonl")
    assert {d["reason"] for d in dead} == {"too_many_keys"} and not held & {orjson.loads(d["raw"])["key"] for d in dead}
    assert limited["events"] == len(lines) == len(predicted) + len(dead)  # every event predicted or a dead letter, once
    assert predicted == [p for p in without_ts(read(tmp_path / "free" / "predictions.jsonl")) if p["key"] in held]  # as if alone
    assert free["keys"] == KEYS and free["dead_letters"] == 0
