"""A Kafka source partition hands over every fetch that waits at once (up to ``max_batch_records``), against a real broker.

A fleet pays per key and learner call, so a partition that runs behind
hands its key groups over in one batch, not one fetch at a time.
"""

from __future__ import annotations

import time

import pytest

from connectors.base import SourceBatch
from connectors.kafka import KafkaSource, ensure_topics, make_producer

pytestmark = pytest.mark.integration

FETCH = 50  # records a fetch of the consumer child (poll_max_records)


def produced_topic(kafka_bootstrap: str, topic: str, n: int) -> dict[str, str]:
    client = {"bootstrap_servers": kafka_bootstrap}
    ensure_topics(client, [topic])
    producer = make_producer(client)
    for i in range(n):
        producer.send(topic, value=b'{"features": {"x": %d}}' % i)
    producer.flush()
    producer.close()
    return client


def read_all(source: KafkaSource, topic: str, wait_s: float = 1.0) -> list[list[SourceBatch]]:
    """Each ``next_batch`` call's batches, waiting ``wait_s`` before each so that the consumer child fetches ahead."""
    part = source.build_part("in", f"{topic}:0", None)
    calls: list[list[SourceBatch]] = []
    try:
        while True:
            time.sleep(wait_s)
            try:
                batches = part.next_batch()
            except StopIteration:
                return calls
            if batches:
                calls.append(batches)
    finally:
        part.close()
        source.close()


def offsets(calls: list[list[SourceBatch]]) -> list[int]:
    return [record.origin.offset for batches in calls for batch in batches for record in batch.items]


def test_a_partition_behind_hands_over_every_waiting_fetch_in_one_call(kafka_bootstrap: str, unique: str) -> None:
    topic = f"waiting-{unique}"
    client = produced_topic(kafka_bootstrap, topic, 600)
    calls = read_all(KafkaSource(client, topic, batch_size=FETCH, idle_timeout=2.5), topic)

    assert offsets(calls) == list(range(600))  # nothing lost, nothing twice, in order
    assert max(len(batches) for batches in calls) > 1  # fetches that waited went over together
    assert len(calls) < 600 // FETCH
    for batches in calls:  # each fetch keeps its own stamp: when it reached this process
        stamps = [batch.read_at for batch in batches]
        assert stamps == sorted(stamps) and all(len(batch.items) <= FETCH for batch in batches)


def test_a_call_takes_at_most_max_batch_records(kafka_bootstrap: str, unique: str) -> None:
    topic = f"capped-{unique}"
    client = produced_topic(kafka_bootstrap, topic, 600)
    calls = read_all(KafkaSource(client, topic, batch_size=FETCH, max_batch_records=2 * FETCH, idle_timeout=2.5), topic)

    assert offsets(calls) == list(range(600))
    assert max(sum(len(batch.items) for batch in batches) for batches in calls) == 2 * FETCH  # fetches waited, but a call took two


def test_max_batch_records_of_one_fetch_hands_over_one_fetch_a_call(kafka_bootstrap: str, unique: str) -> None:
    topic = f"one-{unique}"
    client = produced_topic(kafka_bootstrap, topic, 300)
    calls = read_all(KafkaSource(client, topic, batch_size=FETCH, max_batch_records=FETCH, idle_timeout=2.5), topic, wait_s=0.5)

    assert offsets(calls) == list(range(300))
    assert [len(batches) for batches in calls] == [1] * len(calls) and len(calls) == 300 // FETCH


def test_the_event_budget_cuts_a_call_where_it_runs_out(kafka_bootstrap: str, unique: str) -> None:
    topic = f"budget-{unique}"
    client = produced_topic(kafka_bootstrap, topic, 600)
    calls = read_all(KafkaSource(client, topic, batch_size=FETCH, max_events=175, idle_timeout=2.5), topic)

    assert offsets(calls) == list(range(175))
