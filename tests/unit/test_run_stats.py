"""RunStats.summary: the run's figures from each key's latest metrics record."""

from stream_learner.app.dataflow import RunStats
from stream_learner.engine import StepOutput


def _metrics(key: str, failures: int | None) -> dict:
    record = {"type": "metrics", "key": key, "labelled": 10, "accuracy": 0.5, "drifts": 0, "concepts": 1, "forgetting": {}}
    if failures is not None:
        record["failures"] = failures
    return record


def test_summary_counts_model_failures_of_every_key_latest_record():
    stats = RunStats()
    stats.observe([StepOutput(metrics=[_metrics("a", 1)]), StepOutput(metrics=[_metrics("b", None)])])
    stats.observe([StepOutput(metrics=[_metrics("a", 2), _metrics("c", 3)])])
    assert stats.summary()["failures"] == 5  # a's latest says 2, b none, c 3
