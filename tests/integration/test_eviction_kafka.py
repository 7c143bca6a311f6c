"""Eviction in the deployed run: Kafka in and out, evicted learners in Redis (issue #17).

The same input topic is read twice, with at most 4 of 20 model keys in
memory and without a bound: the predictions are the same, event for event,
every key was evicted to Redis and restored from it, and each key's latest
snapshot in Redis restores to the same learner.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest
from plain_state import plain
from test_kafka_e2e import produce_all, read_topic

from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.kafka_run import run_kafka
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.learners.base import LearnerSpec
from stream_learner.settings import Settings, load_settings
from stream_learner.snapshot import load_latest_valid

pytestmark = pytest.mark.integration

SIGNING_KEY = "eviction-kafka"
KEYS = 20
EVENTS = 1200
ENGINE = EngineConfig(learner=LearnerSpec("logreg"), metrics_every=50, snapshot_every=100)


def settings_for(bootstrap: str, redis_url: str, unique: str, run: str) -> Settings:
    return load_settings(
        overrides={
            "app": f"evict-{run}-{unique}",
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topic": f"in-evict-{unique}",
                "predictions_topic": f"pred-evict-{run}-{unique}",
                "metrics_topic": f"metrics-evict-{run}-{unique}",
                "dead_letter_topic": f"dlq-evict-{run}-{unique}",
                "topic_partitions": 2,
                "idle_timeout_s": 1.5,
                "poll_max_records": 50,  # small batches, one fetch each: each key comes and goes many times
                "max_batch_records": 50,
            },
            "redis": {"url": redis_url},
            "snapshot": {"signing_key": SIGNING_KEY, "every_events": 100, "every_seconds": 0},
        },
        environ={},
    )


def messages(seed: int = 7) -> list[tuple[bytes | None, bytes]]:
    rng = random.Random(seed)
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(EVENTS):
        key = f"k{rng.randrange(KEYS)}"
        x, y = rng.random(), rng.random()
        out.append((key.encode(), orjson.dumps({"id": f"e{i}", "key": key, "features": {"x": x, "y": y}, "label": x > y})))
    return out


def predictions(bootstrap: str, topic: str, events: int = EVENTS) -> dict[str, dict[str, Any]]:
    """Each event's (last) prediction on ``topic``, but for the wall-clock ``ts``, read until ``events`` events' are there (a loaded broker answers late)."""
    deadline = time.monotonic() + 30
    while True:
        found = {r["id"]: {k: v for k, v in r.items() if k != "ts"} for r in read_topic(bootstrap, topic)}
        if len(found) >= events or time.monotonic() > deadline:
            return found


def comparable(payload: bytes) -> Any:
    state = KeyedLearner.restore(payload, ENGINE).state_dict()
    state["cadence"] = {**state["cadence"], "snapshot_at": None}
    return plain(state)


def test_keys_evicted_to_redis_and_restored_predict_as_without_a_bound(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    free, bound = (settings_for(kafka_bootstrap, redis_url, unique, run) for run in ("free", "bound"))
    produce_all(free, messages())

    free_summary = run_kafka(free, ENGINE, handle_signals=False)
    bound_summary = run_kafka(bound, ENGINE, handle_signals=False, max_resident_keys=4)

    stores = [RedisSnapshotStore.from_url(redis_url, app=s.app) for s in (free, bound)]
    try:
        assert bound_summary["evictions"]["count"] >= 3 * KEYS and bound_summary["restores"]["count"] >= 3 * KEYS, bound_summary
        assert bound_summary["resident_keys_max"] <= 5 and free_summary["evictions"]["count"] == 0
        assert bound_summary["predictions"] == free_summary["predictions"] == EVENTS and bound_summary["accuracy"] == free_summary["accuracy"]
        predicted = predictions(kafka_bootstrap, free.kafka.predictions_topic)
        assert len(predicted) == EVENTS
        assert predictions(kafka_bootstrap, bound.kafka.predictions_topic) == predicted  # each key's events come from one partition, in order
        # every key's learner waited in Redis as snapshot versions, and its latest one is the unbounded run's final learner
        assert set(stores[1].keys()) == {f"k{i}" for i in range(KEYS)}
        for key in stores[1].keys():
            latest = [load_latest_valid(store, key, SIGNING_KEY.encode()) for store in stores]
            assert all(found is not None and found[2] == [] for found in latest)
            assert comparable(latest[1][1]) == comparable(latest[0][1]), key  # type: ignore[index]
    finally:
        for store in stores:
            for key in store.keys():
                store.delete(key)
            store.close()
