"""A worker holds at most ``max_keys`` model keys: a new key beyond them gets dead letters and refusals, and nothing is kept for it."""

from __future__ import annotations

from stream_learner.app.dataflow import KeyCount, Read, _LearnerLogic
from stream_learner.control import Command
from stream_learner.delayed import LabelRecord
from stream_learner.engine import EngineConfig
from stream_learner.events import Event, EventBatch
from stream_learner.slot import new_step
from stream_learner.state import encode

CONFIG = EngineConfig(source="in", max_keys=1)


def _logic(keys: KeyCount, resume_state: bytes | None = None) -> _LearnerLogic:
    return _LearnerLogic(CONFIG, lambda key: None, None, resume_state, keys)


def test_a_key_beyond_the_limit_gets_dead_letters_and_refusals_and_is_discarded() -> None:
    keys = KeyCount(CONFIG.max_keys)
    first = _logic(keys)
    answers, discard = first.on_batch([Read(1.0, [Event("a-0", "a", {"x": 1.0}, True, None, 0, 0)])])
    assert (len(answers[0].out.predictions), discard) == (1, first.RETAIN) and keys.held == 1

    second = _logic(keys)
    reads = [
        Read(2.0, [Event("b-0", "b", {"x": 1.0}, True, None, 0, 1), LabelRecord("b-9", "b", True)]),
        Read(3.0, EventBatch("in", "b", 0, 2, [({"x": 2.0}, False), ({"x": 3.0}, True)])),
        Read(4.0, Command("c-1", "b", "pause-learning", None, issued_at=0.0)),
    ]
    answers, discard = second.on_batch(reads)
    assert discard == second.DISCARD and second.learner is None and keys.held == 1  # nothing of b kept, nothing counted
    assert [answer.read_at for answer in answers] == [2.0, 3.0, 4.0]
    letters = [letter for answer in answers for letter in answer.out.dead_letters]
    assert [(d["reason"], d["origin"]["offset"]) for d in letters] == [("too_many_keys", 1), ("too_many_keys", -1), ("too_many_keys", 2), ("too_many_keys", 3)]
    assert letters[0]["error"] == "model key 'b' would be a worker's key 2, over the limit of 1 (--max-keys)"
    assert not any(answer.out.predictions for answer in answers)
    [refusal] = answers[2].out.metrics
    assert (refusal["type"], refusal["key"], refusal["status"]) == ("control", "b", "refused") and "(--max-keys)" in refusal["reason"]  # type: ignore[typeddict-item]


def test_keys_restored_from_recovery_state_count() -> None:
    keys = KeyCount(CONFIG.max_keys)
    learner = new_step("a", CONFIG)
    learner.process([Event("a-0", "a", {"x": 1.0}, True, None, 0, 0)], now=0.0)
    recovered = _logic(keys, resume_state=encode(learner.state_dict()))
    assert keys.held == 1 and recovered.learner is not None
    assert _logic(keys).on_batch([Read(1.0, [Event("b-0", "b", {"x": 1.0}, True, None, 0, 1)])])[0][0].out.dead_letters  # the recovered key holds the place
