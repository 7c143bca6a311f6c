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
