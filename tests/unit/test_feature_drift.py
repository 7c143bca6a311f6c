"""Input drift: a feature that moves is flagged and named; a stable stream, or one whose labels alone move, raises nothing."""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest
from river.datasets import synth

from stream_learner.errors import SnapshotError
from stream_learner.feature_drift import FeatureDriftMonitor


def _event(rng: random.Random, shift: float = 0.0, colours: str = "rgb", missing_rate: float = 0.0) -> dict[str, Any]:
    x: dict[str, Any] = {"a": rng.gauss(0, 1), "b": rng.gauss(shift, 1), "c": rng.choice(colours), "n": rng.randint(0, 9)}
    if rng.random() < missing_rate:
        del x["a"]
    return x


def _first_drift(monitor: FeatureDriftMonitor, events: list[dict[str, Any]]) -> tuple[int, list[tuple[Any, float]]] | None:
    for i, x in enumerate(events):
        drift = monitor.update(x)
        if drift:
            return i, drift
    return None


def test_a_feature_whose_mean_moves_is_flagged_and_named() -> None:
    rng = random.Random(3)
    monitor = FeatureDriftMonitor()
    assert _first_drift(monitor, [_event(rng) for _ in range(5000)]) is None
    found = _first_drift(monitor, [_event(rng, shift=1.0) for _ in range(3000)])
    assert found is not None
    at, drift = found
    assert at < 2000  # within two windows of the shift
    assert [name for name, _ in drift] == ["b"]
    assert drift[0][1] >= monitor.threshold


def test_features_are_ranked_by_how_far_they_moved() -> None:
    rng = random.Random(4)
    monitor = FeatureDriftMonitor(window=500, every=10**6)
    _first_drift(monitor, [{"small": rng.gauss(0, 1), "large": rng.gauss(0, 1), "still": rng.gauss(0, 1)} for _ in range(500)])
    _first_drift(monitor, [{"small": rng.gauss(1.0, 1), "large": rng.gauss(3, 1), "still": rng.gauss(0, 1)} for _ in range(500)])
    drift = monitor.check()
    assert drift is not None and [name for name, _ in drift] == ["large", "small"]
    assert drift[0][1] > drift[1][1] >= monitor.threshold


def test_a_categorical_distribution_and_missing_values_are_watched_too() -> None:
    rng = random.Random(5)
    monitor = FeatureDriftMonitor()
    _first_drift(monitor, [_event(rng) for _ in range(2000)])
    found = _first_drift(monitor, [_event(rng, colours="rrrrb") for _ in range(3000)])
    assert found is not None and [name for name, _ in found[1]] == ["c"]
    _first_drift(monitor, [_event(rng, colours="rrrrb") for _ in range(2000)])  # the new reference
    found = _first_drift(monitor, [_event(rng, colours="rrrrb", missing_rate=0.5) for _ in range(3000)])
    assert found is not None and [name for name, _ in found[1]] == ["a"]


def test_a_stable_stream_raises_nothing_over_100k_events_at_the_defaults() -> None:
    rng = random.Random(6)
    monitor = FeatureDriftMonitor()
    assert _first_drift(monitor, [_event(rng, missing_rate=0.1) for _ in range(100_000)]) is None
    assert monitor.references is not None and set(monitor.references) == {"a", "b", "c", "n"}


def test_a_drift_of_the_labels_alone_is_not_an_input_drift() -> None:
    # SEA's concepts differ only in the threshold on x0 + x1: the features are uniform throughout
    stream = synth.ConceptDriftStream(synth.SEA(variant=0, seed=1), synth.SEA(variant=3, seed=2), position=20_000, width=1_000, seed=3)
    monitor = FeatureDriftMonitor()
    assert _first_drift(monitor, [x for x, _ in stream.take(40_000)]) is None


def test_the_state_round_trips_and_the_restored_monitor_goes_on_identically() -> None:
    rng = random.Random(7)
    events = [_event(rng, missing_rate=0.05) for _ in range(1700)] + [_event(rng, shift=2.0) for _ in range(2500)]
    monitor = FeatureDriftMonitor(window=400, every=100)
    for x in events[:1500]:
        monitor.update(x)
    state = monitor.state_dict()
    restored = FeatureDriftMonitor.from_state(pickle.loads(pickle.dumps(state)))
    assert restored.state_dict() == state
    assert [restored.update(x) for x in events[1500:]] == [monitor.update(x) for x in events[1500:]]
    with pytest.raises(SnapshotError, match=r"^the feature drift monitor' state has version 99; this release reads version 1 \(a snapshot of a newer release\?\)$"):
        FeatureDriftMonitor.from_state({**state, "version": 99})


def test_memory_is_bounded_by_the_window_and_the_feature_cap() -> None:
    monitor = FeatureDriftMonitor(window=100, every=50, max_features=5)
    for i in range(1000):
        monitor.update({f"f{j}": float(i % 7) for j in range(50)})
    assert len(monitor.values) == 5
    assert all(len(recent) <= 100 for recent in monitor.values.values())


@pytest.mark.parametrize("params", [{"window": 0}, {"window": 1}, {"every": -1}, {"threshold": 0}, {"bins": 1}, {"max_features": True}])
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="feature drift"):
        FeatureDriftMonitor(**params)
