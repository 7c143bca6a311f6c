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

    def on_resident(self, n: int) -> None:
        self.calls.append(("resident", n))


def test_evictions_restores_and_resident_keys_are_counted_timed_and_passed_on() -> None:
    listener = _Listener()
    stats = RunStats(listener)
    stats.key_evicted("a", 0.5)
    stats.key_evicted("b", 1.5)
    stats.key_restored("a", 0.25)
    stats.resident_keys(7)
    stats.resident_keys(3)
    summary = stats.summary()
    assert summary["evictions"] == {"count": 2, "seconds": 2.0, "max_seconds": 1.5}
    assert summary["restores"] == {"count": 1, "seconds": 0.25, "max_seconds": 0.25}
    assert summary["resident_keys"] == 3 and summary["resident_keys_max"] == 7
    assert listener.calls == [("evicted", "a", 0.5), ("evicted", "b", 1.5), ("restored", "a", 0.25), ("resident", 7), ("resident", 3)]


def test_a_listener_without_the_fleet_hooks_is_left_alone() -> None:
    class Plain:
        def on_read(self, n: int) -> None: ...

    stats = RunStats(Plain())
    stats.key_evicted("a", 0.1)
    stats.key_restored("a", 0.1)
    stats.resident_keys(1)
    assert stats.summary()["evictions"]["count"] == 1
