"""A snapshot round writes only the keys that changed since their last snapshot.

With forgetting tracking on, the end of a stream adds a last evaluation row
to every key's state, a change that its final snapshot holds; with it off
(``forgetting_sample=0``, the fleets' setting) a key idle since its last
snapshot has nothing new to write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bytewax.testing import TestingSink, run_main

from connectors.base import OffsetSource
from stream_learner.app.dataflow import Sinks, build_dataflow
from stream_learner.app.run_stats import RunStats
from stream_learner.engine import EngineConfig
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import Snapshot


class _Keyed(OffsetSource):
    """Ten events of ``a`` and ten of ``b`` (one source batch), then five more of ``a`` (the next batch)."""

    KEYS = ["a"] * 10 + ["b"] * 10 + ["a"] * 5

    def read_from(self, offset: int) -> Iterator[Any]:
        for i in range(offset, len(self.KEYS)):
            yield Event(str(i), self.KEYS[i], {"x": float(i % 3)}, i % 2, None, 0, i)


def test_the_end_of_a_stream_writes_only_the_keys_that_changed_since_their_snapshot() -> None:
    snapshots: list[Snapshot] = []
    config = EngineConfig(learner=LearnerSpec("logreg"), snapshot_every=10, snapshot_seconds=0.0, forgetting_sample=0)
    run_main(build_dataflow(_Keyed(batch_size=20), config, Sinks(snapshots=[TestingSink(snapshots)]), RunStats()))
    for snapshot in snapshots:
        snapshot.discard()
    written = sorted((s.key, s.events_seen) for s in snapshots)
    assert written == [("a", 10), ("a", 15), ("b", 10)]  # b's state at the end is the one its snapshot at its 10th event holds
