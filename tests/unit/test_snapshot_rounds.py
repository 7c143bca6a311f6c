"""The dataflow takes the snapshots that came due together: one forked child per round, not one per key (issue #17)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bytewax.testing import TestingSink, run_main

from connectors.base import OffsetSource
from stream_learner.app.dataflow import Sinks, build_dataflow
from stream_learner.app.run_stats import RunStats
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.forked_pickle import ForkedPickle
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import Snapshot

KEYS = 30


class _Fleet(OffsetSource):
    """Ten events of each of 30 keys, interleaved, in one source batch: every key's snapshot comes due in that batch."""

    def read_from(self, offset: int) -> Iterator[Any]:
        for i in range(offset, 10 * KEYS):
            yield Event(str(i), f"k{i % KEYS}", {"x": float(i % 3)}, i % 2, None, 0, i)


def test_a_batch_of_due_keys_is_one_forked_round(monkeypatch: pytest.MonkeyPatch) -> None:
    forks: list[int] = []
    call = ForkedPickle.call

    def counted(produce: Any) -> ForkedPickle:
        forks.append(1)
        return call(produce)

    monkeypatch.setattr(ForkedPickle, "call", staticmethod(counted))
    snapshots: list[Snapshot] = []
    config = EngineConfig(learner=LearnerSpec("logreg"), snapshot_every=10, snapshot_seconds=0.0)
    run_main(build_dataflow(_Fleet(batch_size=10 * KEYS), config, Sinks(snapshots=[TestingSink(snapshots)]), RunStats()))

    assert len(forks) == 1  # the mid-stream snapshots of all 30 keys; the final ones are encoded in place
    mid = [s for s in snapshots if type(s.pickled).__name__ == "RoundShare"]
    assert sorted(s.key for s in mid) == sorted(f"k{i}" for i in range(KEYS)) and {s.events_seen for s in mid} == {10}
    for snapshot in mid:  # each share holds its own key's learner as it was at the round
        learner = KeyedLearner.restore(snapshot.payload, config)
        assert (learner.key, learner.events, learner.next_offsets) == (snapshot.key, 10, {0: 10 * KEYS - KEYS + int(snapshot.key[1:]) + 1})
    for snapshot in snapshots:
        snapshot.discard()


def test_a_round_restarts_each_learners_undo_journal_from_its_snapshot() -> None:
    from stream_learner.app.dataflow import SnapshotRounds

    config = EngineConfig(learner=LearnerSpec("logreg"), detector=None, snapshot_rounds=True)
    steps = [KeyedLearner(f"k{i}", config) for i in range(3)]
    rounds = SnapshotRounds()

    def learn_then_round(start: int, n: int) -> None:
        for i, step in enumerate(steps):
            step.process([Event(f"{i}-{j}", step.key, {"x": float(j % 3)}, j % 2, None, 0, j) for j in range(start, start + n)], now=0.0)
            rounds.due(step)
        for snapshot in rounds.take():
            assert snapshot.payload  # as the snapshot writer reads it

    learn_then_round(0, 40)
    learn_then_round(40, 10)
    # the first round's snapshot became each journal's start once the second was taken: only the 10 examples since are logged
    assert [len(step.guard.journal.xs) for step in steps] == [10, 10, 10]


def test_a_round_waits_for_the_last_to_be_min_seconds_old_and_takes_the_keys_due_meanwhile_as_they_are_then() -> None:
    from stream_learner.app.dataflow import SnapshotRounds

    config = EngineConfig(learner=LearnerSpec("logreg"), detector=None, snapshot_rounds=True)
    steps = [KeyedLearner(f"k{i}", config) for i in range(3)]
    now = [100.0]
    rounds = SnapshotRounds(min_seconds=30.0, clock=lambda: now[0])

    def learn(step: KeyedLearner, start: int, n: int) -> None:
        step.process([Event(f"{step.key}-{j}", step.key, {"x": float(j % 3)}, j % 2, None, 0, j) for j in range(start, start + n)], now=0.0)

    learn(steps[0], 0, 5)
    rounds.due(steps[0])
    first = rounds.take()
    assert [(s.key, s.events_seen) for s in first] == [("k0", 5)]
    now[0] = 110.0
    for step in steps[1:]:
        learn(step, 0, 5)
        rounds.due(step)
    assert rounds.take() == [] and len(rounds) == 2  # 10 s after the last round: they wait
    now[0] = 125.0
    learn(steps[1], 5, 7)  # k1 learns on while it waits
    assert rounds.take() == [] and len(rounds) == 2
    now[0] = 130.0
    second = rounds.take()
    assert sorted((s.key, s.events_seen) for s in second) == [("k1", 12), ("k2", 5)] and len(rounds) == 0
    assert KeyedLearner.restore(next(s for s in second if s.key == "k1").payload, config).events == 12
    for snapshot in first + second:
        snapshot.discard()
