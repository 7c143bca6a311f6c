"""RunStats.summary: the run's figures from each key's latest metrics record."""

from stream_learner.app.run_stats import RunStats
from stream_learner.engine import StepOutput


def _metrics(key: str, failures: int | None) -> dict:
    record = {"type": "metrics", "key": key, "labelled": 10, "accuracy": 0.5, "drifts": 0, "concepts": 1, "forgetting": {}}
    if failures is not None:
        record["failures"] = failures
    return record


def test_summary_counts_model_failures_of_every_key_latest_record() -> None:
    stats = RunStats()
    stats.observe([StepOutput(metrics=[_metrics("a", 1)]), StepOutput(metrics=[_metrics("b", None)])])
    stats.observe([StepOutput(metrics=[_metrics("a", 2), _metrics("c", 3)])])
    assert stats.summary()["failures"] == 5  # a's latest says 2, b none, c 3


def test_summary_counts_every_feature_drift_record() -> None:
    stats = RunStats()
    drift = {"type": "feature_drift", "key": "a", "features": [{"name": "x", "psi": 0.5}], "statistic": "psi", "at_event": 10, "concept": 0, "ts": 0.0}
    stats.observe([StepOutput(metrics=[drift, _metrics("a", None)]), StepOutput(metrics=[{**drift, "key": "b"}])])
    assert stats.summary()["feature_drifts"] == 2 and RunStats().summary()["feature_drifts"] == 0


