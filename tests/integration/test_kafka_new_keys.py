"""A Kafka run's new model keys are looked up in Redis a source batch at a time, and resume exactly as one at a time would."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from test_kafka_e2e import ENGINE, produce_all, read_topic, settings_for

from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.kafka_run import run_kafka

pytestmark = pytest.mark.integration


def _events(keys: list[str], each: int, first: int = 0) -> list[tuple[bytes | None, bytes]]:
    return [
        (key.encode(), orjson.dumps({"id": f"{key}-{i}", "key": key, "features": {"x": float(i % 7), "y": float(i % 3)}, "label": i % 7 > 3}))
        for i in range(first, first + each)
        for key in keys
    ]


def test_new_keys_need_no_read_of_their_own_and_snapshotted_keys_resume(kafka_bootstrap: str, redis_url: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, unique, topic_partitions=1, group_id=f"group-{unique}", start="committed")
    old = [f"old{i}" for i in range(5)]
    new = [f"new{i}" for i in range(200)]
    produce_all(settings, _events(old, 40))
    first = run_kafka(settings, ENGINE, handle_signals=False)  # old keys' final snapshots have seen 40 events each
    assert first["predictions"] == 200 and first["restored_keys"] == []

    reads: list[str] = []
    load_latest = RedisSnapshotStore.load_latest

    def counted(store: RedisSnapshotStore, key: str) -> Any:
        reads.append(key)
        return load_latest(store, key)

    monkeypatch.setattr(RedisSnapshotStore, "load_latest", counted)
    produce_all(settings, _events(old + new, 3, first=40))
    summary = run_kafka(settings, ENGINE, handle_signals=False)
    assert summary["restored_keys"] == sorted(old) and summary["predictions"] == 3 * 205
    assert sorted(reads) == sorted(old)  # each new key was found to have nothing stored with the rest of its batch
    predictions = read_topic(kafka_bootstrap, settings.kafka.predictions_topic)[200:]
    versions = {key: [p["model_version"] for p in predictions if p["key"] == key] for key in old + new}
    assert all(versions[key] == [40, 41, 42] for key in old), versions  # went on from the snapshot
    assert all(versions[key] == [0, 1, 2] for key in new)  # started afresh
    store = RedisSnapshotStore.from_url(redis_url, app=settings.app)
    try:
        assert set(store.keys()) == set(old + new)  # every key's final snapshot
    finally:
        for key in store.keys():
            store.delete(key)
        store.close()
