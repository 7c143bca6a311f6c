"""The child processes' fast record paths against a real broker: the same records, partitions and order as kafka-python's own."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from connectors.kafka import ensure_topics, make_producer
from connectors.kafka_append import BulkAppender
from connectors.kafka_consumer import ConsumerProcess
from connectors.kafka_producer import ProducerProcess

pytestmark = pytest.mark.integration


def _read_all(bootstrap: str, topic: str, count: int) -> dict[int, list[tuple[bytes | None, bytes | None, list]]]:
    """Every record of ``topic`` read by a plain kafka-python consumer: ``{partition: [(key, value, headers), ...]}``."""
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    consumer.seek_to_beginning()
    read: dict[int, list[tuple[bytes | None, bytes | None, list]]] = defaultdict(list)
    deadline = time.monotonic() + 30
    try:
        while sum(map(len, read.values())) < count and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                read[tp.partition] += [(r.key, r.value, r.headers) for r in records]
    finally:
        consumer.close()
    return read


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_records_from_the_producer_process_read_back_in_order_on_the_partitions_send_would_pick(kafka_bootstrap: str, unique: str, compression: str) -> None:
    topic = f"fast-out-{unique}-{compression}"
    ensure_topics({"bootstrap_servers": [kafka_bootstrap]}, [topic], partitions=3)
    keys = [f"model-{i}".encode() for i in range(12)]
    sent = []
    producer = ProducerProcess({"bootstrap_servers": [kafka_bootstrap]}, compression=compression)
    try:
        for n in range(40):  # batches as the sink hands them over, some with keyless records (dead letters) among keyed ones
            pairs = [(None if (n % 7 == 3 and i % 50 == 7) else keys[(n * 31 + i) % 12], b'{"n": %d, "i": %d}' % (n, i) + b"x" * (i % 300)) for i in range(500)]
            producer.send(topic, pairs)
            sent += pairs
        producer.flush()
    finally:
        producer.close()

    read = _read_all(kafka_bootstrap, topic, len(sent))
    assert sum(map(len, read.values())) == len(sent)  # no loss, no duplicates
    assert all(headers == [] for records in read.values() for _, _, headers in records)
    partition_of = {value: p for p, records in read.items() for _, value, _ in records}
    n = len(read)
    for key, value in sent:  # keyed records: murmur2 of the key, as kafka-python's (and Java's) default partitioner
        if key is not None:
            assert partition_of[value] == (murmur2(key) & 0x7FFFFFFF) % n
    for p, records in read.items():  # each partition holds its records in the order they were sent
        assert [(k, v) for k, v, _ in records] == [(k, v) for k, v in sent if partition_of[v] == p]
    assert any(k is None for k, _ in sent)


def test_bulk_appended_batches_carry_the_idempotent_producers_sequence(kafka_bootstrap: str, unique: str) -> None:
    topic = f"fast-seq-{unique}"
    ensure_topics({"bootstrap_servers": [kafka_bootstrap]}, [topic], partitions=1)
    producer = make_producer({"bootstrap_servers": [kafka_bootstrap]}, linger_ms=0)
    tp = TopicPartition(topic, 0)
    try:
        producer.partitions_for(topic)
        appender = BulkAppender(producer)
        futures = []
        for n in range(20):
            futures += appender.append(topic, 0, [(b"k", b"%d-%d" % (n, i)) for i in range(300)])
            futures.append(producer.send(topic, key=b"k", value=b"send %d" % n, partition=0))  # the ordinary path, between runs
        producer.flush()
        assert all(f.succeeded() for f in futures)
        # the sender numbered every record (the broker rejects a gap or a repeat: OutOfOrderSequence, DuplicateSequence)
        assert producer._transaction_manager.sequence_number(tp) == 20 * 301
    finally:
        producer.close()
    values = [v for _, v, _ in _read_all(kafka_bootstrap, topic, 20 * 301)[0]]
    assert values == [v for n in range(20) for v in [b"%d-%d" % (n, i) for i in range(300)] + [b"send %d" % n]]


@pytest.mark.parametrize("isolation", ["read_uncommitted", "read_committed"])  # chunked batches; kafka-python's reader (no chunks)
def test_the_consumer_process_hands_out_what_a_plain_consumer_reads(kafka_bootstrap: str, unique: str, isolation: str) -> None:
    topic = f"fast-in-{unique}-{isolation}"
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, [topic], partitions=2)
    plain = KafkaProducer(bootstrap_servers=[kafka_bootstrap], linger_ms=2)  # kafka-python's own batches, record by record
    for i in range(3000):
        headers = [("trace", b"%d" % i)] if i % 10 == 0 else []
        value = None if i % 97 == 1 and i % 3 else b"v%d" % i + b"." * (i % 400)
        plain.send(topic, key=None if i % 3 == 0 else b"k%d" % (i % 5), value=value, headers=headers, partition=i % 2)
    plain.flush()
    plain.close()
    expected = _read_all(kafka_bootstrap, topic, 3000)

    fetcher = ConsumerProcess({**client, "isolation_level": isolation}, batch_size=128)
    slots = {0: fetcher.assign(topic, 0, 250, keys=True), 1: fetcher.assign(topic, 1, "earliest")}
    got: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {0: [], 1: []}
    deadline = time.monotonic() + 30
    try:
        while (len(got[0]), len(got[1])) != (1250, 1500) and time.monotonic() < deadline:
            for partition, slot in slots.items():
                fetched = fetcher.next(slot)
                if fetched is None:
                    continue
                assert len(fetched.values) <= 128 and (fetched.keys is not None) == (partition == 0)
                got[partition] += zip(fetched.offsets, fetched.keys or [None] * len(fetched.values), fetched.values)
            time.sleep(0.001)
    finally:
        fetcher.close()
    assert [o for o, _, _ in got[0]] == list(range(250, 1500)) and [o for o, _, _ in got[1]] == list(range(1500))
    assert [(k, v) for _, k, v in got[0]] == [(k, v) for k, v, _ in expected[0][250:]]
    assert [v for _, _, v in got[1]] == [v for _, v, _ in expected[1]]

