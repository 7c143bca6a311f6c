"""Bytewax recovery states: every learner of a worker that changed is encoded by one forked child at an epoch's close."""

from __future__ import annotations

from typing import Any

import pytest
from state_checks import assert_same_state

from stream_learner.app.dataflow import RecoveryStates
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.forked_pickle import CAN_FORK, ForkedPickle
from stream_learner.learners.base import LearnerSpec
from stream_learner.state import decode

pytestmark = pytest.mark.skipif(not CAN_FORK, reason="forked states are for Linux")

CONFIG = EngineConfig(learner=LearnerSpec("hoeffding_tree"), snapshot_seconds=0.0)


def _learned(key: str, start: int, n: int, step: KeyedLearner | None = None) -> KeyedLearner:
    step = step or KeyedLearner(key, CONFIG)
    step.process([Event(f"{key}{i}", key, {"a": float(i % 7), "b": float(i % 3)}, i % 7 > 3, None, 0, i) for i in range(start, start + n)], now=0.0)
    return step


def test_one_fork_makes_the_states_of_every_learner_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    forks: list[int] = []
    real = ForkedPickle.call.__func__  # type: ignore[attr-defined]

    def counted(cls: type[ForkedPickle], produce: Any) -> ForkedPickle:
        forks.append(1)
        return real(cls, produce)

    monkeypatch.setattr(ForkedPickle, "call", classmethod(counted))
    states = RecoveryStates()
    learners = [_learned(key, 0, 200) for key in "abc"]
    for learner in learners:
        states.changed(learner)
    made = {learner.key: states.state(learner) for learner in learners}  # an epoch's close: each key asked in turn
    assert len(forks) == 1
    for learner in learners:
        assert_same_state(decode(made[learner.key]), learner.state_dict())
    _learned("b", 200, 100, learners[1])
    states.changed(learners[1])
    later = states.state(learners[1])
    assert len(forks) == 2 and decode(later)["events"] == 300  # only b changed: its state alone made again
    restored = KeyedLearner.restore(later, CONFIG)
    probe = {"a": 5.0, "b": 1.0}
    assert restored.events == 300 and restored.learner.predict(probe) == learners[1].learner.predict(probe)
