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
from typing import Any, Callable

import orjson
import pytest
from partitions import one_partition_per_key
from test_kafka_e2e import read_topic

from connectors.kafka import ensure_topics, make_producer
from connectors.redis_store import RedisSnapshotStore
from stream_learner.snapshot import load_latest_valid

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


def _cluster(bootstrap: str, redis_url: str, app: str, topics: dict[str, str], flags: Callable[[int], list[str]], timeout: float = 120) -> list[dict[str, Any]]:
    """Two service processes as one Bytewax cluster (``flags(process_id)`` added to each), run to their end: their JSON summaries."""
    addresses = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))
    env = {**os.environ, "STREAM_LEARNER_REDIS__URL": redis_url, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY}
    services = [
        subprocess.Popen(
            [
                sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json",
                "--bootstrap-servers", bootstrap, "--app", app,
                "--input-topic", topics["in"], "--predictions-topic", topics["pred"],
                "--metrics-topic", topics["metrics"], "--dead-letter-topic", topics["dlq"],
                "--addresses", addresses, "--process-id", str(i), *flags(i),
            ],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    summaries = []
    for service in services:
        out, err = service.communicate(timeout=timeout)
        assert service.returncode == 0, err[-3000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    return summaries


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

    summaries = _cluster(
        kafka_bootstrap, redis_url, f"scale-{unique}", topics,
        lambda i: ["--stop-when-idle", "2", "--metrics-every", "100", "--recovery-dir", str(tmp_path / f"recovery-{i}")],
    )  # fmt: skip

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


FLEET = 2000  # model keys in the fleet test
ROUNDS = 3  # events per key: round r goes to partition r % 2, so every key is read by both processes


def test_a_fleet_of_thousands_of_keys_spreads_over_the_cluster_one_learner_per_key(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> None:
    """2,000 keys over two processes, each bounded to 300 resident learners: every key has one learner, which saw all of its events.

    Outputs are not counted here: with thousands of keys both processes write to
    every output partition, where the test broker may hide acknowledged records
    (the test above checks outputs with one writer per partition).
    """
    topics = {name: f"{name}-fleet-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, [topics["in"]], partitions=2)
    ensure_topics(client, [topics[name] for name in ("pred", "metrics", "dlq")], partitions=1)
    producer = make_producer(client)
    for i in range(FLEET * ROUNDS):
        key, round_ = f"k{i % FLEET}", i // FLEET
        doc = {"id": f"e{i}", "key": key, "features": {"x": (i * 7919) % 100 / 10}, "label": i % 3 == 0}
        producer.send(topics["in"], value=orjson.dumps(doc), partition=round_ % 2)
    producer.flush()
    producer.close()

    summaries = _cluster(
        kafka_bootstrap, redis_url, f"fleet-{unique}", topics,
        lambda i: ["--model", "logreg", "--stop-when-idle", "3", "--max-resident-keys", "300", "--snapshot-seconds", "0"], timeout=300,
    )  # fmt: skip

    assert sum(s["events"] for s in summaries) == FLEET * ROUNDS and all(s["events"] > 0 for s in summaries)
    assert sum(s["keys"] for s in summaries) == FLEET  # each key's learner in one process only
    assert all(s["evictions"]["count"] > 0 for s in summaries)  # the bound held: keys went out and came back
    store = RedisSnapshotStore.from_url(redis_url, app=f"fleet-{unique}")
    try:
        keys = store.keys()
        assert len(keys) == FLEET
        seen = Counter(load_latest_valid(store, key, SIGNING_KEY.encode())[0].events_seen for key in keys)  # type: ignore[index]
        assert seen == {ROUNDS: FLEET}  # every key's one learner learned all of its events
    finally:
        for key in store.keys():
            store.delete(key)
