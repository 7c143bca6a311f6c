"""Input drift: the features' distribution moving marks a concept boundary when ``boundaries`` says so, labels or not."""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError
from stream_learner.events import DriftRecord, Event, FeatureDriftRecord
from stream_learner.learners.base import LearnerSpec

WATCH = {"window": 200, "every": 100}
EWC = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=1, strategy="ewc")


def _events(labelled: int = 600, shifted: int = 600, seed: int = 0) -> list[Event]:
    """``labelled`` labelled events, then ``shifted`` unlabelled ones whose ``f0`` moved by two standard deviations."""
    rng = random.Random(seed)
    events = []
    for i in range(labelled + shifted):
        x = {f"f{j}": rng.gauss(2.0 if i >= labelled and j == 0 else 0.0, 1.0) for j in range(4)}
        events.append(Event(f"e{i}", "k", x, (x["f1"] > 0) if i < labelled else None, None, 0, i))
    return events


def _records(out: Any, kind: str) -> list[dict[str, Any]]:
    return [r for r in out.metrics if r["type"] == kind]


def test_a_feature_shift_without_labels_starts_a_concept_and_ewc_consolidates() -> None:
    step = KeyedLearner("k", EngineConfig(learner=EWC, feature_drift=WATCH, boundaries="feature", metrics_every=100))
    events = _events()
    out = step.process(events[:600], now=0.0)
    assert (step.concepts, step.learner.strategies[0].anchors) == (1, 0)  # no drift among the labelled events
    out = step.process(events[600:], now=1.0)
    (feature,) = _records(out, "feature_drift")
    FeatureDriftRecord.model_validate(feature)
    assert feature["features"][0]["name"] == "f0" and feature["concept"] == 1 and 600 < feature["at_event"] < 1200
    (drift,) = _records(out, "drift")
    DriftRecord.model_validate(drift)
    assert (drift["detector"], drift["at_event"], drift["concept"]) == ("feature", feature["at_event"], 1)
    assert (step.concepts, step.drifts, step.failures, step.learner.strategies[0].anchors) == (2, 1, 0, 1)
    concepts = [p["concept"] for p in out.predictions]
    first = feature["at_event"] - 600  # the event whose check found the drift is the new concept's first
    assert concepts == [0] * first + [1] * (600 - first)


def test_with_error_boundaries_a_feature_drift_is_reported_but_starts_no_concept() -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"), feature_drift=WATCH, boundaries="error"))
    out = step.process(_events(), now=0.0)
    assert [r["features"][0]["name"] for r in _records(out, "feature_drift")] == ["f0"]
    assert (step.concepts, step.drifts, _records(out, "drift")) == (1, 0, [])


def test_a_feature_boundary_mid_batch_is_as_one_event_per_call() -> None:
    """``reset`` replaces the model at the boundary: the rest of the batch must reach the new one."""
    config = EngineConfig(learner=LearnerSpec("logreg", strategy="reset"), feature_drift=WATCH, boundaries="both")
    events = [Event(e.id, e.key, e.features, e.features["f1"] > 0, None, 0, e.offset) for e in _events()]  # labelled throughout
    whole, one_by_one = KeyedLearner("k", config), KeyedLearner("k", config)
    batched = list(whole.process(events, now=0.0).predictions)
    single = [p for event in events for p in one_by_one.process([event], now=0.0).predictions]
    assert batched == single and whole.concepts == one_by_one.concepts >= 2
    assert pickle.dumps(whole.learner.model) == pickle.dumps(one_by_one.learner.model)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"feature_drift": {"window": 1}}, "bad parameters for feature drift: feature drift: window and bins must be at least 2"),
        ({"feature_drift": {"nope": 1}}, "bad parameters for feature drift: .*nope"),
        ({"boundaries": "feature"}, "boundaries 'feature' need the features' drift watched"),
        ({"boundaries": "sometimes", "feature_drift": {}}, "boundaries must be one of error, feature, both, not 'sometimes'"),
    ],
)
def test_bad_feature_drift_settings_are_config_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KeyedLearner("k", EngineConfig(**settings))
