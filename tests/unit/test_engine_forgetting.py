"""Live forgetting through the learner step, on streams where it is known to happen or not."""

from __future__ import annotations

import random

import pytest

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event, MetricsRecord
from stream_learner.forgetting import average_forgetting
from stream_learner.learners.base import LearnerSpec


def _task_stream(rule, offset: float, task: str, n: int, start: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for i in range(start, start + n):
        x = offset + rng.random()
        events.append(Event(f"e{i}", "default", {"x": x}, rule(x - offset), task, 0, i))
    return events


def _run(model: str, second_rule, second_offset: float) -> dict:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec(model), detector=None, forgetting_every=500))
    events = _task_stream(lambda u: u > 0.5, 0.0, "a", 2000, 0, 1) + _task_stream(second_rule, second_offset, "b", 2000, 2000, 2)
    step.process(events, now=0.0)
    record = step.finish(now=0.0).metrics[0]
    MetricsRecord.model_validate(record)
    return record["forgetting"]


def test_learning_an_opposite_concept_is_measured_as_forgetting() -> None:
    forgetting = _run("logreg", lambda u: u <= 0.5, 0.0)
    assert forgetting["columns"] == [0, 1]
    assert forgetting["average"] > 0.5
    assert forgetting["bwt"] < -0.5
    first_column = [row[0] for row in forgetting["matrix"]]
    assert max(first_column) > 0.9 and first_column[-1] < 0.3


def test_a_separate_region_learned_by_a_tree_is_not_forgotten() -> None:
    forgetting = _run("hoeffding_tree", lambda u: u > 0.5, 5.0)
    assert forgetting["average"] is not None and forgetting["average"] < 0.05
    assert forgetting["average_accuracy"] > 0.85


def test_live_figures_equal_the_offline_definitions_on_the_published_matrix() -> None:
    forgetting = _run("logreg", lambda u: u <= 0.5, 0.0)
    matrix = forgetting["matrix"]  # 4000 events, every 500 plus a boundary and the end: all rows kept
    assert len(matrix) == 10
    assert forgetting["average"] == pytest.approx(average_forgetting(matrix, current=1))


def test_holdout_events_are_not_learned() -> None:
    config = EngineConfig(learner=LearnerSpec("logreg"), detector=None, forgetting_sample=50, forgetting_holdout=True)
    step = KeyedLearner("default", config)
    step.process(_task_stream(lambda u: u > 0.5, 0.0, "a", 500, 0, 3), now=0.0)
    plain = KeyedLearner("default", EngineConfig(learner=LearnerSpec("logreg"), detector=None))
    plain.process(_task_stream(lambda u: u > 0.5, 0.0, "a", 500, 0, 3), now=0.0)
    assert step.learner.model["LogisticRegression"].weights != plain.learner.model["LogisticRegression"].weights


def test_a_regression_model_measures_forgetting_in_mean_absolute_error() -> None:
    step = KeyedLearner("default", EngineConfig(learner=LearnerSpec("linreg"), detector=None, forgetting_every=500))
    events = _task_stream(lambda u: 10 * u, 0.0, "a", 2000, 0, 1) + _task_stream(lambda u: -10 * u, 0.0, "b", 2000, 2000, 2)
    step.process(events, now=0.0)
    record = step.finish(now=0.0).metrics[0]
    MetricsRecord.model_validate(record)
    forgetting = record["forgetting"]
    assert forgetting["metric"] == "mae" and forgetting["average_accuracy"] is None
    first_column = [row[0] for row in forgetting["matrix"]]
    assert min(first_column) < 0.5 and first_column[-1] > 3  # y = 10u learned, then unlearned by y = -10u
    assert forgetting["average"] > 3 and forgetting["bwt"] < -3
    assert forgetting["average_mae"] == pytest.approx(sum(forgetting["matrix"][-1]) / 2)
