from __future__ import annotations

import random

import pytest

from stream_learner.forgetting import ForgettingTracker, average_accuracy, average_forgetting, bwt


def test_metrics_on_a_hand_made_matrix() -> None:
    # three concepts learned in turn; evaluation rows at the end of each
    R = [
        [0.95, None, None],
        [0.60, 0.90, None],
        [0.50, 0.70, 0.80],
    ]
    assert average_accuracy(R[-1]) == pytest.approx((0.5 + 0.7 + 0.8) / 3)
    # best earlier: concept 0 -> 0.95, concept 1 -> 0.90
    assert average_forgetting(R, current=2) == pytest.approx(((0.95 - 0.50) + (0.90 - 0.70)) / 2)
    assert bwt(R, current=2, ends={0: 0, 1: 1}) == pytest.approx(((0.50 - 0.95) + (0.70 - 0.90)) / 2)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first() -> None:
    R = [[0.5], [0.9, None], [0.6, 0.8]]
    assert average_forgetting(R, current=1) == pytest.approx(0.3)
    assert bwt(R, current=1, ends={0: 1}) == pytest.approx(-0.3)


def test_no_past_concept_means_no_forgetting() -> None:
    assert average_forgetting([[0.7]], current=0) is None
    assert bwt([[0.7]], current=0, ends={}) is None
    assert average_accuracy([None, None]) is None


def _table_model(table: dict[int, int]):
    return lambda x: table.get(x, -1)


def test_live_tracker_agrees_with_the_offline_definitions() -> None:
    tracker = ForgettingTracker(sample_size=50, seed=0)
    rng = random.Random(0)
    memory: dict[int, int] = {}
    matrix, ends, current = [], {}, 0
    for concept in range(3):
        for _step in range(4):
            for _ in range(100):
                x = rng.randrange(1000) + 1000 * concept
                tracker.observe(concept, x, x % 2)
                memory[x] = x % 2 if rng.random() < 0.9 else 1 - x % 2
            # the model forgets part of older concepts
            for key in list(memory):
                if key // 1000 < concept and rng.random() < 0.2:
                    memory[key] = 1 - memory[key]
            row = tracker.evaluate(_table_model(memory), current=concept)
            matrix.append([row.get(c) for c in range(3)])
            ends[concept] = len(matrix) - 1
            live = tracker.summary()
            current = concept
            past_ends = {c: e for c, e in ends.items() if c != current}
            assert live["average"] == pytest.approx(average_forgetting(matrix, current)) if past_ends else live["average"] is None
            assert live["bwt"] == pytest.approx(bwt(matrix, current, past_ends)) if past_ends else live["bwt"] is None
            assert live["average_accuracy"] == pytest.approx(average_accuracy(matrix[-1]))
    assert live["average"] > 0.1 and live["bwt"] < -0.1  # forgetting did happen


def test_reservoir_and_matrix_stay_bounded() -> None:
    tracker = ForgettingTracker(sample_size=20, max_concepts=3, max_rows=4)
    for concept in range(6):
        for i in range(500):
            tracker.observe(concept, i, 0)
        tracker.evaluate(lambda x: 0, current=concept)
    summary = tracker.summary()
    assert summary["columns"] == [3, 4, 5]
    assert len(summary["matrix"]) == 4 and all(len(row) == 3 for row in summary["matrix"])
    assert summary["matrix"][-1] == [1.0, 1.0, 1.0]
    assert sum(len(s.items) for s in tracker._samples.values()) <= 60
    assert len(tracker._samples) == 3


def test_holdout_keeps_sampled_events_out_of_training() -> None:
    tracker = ForgettingTracker(sample_size=5, holdout=True, seed=1)
    held = [tracker.observe(0, i, 0) for i in range(100)]
    assert held[:5] == [True] * 5
    assert 5 <= sum(held) < 40
    assert ForgettingTracker(sample_size=5).observe(0, 1, 0) is False


def test_each_event_of_a_concept_is_equally_likely_to_be_in_its_sample() -> None:
    n, k, runs = 200, 10, 3000
    hits = [0] * n
    for seed in range(runs):
        tracker = ForgettingTracker(sample_size=k, seed=seed)
        for i in range(n):
            tracker.observe(0, i, 0)
        sample = tracker._samples[0].items
        assert len(sample) == k and len(set(sample)) == k
        for x, _ in sample:
            hits[x] += 1
    expected = runs * k / n  # 150 per event
    assert all(abs(h - expected) < 5 * expected**0.5 for h in hits), (min(hits), max(hits))
    first, last = sum(hits[:50]), sum(hits[-50:])  # early and late events alike
    assert abs(first - last) < 0.1 * first


def test_a_regression_matrix_holds_errors_and_forgetting_is_the_error_gained() -> None:
    tracker = ForgettingTracker(sample_size=2, task="regression")
    for concept, items in {0: [(1.0, 1.0), (2.0, 2.0)], 1: [(10.0, 20.0), (11.0, 22.0)]}.items():
        for x, y in items:
            assert tracker.observe(concept, x, y) is False
    identity, double = (lambda x: x), (lambda x: 2 * x)
    assert tracker.evaluate(identity, current=0) == {0: 0.0, 1: 10.5}  # concept 0 learned, 1 not yet
    assert tracker.evaluate(double, current=1) == {0: 1.5, 1: 0.0}  # concept 1 learned, 0 forgotten
    summary = tracker.summary()
    assert summary["metric"] == "mae" and summary["average_accuracy"] is None
    assert summary["average_mae"] == 0.75 and summary["matrix"] == [[0.0, 10.5], [1.5, 0.0]]
    assert summary["average"] == 1.5 and summary["bwt"] == -1.5  # worse reads as for accuracy: forgetting > 0, BWT < 0
    classifier = ForgettingTracker(sample_size=2)
    assert classifier.summary()["metric"] == "accuracy"
