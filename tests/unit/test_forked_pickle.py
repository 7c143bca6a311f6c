from __future__ import annotations

import os
import pickle

import pytest

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import SnapshotError
from stream_learner.events import Event
from stream_learner.forked_pickle import CAN_FORK, ForkedPickle
from stream_learner.learners.base import LearnerSpec
from stream_learner.state import encode

pytestmark = pytest.mark.skipif(not CAN_FORK, reason="forked snapshots are for Linux")


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_large_payload_arrives_whole_and_the_child_is_reaped() -> None:
    value = {"blob": os.urandom(3_000_000), "n": 7}
    pending = ForkedPickle.start(value)
    assert pickle.loads(pending.result()) == value
    assert pending.result() == pending.result()  # read once
    assert _gone(pending._pid)


def test_the_child_pickles_the_object_as_it_was_when_started() -> None:
    state = {"events": 1}
    pending = ForkedPickle.start(state)
    state["events"] = 2  # the parent moves on at once
    assert pickle.loads(pending.result()) == {"events": 1}


def test_a_discarded_pickle_ends_its_child() -> None:
    pending = ForkedPickle.start({"blob": os.urandom(2_000_000)})
    pending.discard()
    assert _gone(pending._pid)


def test_the_learners_periodic_snapshot_is_forked_and_equals_encoding_its_state_in_place() -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("hoeffding_tree"), snapshot_every=500))
    events = [Event(str(i), "k", {"a": float(i % 7), "b": float(i % 3)}, i % 7 > 3, None, 0, i) for i in range(500)]
    out = step.process(events, now=0.0)
    assert isinstance(out.snapshot.pickled, ForkedPickle)
    assert out.snapshot.payload == encode(step.state_dict())
    restored = KeyedLearner.restore(out.snapshot.payload, step.config)
    assert restored.events == 500 and restored.learner.predict({"a": 5.0, "b": 1.0}) == step.learner.predict({"a": 5.0, "b": 1.0})
    assert isinstance(step.finish(now=1.0).snapshot.pickled, bytes)  # the last one is made in place


def test_a_failure_in_the_child_is_raised_in_the_parent_with_its_reason() -> None:
    pending = ForkedPickle.call(lambda: encode({"model": object()}))
    with pytest.raises(SnapshotError, match=r"^the snapshot's child process failed: TypeError: a learner state holds a builtins.object, which is not plain data$"):
        pending.result()
    assert _gone(pending._pid)
