"""New-label boundaries: a label never seen before marks a new concept (class-incremental streams)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from stream_learner.delayed import LabelRecord
from stream_learner.drift import DriftMonitor, NewLabelWatch
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec

NO_CHANGE = LearnerSpec("river.dummy.NoChangeClassifier")  # predicts the last label: wrong half the time on every task


def _class_incremental(tasks: int = 3, per_task: int = 300, seed: int = 0) -> list[Event]:
    """Task k holds classes 2k and 2k+1, interleaved at random."""
    rng = random.Random(seed)
    events = []
    for k in range(tasks):
        for _ in range(per_task):
            y = 2 * k + rng.randrange(2)
            i = len(events)
            events.append(Event(f"e{i}", "default", {"x": y + rng.gauss(0, 0.1)}, y, None, 0, i))
    return events


def _drifts(out: Any) -> list[tuple[str, int]]:
    return [(r["detector"], r["at_event"]) for r in out.metrics if r["type"] == "drift"]


def test_a_new_label_within_the_gap_joins_the_concept_and_one_after_it_starts_a_new_one() -> None:
    watch = NewLabelWatch(gap=3)
    marks = []
    for y in ["a", "b", "c", "a", "b", "a", "d", "e", "a", "b", "f"]:
        if watch.update(y):
            marks.append(y)
            watch.boundary()
    # "c" had 2 events before it since the start, "e" none since "d"; "d" and "f" had 3 or more
    assert marks == ["d", "f"]
    assert watch.seen == {"a", "b", "c", "d", "e", "f"}
    with pytest.raises(ConfigError, match="at least 1"):
        NewLabelWatch(gap=0)


def test_the_engine_finds_every_task_of_a_class_incremental_stream_where_the_error_does_not_rise() -> None:
    events = _class_incremental()
    adwin_only = KeyedLearner("default", EngineConfig(learner=NO_CHANGE))
    adwin_only.process(events, now=0.0)
    assert adwin_only.concepts == 1  # the error stays near 0.5 across the changes: nothing for ADWIN to find

    step = KeyedLearner("default", EngineConfig(learner=NO_CHANGE, new_label_gap=100))
    out = step.process(events, now=0.0)
    assert _drifts(out) == [("new_label", 300), ("new_label", 600)]
    assert step.concepts == 3 and step.drifts == 2
    # the first event of a task is learned in the new concept, as with an explicit task switch
    assert [p["concept"] for p in out.predictions[299:302]] == [0, 1, 1]
    assert [p["concept"] for p in out.predictions[599:602]] == [1, 2, 2]
    assert {y for _, y in step.forgetting._samples[1].items} == {2, 3}  # each concept's sample holds only its own classes


def test_after_a_new_label_boundary_the_error_detector_starts_on_the_new_concept() -> None:
    monitor = DriftMonitor("adwin", {"clock": 1})
    for _ in range(1000):
        monitor.update(0.0)
    monitor.reset()
    assert not any(monitor.update(1.0) for _ in range(200))  # errors of the new concept only: no rise to find
    monitor = DriftMonitor("adwin", {"clock": 1})
    for _ in range(1000):
        monitor.update(0.0)
    assert any(monitor.update(1.0) for _ in range(200))  # without the reset the same errors are a drift


def test_a_regression_model_refuses_new_label_boundaries() -> None:
    with pytest.raises(ConfigError, match="classification"):
        KeyedLearner("default", EngineConfig(learner=LearnerSpec("linreg"), new_label_gap=100))


def test_a_learner_restored_from_a_run_without_a_watch_knows_its_labels_from_its_samples() -> None:
    events = _class_incremental(tasks=2, per_task=200)
    before = KeyedLearner("default", EngineConfig(learner=NO_CHANGE))
    before.process(events[:200], now=0.0)
    restored = KeyedLearner.restore(before.snapshot().payload, EngineConfig(learner=NO_CHANGE, new_label_gap=50))
    out = restored.process(events[200:], now=0.0)
    assert _drifts(out) == [("new_label", 200)]  # labels 0 and 1 are not new after the restore; label 2 or 3 is

    again = KeyedLearner.restore(restored.snapshot().payload, EngineConfig(learner=NO_CHANGE))
    assert again.concept_tracker.new_labels is None  # a run without the option drops the watch


def test_a_new_label_arriving_late_on_the_labels_topic_marks_the_boundary_too() -> None:
    events = _class_incremental(tasks=2, per_task=200)
    step = KeyedLearner("default", EngineConfig(learner=NO_CHANGE, new_label_gap=50, label_window=1000))
    step.process(events[:200], now=0.0)
    unlabelled = [Event(e.id, e.key, e.features, None, None, 0, e.offset) for e in events[200:210]]
    out = step.process(unlabelled, now=1.0)
    assert _drifts(out) == [] and step.concepts == 1  # predicted, labels not known yet
    out = step.process([LabelRecord(e.id, e.key, e.label) for e in events[200:210]], now=2.0)
    assert _drifts(out) == [("new_label", 210)] and step.concepts == 2
