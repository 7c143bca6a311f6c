"""SIGKILL in the middle of evictions loses nothing and learns nothing twice (issue #17).

The Kafka service with a recovery directory and at most 3 of 12 model keys
in memory (every batch evicts several keys to Redis and restores others) is
SIGKILLed at evictions chosen at random: just before an eviction's write
(the learner only in memory) and just after it (written, not yet dropped,
the recovery state not yet told), each time restarted on the same recovery
directory, then run to the end without a bound (the keys its recovery
state names as evicted come back from Redis). Every key's final learner in Redis equals
the learner an uninterrupted run without a bound ends with: the same events
and labels counted, the same model, metrics, detector and forgetting state.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from evicting_service import ENGINE
from plain_state import plain
from test_eviction_kafka import predictions

from connectors.kafka import ensure_topics, make_producer
from connectors.redis_store import RedisSnapshotStore
from stream_learner.engine import EngineConfig
from stream_learner.slot import restore_step
from stream_learner.snapshot import load_latest_valid

pytestmark = pytest.mark.integration

SIGNING_KEY = "eviction-crash"
KEYS = 12
EVENTS = 1500
RESIDENT = 3
SERVICE = Path(__file__).with_name("evicting_service.py")
REFERENCE = EngineConfig(**{**ENGINE.__dict__, "snapshot_every": 100, "snapshot_seconds": 0})  # what the Kafka run makes of ENGINE and its settings


def messages(seed: int = 13) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(EVENTS):
        key = f"k{rng.randrange(KEYS)}"  # also the Kafka key: each model key's events on one partition, in order
        x, y = rng.random(), rng.random()
        out.append((key.encode(), orjson.dumps({"id": f"e{i}", "key": key, "features": {"x": x, "y": y}, "label": x + y > 0.4 + int(key[1:]) / KEYS})))
    return out


def comparable(payload: bytes) -> Any:
    """A learner's state but for what depends on the source (offsets: a file's lines, a topic's offsets) and the wall clock."""
    state = restore_step(payload, REFERENCE).state_dict()
    del state["resume"]
    state["cadence"] = {**state["cadence"], "snapshot_at": None}
    return plain(state)


def test_sigkill_during_evictions_loses_and_repeats_nothing_learned(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, embedded_run) -> None:
    topics = {name: f"{name}-evict-crash-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, list(topics.values()), partitions=2)
    stream = messages()
    producer = make_producer(client)
    for key, value in stream:
        producer.send(topics["in"], key=key, value=value)
    producer.flush()
    producer.close()
    overrides = {
        "app": f"evict-crash-{unique}",
        "kafka": {
            "bootstrap_servers": kafka_bootstrap, "input_topic": topics["in"], "predictions_topic": topics["pred"],
            "metrics_topic": topics["metrics"], "dead_letter_topic": topics["dlq"], "idle_timeout_s": 5, "poll_max_records": 20, "max_batch_records": 20,
        },
        "redis": {"url": redis_url},
        "snapshot": {"signing_key": SIGNING_KEY, "every_events": 100, "every_seconds": 0, "resume": False},  # only recovery carries state over
        "recovery": {"dir": str(tmp_path / "recovery"), "epoch_seconds": 0.05},
    }  # fmt: skip
    rng = random.Random()
    # mid-stream: a run evicts a few dozen times (a key restored in an epoch stays until its close), each round paced
    # (evicting_service.PACE_S): the first dies 1.5 s after its first round, once epochs were committed; the restarted run
    # has only the rest of the stream, and resumes mid-stream already: it dies soon
    kills = [("after", rng.randint(3, 8), 1.5), ("before", rng.randint(1, 2), 0.05)]
    store = RedisSnapshotStore.from_url(redis_url, app=overrides["app"])
    try:
        for point, n, after_s in kills:
            command = [sys.executable, str(SERVICE), json.dumps(overrides), str(RESIDENT), point, str(n), str(after_s)]
            killed = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert killed.returncode == -9, (point, n, killed.stdout[-2000:], killed.stderr[-3000:])  # it did reach that eviction, and died there
        # the last run has no bound: the keys its recovery state names as evicted come back from Redis all the same
        final = subprocess.run([sys.executable, str(SERVICE), json.dumps(overrides), "0"], capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr[-3000:]
        summary = json.loads(final.stdout.strip().splitlines()[-1])
        assert summary["events"] < EVENTS, summary  # it resumed from its recovery state rather than starting over
        missing = {f"e{i}" for i in range(EVENTS)} - set(predictions(kafka_bootstrap, topics["pred"], EVENTS))
        assert not missing, (sorted(missing)[:20], kills, final.stderr[-3000:])  # every event predicted (some twice)

        _, calm = embedded_run([value for _, value in stream], REFERENCE, SIGNING_KEY)
        assert sorted(store.keys()) == sorted(calm.keys()) and len(calm.keys()) == KEYS
        for key in calm.keys():
            crashed, reference = (load_latest_valid(s, key, SIGNING_KEY.encode()) for s in (store, calm))
            assert crashed is not None and reference is not None
            a, b = restore_step(crashed[1], REFERENCE), restore_step(reference[1], REFERENCE)
            assert (a.events, a.learned) == (b.events, b.learned), (key, kills)
            assert comparable(crashed[1]) == comparable(reference[1]), (key, kills)
    finally:
        for key in store.keys():
            store.delete(key)
        store.close()
