"""A model key whose first event arrives while Redis is down waits for its snapshot instead of starting afresh.

Real servers only: the session's Kafka-protocol broker and a ``redis-server``
of the test's own (stopped and started again on its port, its append-only
file keeping the snapshot).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_kafka_e2e import ENGINE, produce_all, read_topic, settings_for
from test_store_faults import RedisServer, own_redis  # noqa: F401 - the fixture

from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.kafka_run import run_kafka
from stream_learner.snapshot import read_header

pytestmark = pytest.mark.integration


def _events(key: str, n: int, first: int = 0) -> list[tuple[bytes, bytes]]:
    return [(key.encode(), orjson.dumps({"id": f"{key}-{i}", "key": key, "features": {"x": float(i % 7), "y": float(i % 3)}, "label": i % 7 > 3})) for i in range(first, first + n)]


def test_a_new_key_during_a_redis_outage_resumes_from_its_snapshot_once_redis_is_back(
    kafka_bootstrap: str, own_redis: RedisServer, unique: str, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    settings = settings_for(
        kafka_bootstrap, own_redis.url, unique, topic_partitions=1, group_id=f"group-{unique}", start="committed", idle_timeout_s=8.0
    )
    produce_all(settings, _events("a", 500))
    first = run_kafka(settings, ENGINE, handle_signals=False)  # learns key a; its final snapshot has seen 500 events; commits offset 500
    assert first["predictions"] == 500
    store = RedisSnapshotStore.from_url(own_redis.url, app=settings.app)
    assert read_header(store.load_latest("a")[1]).events_seen == 500
    store.close()

    produce_all(settings, _events("b", 10))  # a key without a snapshot: shows when the second service reads
    done: dict[str, Any] = {}

    def serve() -> None:
        try:
            done["summary"] = run_kafka(settings, ENGINE, handle_signals=False)
        except Exception as exc:  # noqa: BLE001 - reported below
            done["error"] = exc

    caplog.set_level(logging.WARNING, logger="stream_learner.app.kafka_run")
    service = threading.Thread(target=serve)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while len(read_topic(kafka_bootstrap, settings.kafka.predictions_topic)) < 510:  # b's 10 predictions, after a's 500
            assert service.is_alive() and time.monotonic() < deadline, done
        own_redis.stop()
        produce_all(settings, _events("a", 300, first=500))  # a's first events in this service, while Redis is down
        deadline = time.monotonic() + 30
        while not any("not loaded" in r.getMessage() for r in caplog.records):
            assert service.is_alive() and time.monotonic() < deadline, done
            time.sleep(0.1)
        time.sleep(3)  # a few more attempts while Redis stays down
        assert [p for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic) if p["key"] == "a"][500:] == []  # nothing of a's until its state is loaded
    finally:
        if own_redis.process is None or own_redis.process.poll() is not None:
            own_redis.start()
        service.join(120)
    assert "error" not in done, done
    summary = done["summary"]
    assert summary["restored_keys"] == ["a"] and summary["events"] == summary["predictions"] == 310
    predictions = [p for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic) if p["key"] == "a"]
    ids = [p["id"] for p in predictions]
    assert len(ids) == len(set(ids)) == 800  # none lost, none twice
    versions = [p["model_version"] for p in predictions]
    assert versions == list(range(versions[0], versions[0] + 800))  # the second service went on from the snapshot, not from zero
    warnings = [r.getMessage() for r in caplog.records]
    assert len([w for w in warnings if "not loaded" in w]) == 1, warnings  # one line for the outage, not one per attempt
    assert len([w for w in warnings if "answers again" in w]) == 1, warnings
    store = RedisSnapshotStore.from_url(own_redis.url, app=settings.app)
    assert read_header(store.load_latest("a")[1]).events_seen == 800  # the final snapshot
    store.close()
