"""The consumer child process against a real broker: every record once, in order, through pauses."""

from __future__ import annotations

import os
import time

import pytest

from connectors.kafka import ensure_topics, make_producer
from connectors.kafka_consumer import ConsumerProcess
from stream_learner.errors import SourceError

pytestmark = pytest.mark.integration


def test_paused_partitions_resume_where_they_stopped_and_the_child_stops_with_the_last_release(kafka_bootstrap: str, unique: str, processes) -> None:
    topic = f"fetch-{unique}"
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, [topic], partitions=2)
    producer = make_producer(client)
    for i in range(4000):
        producer.send(topic, value=b"%d" % i, key=b"k%d" % i, partition=i % 2)
    producer.flush()
    producer.close()

    fetcher = ConsumerProcess(client, batch_size=100, max_buffered=2)  # partition 1, read slowly, is paused again and again
    slots = [fetcher.assign(topic, 0, "earliest"), fetcher.assign(topic, 1, 500, keys=True)]
    assert fetcher.position(slots[0]) == 0 and fetcher.position(slots[1]) == 500
    offsets: dict[int, list[int]] = {0: [], 1: []}
    values: dict[int, list[bytes | None]] = {0: [], 1: []}
    deadline = time.monotonic() + 30
    while (len(offsets[0]), len(offsets[1])) != (2000, 1500) and time.monotonic() < deadline:
        for partition, slot in enumerate(slots):
            if partition == 1 and len(offsets[0]) < 2000 and len(offsets[0]) % 400:
                continue
            fetched = fetcher.next(slot)
            if fetched is not None:
                offsets[partition] += fetched.offsets
                values[partition] += fetched.values
                assert (fetched.keys is not None) == (partition == 1)
        time.sleep(0.002)
    assert offsets[0] == list(range(2000)) and offsets[1] == list(range(500, 2000))
    assert values[1][:2] == [b"1001", b"1003"]
    assert fetcher.highwater(slots[0]) == 2000

    child = fetcher.pid
    assert child in processes.spawned_children(os.getpid())
    fetcher.release(slots[0])
    assert processes.alive(child)  # still fetching partition 1
    fetcher.release(slots[1])
    assert not processes.alive(child)
    with pytest.raises(SourceError, match="closed"):
        fetcher.assign(topic, 0, 0)
