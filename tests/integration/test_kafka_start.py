"""Where a Kafka run starts reading: a consumer group's committed offset, or the end of the topic.

``kafka.start`` applies to partitions without recovery state (and, here,
without a Redis snapshot to resume from: ``snapshot.resume`` is off, so
only the start setting decides).
"""

from __future__ import annotations

import threading

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from test_kafka_e2e import produce_all, read_topic, settings_for

from connectors.kafka import make_producer
from stream_learner.app.kafka_run import run_kafka
from stream_learner.engine import EngineConfig
from stream_learner.settings import Settings

pytestmark = pytest.mark.integration

ENGINE = EngineConfig(metrics_every=100)


def event(name: str, i: int) -> tuple[bytes, bytes]:
    return b"default", orjson.dumps({"id": f"{name}-{i}", "features": {"x": float(i % 7), "y": float(i % 3)}, "label": i % 2 == 0})


def without_resume(settings: Settings) -> Settings:
    return settings.model_copy(update={"snapshot": settings.snapshot.model_copy(update={"resume": False})})


def committed(settings: Settings) -> int | None:
    k = settings.kafka
    consumer = KafkaConsumer(group_id=k.group_id, enable_auto_commit=False, **k.client_config())
    try:
        return consumer.committed(TopicPartition(k.input_topic, 0))
    finally:
        consumer.close()


def test_start_committed_goes_on_where_the_group_stopped(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, unique, topic_partitions=1, group_id=f"group-{unique}", start="committed")
    settings = without_resume(settings)
    produce_all(settings, [event("e", i) for i in range(200)])

    first = run_kafka(settings, ENGINE, max_events=120, handle_signals=False)  # no committed offset yet: from the beginning
    assert first["predictions"] == 120 and committed(settings) == 120
    second = run_kafka(settings, ENGINE, handle_signals=False)  # ends when idle

    assert second["predictions"] == 80 and committed(settings) == 200
    ids = [r["id"] for r in read_topic(kafka_bootstrap, settings.kafka.predictions_topic)]
    assert ids == [f"e-{i}" for i in range(200)]  # each event predicted once, in order, across the two runs


def test_start_latest_skips_what_the_topic_already_held(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    settings = without_resume(settings_for(kafka_bootstrap, redis_url, unique, topic_partitions=1, start="latest"))
    produce_all(settings, [event("old", i) for i in range(100)])
    stop = threading.Event()

    def keep_producing() -> None:  # new events arrive all along, so whenever the run starts, some come after
        producer = make_producer(settings.kafka.client_config(), linger_ms=0)
        for i in range(5000):
            if stop.wait(0.005):
                break
            producer.send(settings.kafka.input_topic, key=b"default", value=event("new", i)[1])
        producer.flush()
        producer.close()

    feeder = threading.Thread(target=keep_producing)
    feeder.start()
    try:
        summary = run_kafka(settings, ENGINE, max_events=50, handle_signals=False)
    finally:
        stop.set()
        feeder.join()

    assert summary["predictions"] == 50
    ids = [r["id"] for r in read_topic(kafka_bootstrap, settings.kafka.predictions_topic)]
    first = int(ids[0].removeprefix("new-"))
    assert ids == [f"new-{i}" for i in range(first, first + 50)]  # none of the old events: a run of new ones
