"""Scale-out: two service processes form one Bytewax cluster over a two-partition topic.

Each process reads one Kafka partition; events of every model key are on
both partitions, so Bytewax must route each key's events to the one worker
that owns its learner. Every input ends as exactly one prediction or dead
letter across the two processes, and each key's final metrics count all of
that key's events: one learner per key, in one process. Each process
keeps its own recovery directory (Bytewax stores each recovery partition
on the worker that owns it; keep ``--process-id`` stable across restarts).

Each model key gets an output partition of its own, so every output
partition has one writing process (see :mod:`partitions`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from partitions import one_partition_per_key
from test_kafka_e2e import read_topic

from connectors.kafka import ensure_topics, make_producer
from connectors.redis_store import RedisSnapshotStore

pytestmark = pytest.mark.integration

EVENTS = 1200
KEYS = ("a", "b", "c")
SIGNING_KEY = "scale-out-signing-key"
OUTPUT_PARTITIONS = one_partition_per_key(KEYS)  # one writing process per output partition


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _events() -> list[bytes]:
    """Labelled events of three keys (and a few malformed ones), numbered by id."""
    out = []
    for i in range(EVENTS):
        if i % 97 == 13:
            out.append(b'{"id": "e%d", "features": "not an object"}' % i)
        else:
            x = (i * 7919) % 100 / 10
            doc = {"id": f"e{i}", "key": KEYS[i % 3], "features": {"x": x, "y": i % 5}, "label": x > 5}
            out.append(orjson.dumps(doc))
    return out


def test_two_processes_share_the_partitions_and_each_key_has_one_learner(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> None:
    topics = {name: f"{name}-scale-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, [topics["in"]], partitions=2)
    ensure_topics(client, [topics[name] for name in ("pred", "metrics", "dlq")], partitions=OUTPUT_PARTITIONS)
    events = _events()
    producer = make_producer(client)
    for i, value in enumerate(events):
        producer.send(topics["in"], value=value, partition=i % 2)  # every key on both partitions
    producer.flush()
    producer.close()

    addresses = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))
    env = {**os.environ, "STREAM_LEARNER_REDIS__URL": redis_url, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY}
    services = [
        subprocess.Popen(
            [
                sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json",
                "--bootstrap-servers", kafka_bootstrap, "--app", f"scale-{unique}",
                "--input-topic", topics["in"], "--predictions-topic", topics["pred"],
                "--metrics-topic", topics["metrics"], "--dead-letter-topic", topics["dlq"],
                "--stop-when-idle", "2", "--metrics-every", "100",
                "--addresses", addresses, "--process-id", str(i),
                "--recovery-dir", str(tmp_path / f"recovery-{i}"),
            ],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    summaries = []
    for service in services:
        out, err = service.communicate(timeout=120)
        assert service.returncode == 0, err
        summaries.append(json.loads(out.strip().splitlines()[-1]))

    # each process read one partition, and together every event once
    assert all(s["events"] > 0 for s in summaries), summaries
    assert sum(s["events"] for s in summaries) == EVENTS
    # every input is exactly one prediction or one dead letter, across both processes
    predictions = [r["id"] for r in read_topic(kafka_bootstrap, topics["pred"])]
    dead = [orjson.loads(r["raw"])["id"] for r in read_topic(kafka_bootstrap, topics["dlq"])]
    assert sum(s["predictions"] for s in summaries) == len(predictions), summaries
    assert Counter(predictions + dead) == Counter(f"e{i}" for i in range(EVENTS))
    assert sum(s["dead_letters"] for s in summaries) == len(dead) == sum(1 for i in range(EVENTS) if i % 97 == 13)
    # one learner per key: each lives in one process, and its last metrics count all of its key's events
    assert sum(s["keys"] for s in summaries) == len(KEYS)
    final: dict[str, dict[str, Any]] = {}
    for record in read_topic(kafka_bootstrap, topics["metrics"]):
        if record["type"] == "metrics" and record["events"] >= final.get(record["key"], {}).get("events", 0):
            final[record["key"]] = record
    per_key = Counter(orjson.loads(v)["key"] for i, v in enumerate(events) if i % 97 != 13)
    assert {key: m["events"] for key, m in final.items()} == dict(per_key)
    store = RedisSnapshotStore.from_url(redis_url, app=f"scale-{unique}")
    try:
        assert sorted(store.keys()) == list(KEYS)
    finally:
        for key in KEYS:
            store.delete(key)