class _Listener:
    """A listener with the fleet hooks (a listener without them is also fine)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_evicted(self, key: str, seconds: float) -> None:
        self.calls.append(("evicted", key, seconds))

    def on_restored(self, key: str, seconds: float) -> None:
        self.calls.append(("restored", key, seconds))

    def on_lost(self, key: str) -> None:
        self.calls.append(("lost", key))

    def on_resident(self, n: int) -> None:
        self.calls.append(("resident", n))


def test_evictions_restores_and_resident_keys_are_counted_timed_and_passed_on() -> None:
    listener = _Listener()
    stats = RunStats(listener)
    stats.key_evicted("a", 0.5)
    stats.key_evicted("b", 1.5)
    stats.key_restored("a", 0.25)
    stats.key_lost("b")
    stats.resident_keys(7)
    stats.resident_keys(3)
    summary = stats.summary()
    assert summary["evictions"] == {"count": 2, "seconds": 2.0, "max_seconds": 1.5}
    assert summary["restores"] == {"count": 1, "seconds": 0.25, "max_seconds": 0.25}
    assert summary["resident_keys"] == 3 and summary["resident_keys_max"] == 7 and summary["lost_states"] == 1
    assert listener.calls == [("evicted", "a", 0.5), ("evicted", "b", 1.5), ("restored", "a", 0.25), ("lost", "b"), ("resident", 7), ("resident", 3)]


def test_a_listener_without_the_fleet_hooks_is_left_alone() -> None:
    class Plain:
        def on_read(self, n: int) -> None: ...

    stats = RunStats(Plain())
    stats.key_evicted("a", 0.1)
    stats.key_restored("a", 0.1)
    stats.resident_keys(1)
    assert stats.summary()["evictions"]["count"] == 1


def _record(key: str, events: int, accuracy: float | None, labelled: int | None = None) -> dict:
    return {
        "type": "metrics", "key": key, "events": events, "labelled": events if labelled is None else labelled, "accuracy": accuracy,
        "drifts": 0, "concepts": 1, "forgetting": {"average": None, "bwt": None, "matrix": [[0.5]], "columns": [0]},
    }  # fmt: skip


def _drift(key: str, at_event: int, detector: str = "adwin") -> dict:
    return {"type": "drift", "key": key, "detector": detector, "at_event": at_event, "concept": 1, "ts": 0.0}


def test_the_summary_aggregates_a_fleet_and_names_its_top_keys() -> None:
    stats = RunStats(top_keys=2)
    outputs = [StepOutput(predictions=[{"key": f"k{i}"}] * (i + 1), metrics=[_record(f"k{i}", i + 1, 0.1 * i)]) for i in range(10)]
    stats.observe(outputs)
    summary = stats.summary()
    assert summary["keys"] == 10 and summary["predictions"] == 55
    assert summary["accuracy_min"] == 0.0 and abs(summary["accuracy_mean"] - 0.45) < 1e-12  # each key once
    assert abs(summary["accuracy"] - sum(0.1 * i * (i + 1) for i in range(10)) / 55) < 1e-12  # weighted by labelled events
    assert summary["top_keys"]["by_events"] == [
        {"key": "k9", "events": 10, "accuracy": 0.1 * 9, "labelled": 10}, {"key": "k8", "events": 9, "accuracy": 0.1 * 8, "labelled": 9},
    ]  # fmt: skip
    # the least accurate among keys with at least the mean key's 5.5 labelled events: k0..k4 have too few to say
    assert [e["key"] for e in summary["top_keys"]["worst_accuracy"]] == ["k5", "k6"]


def test_the_totals_follow_each_keys_latest_record_not_the_sum_of_its_records() -> None:
    stats = RunStats()
    stats.observe([StepOutput(metrics=[_record("a", 10, 0.5), _record("b", 10, 0.9)])])
    stats.observe([StepOutput(metrics=[_record("a", 30, 0.7)])])
    summary = stats.summary()
    assert summary["labelled"] == 40 and abs(summary["accuracy"] - (0.7 * 30 + 0.9 * 10) / 40) < 1e-12
    assert summary["accuracy_min"] == 0.7 and stats.progress()["accuracy"] == summary["accuracy"]


def test_one_keys_accuracy_is_its_own_figure_exactly() -> None:
    stats = RunStats()
    stats.observe([StepOutput(metrics=[_record("a", 3, 0.1), _record("b", 3, None)])])
    assert stats.summary()["accuracy"] == 0.1  # not 0.1 * 3 / 3


def test_a_key_is_in_drift_until_its_own_events_pass_the_recent_window() -> None:
    stats = RunStats(drift_recent_events=100)
    stats.observe([StepOutput(metrics=[_record("a", 50, 0.5), _drift("a", 60), _drift("b", 5, detector="task"), _record("b", 50, 0.5)])])
    assert stats.summary()["keys_in_drift"] == 1  # a drifted; b's task switch is no detected drift
    stats.observe([StepOutput(metrics=[_record("a", 159, 0.5)])])
    assert stats.summary()["keys_in_drift"] == 1  # 99 events after its drift
    stats.observe([StepOutput(metrics=[_record("a", 160, 0.5)])])
    assert stats.summary()["keys_in_drift"] == 0


def test_latest_metrics_keeps_each_keys_figures_without_the_matrix() -> None:
    stats = RunStats()
    record = {**_record("a", 10, 0.5), "delayed_labels": {"received": 3}}
    stats.observe([StepOutput(metrics=[record])])
    latest = stats.latest_metrics["a"]
    assert latest["delayed_labels"] == {"received": 3} and latest["accuracy"] == 0.5
    assert "matrix" not in latest["forgetting"] and latest["forgetting"]["average"] is None


def test_records_of_other_kinds_on_the_metrics_output_are_passed_by() -> None:
    stats = RunStats()
    control = {"type": "control", "key": "a", "status": "applied", "ts": 0.0}
    stats.observe([StepOutput(metrics=[control, _record("a", 10, 0.5)])])
    assert stats.summary()["keys"] == 1 and stats.summary()["drifts"] == 0


def test_a_keys_figures_are_its_champions_and_promotions_are_counted() -> None:
    stats = RunStats()
    champion = {**_record("k", 100, 0.8), "candidate": "a", "champion": True}
    challenger = {**_record("k", 100, 0.6), "candidate": "b", "champion": False}
    promotion = {"type": "promotion", "key": "k", "champion": "a", "challenger": "b", "at_event": 100, "applied": True, "ts": 0.0, "evidence": {}}
    recommendation = {**promotion, "applied": False}
    stats.observe([StepOutput(metrics=[champion, challenger, {**_drift("k", 90), "champion": False}, promotion, recommendation])])
    summary = stats.summary()
    assert summary["accuracy"] == 0.8 and summary["keys_in_drift"] == 0
    assert (summary["promotions"], summary["promotion_recommendations"]) == (1, 1)


def test_an_earlier_concepts_model_back_is_counted_as_reuse_not_as_a_drift() -> None:
    stats = RunStats(drift_recent_events=100)
    reuse = {**_drift("a", 500, detector="recurring"), "reused_concept": 0}
    stats.observe([StepOutput(metrics=[_record("a", 400, 0.5), reuse, _record("a", 520, 0.6)])])
    summary = stats.summary()
    assert summary["concepts_reused"] == 1 and summary["keys_in_drift"] == 0
