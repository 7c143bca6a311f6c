"""A PyTorch learner with a continual-learning strategy through the real broker and Redis.

Class-incremental Split-Digits (3 tasks of 2 classes, no ``task`` field: the
engine finds the tasks from new labels) -> the service with ``torch:mlp`` and
online EWC -> every output topic read back: each event predicted once, the
metrics and forgetting figures equal the embedded run's on the same bytes, and
the Redis snapshot restores to a learner predicting as the embedded one does.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sklearn.datasets import load_digits
from test_kafka_e2e import SIGNING_KEY, last_metrics, produce_all, read_topic, settings_for

from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.kafka_run import run_kafka
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import load_latest_valid

pytestmark = pytest.mark.integration

SPEC = LearnerSpec("torch:mlp", {"hidden": [32], "batch_size": 10, "lr": 0.1}, seed=3, strategy="ewc", strategy_params={"ewc_lambda": 10.0})
ENGINE = EngineConfig(learner=SPEC, metrics_every=100, snapshot_every=300, new_label_gap=100, forgetting_every=0)


def split_digits(tasks: int = 3) -> tuple[list[bytes], list[list[float]]]:
    """Task k: the digits 2k and 2k+1, in the dataset's order; and a probe set of other images."""
    digits = load_digits()
    values, probe = [], []
    for k in range(tasks):
        for i, (image, label) in enumerate(zip(digits.data, digits.target)):
            if label in (2 * k, 2 * k + 1):
                if i % 10 == 0:
                    probe.append([float(v) / 16 for v in image])
                else:
                    values.append(orjson.dumps({"id": f"d{i}", "features": [float(v) / 16 for v in image], "label": int(label)}))
    return values, probe


def test_a_torch_strategy_learns_through_kafka_as_it_does_embedded(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, embedded_run) -> None:
    values, probe = split_digits()
    settings = settings_for(kafka_bootstrap, redis_url, unique)
    produce_all(settings, [(b"default", value) for value in values])  # one key: one partition, the stream's order

    summary = run_kafka(settings, ENGINE, handle_signals=False)

    k = settings.kafka
    predictions = read_topic(kafka_bootstrap, k.predictions_topic)
    metrics = read_topic(kafka_bootstrap, k.metrics_topic)
    assert summary["events"] == len(predictions) == len(values) and read_topic(kafka_bootstrap, k.dead_letter_topic) == []
    assert len({p["id"] for p in predictions}) == len(values)
    drifts = [r for r in metrics if r["type"] == "drift"]
    assert [r["detector"] for r in drifts] == ["new_label", "new_label"] and summary["concepts"] == 3

    embedded, local = embedded_run(values, ENGINE, SIGNING_KEY)
    embedded_metrics = [orjson.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_bytes().splitlines()]
    ours, theirs = last_metrics(metrics, "default"), last_metrics(embedded_metrics, "default")
    for name in ("events", "labelled", "accuracy", "accuracy_window", "drifts", "concepts", "forgetting"):
        assert ours[name] == theirs[name], name
    assert ours["accuracy"] > 0.6 and ours["forgetting"]["concepts"] == 3

    store = RedisSnapshotStore.from_url(redis_url, app=settings.app)
    try:
        header, payload, refusals = load_latest_valid(store, "default", SIGNING_KEY.encode())
        assert refusals == [] and header.learner_kind == "torch" and header.strategy == "ewc" and header.events_seen == len(values)
        from_redis = KeyedLearner.restore(payload, ENGINE)
        from_file = KeyedLearner.restore(load_latest_valid(local, "default", SIGNING_KEY.encode())[1], ENGINE)
        features = [dict(enumerate(x)) for x in probe]
        assert [from_redis.learner.predict(x) for x in features] == [from_file.learner.predict(x) for x in features]
        assert sorted(from_redis.learner.classes) == [0, 1, 2, 3, 4, 5]
    finally:
        store.delete("default")
