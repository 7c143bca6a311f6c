"""The producer child process: broker errors reach the parent, and the child never outlives the run.

(Its death with a SIGKILLed parent is checked by ``test_crash_recovery.py``.)
"""

from __future__ import annotations

import marshal
import os
import time
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from connectors.kafka import KafkaSink, ensure_topics, make_producer
from connectors.kafka_producer import ProducerProcess, encode_records
from stream_learner.app.kafka_run import run_kafka
from stream_learner.engine import EngineConfig
from stream_learner.errors import KafkaUnavailableError, SinkError
from stream_learner.predictions import Predictions
from stream_learner.settings import load_settings

pytestmark = pytest.mark.integration


def test_a_broker_lost_mid_stream_fails_the_sink_with_a_clear_error_and_no_hang(throwaway_broker, processes) -> None:
    bootstrap, broker = throwaway_broker
    config = {"bootstrap_servers": [bootstrap], "request_timeout_ms": 1000, "max_block_ms": 2000, "reconnect_backoff_max_ms": 200}
    sink = KafkaSink(config, "out", partitions=1, producer=ProducerProcess(config, outage_timeout_s=3))  # waits 3 s for the broker
    part = sink.build_part("out", sink.list_parts()[0], None)
    child = sink.producer.pid
    try:
        part.write_batch([[{"id": "a", "key": "k"}, {"id": "b", "key": "k"}]])
        assert part.snapshot() == 2  # acknowledged by the broker
        broker.kill()
        broker.wait(10)
        started = time.monotonic()
        with pytest.raises(KafkaUnavailableError) as caught:
            for i in range(1000):  # the next write_batch or snapshot raises
                part.write_batch([[{"id": f"c{i}", "key": "k"}]])
                part.snapshot()
        assert time.monotonic() - started < 20
        assert str(caught.value) == f"the Kafka cluster at {bootstrap} acknowledged no output for 3 s (kafka.outage_timeout_s); stopping"
    finally:
        sink.producer.close(flush=False)
    assert not processes.alive(child)


class _ChildWatch:
    """A RunStats listener noting the producer processes alive while outputs flow."""

    def __init__(self, processes: Any) -> None:
        self.processes = processes
        self.seen: set[int] = set()

    def on_outputs(self, outputs: Any) -> None:
        self.seen.update(self.processes.spawned_children(os.getpid()))

    def on_read(self, n: int) -> None: ...
    def on_step(self, key: str, events: int, seconds: float) -> None: ...
    def on_snapshot(self, key: str, version: int | None) -> None: ...
    def set_consumer_lag(self, topic: str, partition: int, lag: int) -> None: ...
    def on_offset_reset(self, topic: str, partition: int, policy: str) -> None: ...
    def mark_finished(self, summary: Any) -> None: ...


def _settings(bootstrap: str, redis_url: str, unique: str, predictions_topic: str) -> Any:
    return load_settings(
        overrides={
            "app": f"child-{unique}",
            "kafka": {"bootstrap_servers": bootstrap, "input_topic": f"child-in-{unique}", "predictions_topic": predictions_topic,
                      "metrics_topic": f"child-metrics-{unique}", "dead_letter_topic": f"child-dlq-{unique}",
                      "create_topics": False, "idle_timeout_s": 1.0},
            "redis": {"url": redis_url},
            "snapshot": {"signing_key": "child-key", "every_events": 0, "resume": False},
        },
        environ={},
    )  # fmt: skip


def test_the_producer_process_ends_with_the_run_and_a_refused_record_fails_the_run(kafka_bootstrap, redis_url, unique, processes) -> None:
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, [f"child-in-{unique}", f"child-pred-{unique}", f"child-metrics-{unique}", f"child-dlq-{unique}"])
    producer = make_producer(client)
    for i in range(300):
        producer.send(f"child-in-{unique}", value=b'{"id": "e%d", "features": [%d, 1], "label": %d}' % (i, i % 7, i % 2))
    producer.flush()
    producer.close()
    engine = EngineConfig(metrics_every=100, snapshot_every=0)

    watch = _ChildWatch(processes)
    summary = run_kafka(_settings(kafka_bootstrap, redis_url, unique, f"child-pred-{unique}"), engine, handle_signals=False, telemetry=watch)
    assert summary["predictions"] == 300
    assert len(watch.seen) == 2  # one producer process for the three output topics, one consumer process ...
    assert not any(processes.alive(pid) for pid in watch.seen)  # ... gone once the run returned

    # a record the producer refuses (an illegal topic name): the run fails with the producer's error, not Bytewax's wrapper
    watch = _ChildWatch(processes)
    with pytest.raises(SinkError, match="illegal"):
        run_kafka(_settings(kafka_bootstrap, redis_url, unique, "not a topic!"), engine, handle_signals=False, telemetry=watch)
    assert watch.seen and not any(processes.alive(pid) for pid in watch.seen)


def test_records_handed_to_the_child_reach_the_topic_as_the_parent_would_encode_them(kafka_bootstrap, unique) -> None:
    """``send_parts``: the child encodes marshalled records; a batch marshal cannot carry is encoded in the parent. Same messages either way."""
    topic = f"records-{unique}"
    ensure_topics({"bootstrap_servers": [kafka_bootstrap]}, [topic])
    records = [
        {"id": "p1", "key": "model-a", "prediction": True, "proba": {False: 0.25, True: 0.75}, "model_version": 3, "concept": 0, "ts": 1.5},
        {"error": "invalid JSON", "raw": "{oops", "origin": {"topic": "in", "partition": 0, "offset": 7}, "ts": 2.0},  # no key
        {"type": "metrics", "key": "model-b", "forgetting": {"matrix": [[0.5, None]], "columns": [0, 1]}, "accuracy": None},
    ]
    odd = [{"id": "p2", "key": "model-a", "ts": datetime(2026, 1, 2, tzinfo=timezone.utc)}]  # orjson writes it, marshal cannot carry it
    with pytest.raises(ValueError):
        marshal.dumps(odd)
    compact = Predictions("model-c", 3.5, [("p3", "cat", {"cat": 0.9, "dog": 0.1}, 4, 1), ("p4", None, None, 5, 1)])
    odd_compact = Predictions("model-c", 4.0, [("p5", datetime(2026, 1, 3, tzinfo=timezone.utc), None, 6, 1)])
    producer = ProducerProcess({"bootstrap_servers": [kafka_bootstrap]})
    try:
        producer.send_parts(topic, [records[:1], records[1:]])  # parts of one batch, in order
        producer.send_parts(topic, [odd])
        producer.send_parts(topic, [compact])  # a step's predictions travel as their compact rows
        producer.send_parts(topic, [odd_compact])
        producer.flush()
    finally:
        producer.close()

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        read: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + 20
        while len(read) < 7 and time.monotonic() < deadline:
            read += [(m.key, m.value) for batch in consumer.poll(timeout_ms=500).values() for m in batch]
    finally:
        consumer.close()
    assert read == encode_records(records) + encode_records(odd) + encode_records(list(compact)) + encode_records(list(odd_compact))
    assert orjson.loads(read[4][1]) == {"id": "p3", "key": "model-c", "prediction": "cat", "proba": {"cat": 0.9, "dog": 0.1}, "model_version": 4, "concept": 1, "ts": 3.5}
    assert read[0] == (b"model-a", orjson.dumps(records[0], option=orjson.OPT_NON_STR_KEYS)) and read[1][0] is None
    assert orjson.loads(read[3][1])["ts"] == "2026-01-02T00:00:00+00:00"
