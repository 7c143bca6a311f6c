"""The Kafka children started while the cluster does not answer wait for it, as they wait through an outage later."""

from __future__ import annotations

import time
from typing import Callable

import pytest
from kafka import KafkaConsumer, TopicPartition
from tcp_proxy import TcpProxy

from connectors.kafka import ensure_topics, make_producer
from connectors.kafka_consumer import ConsumerProcess
from connectors.kafka_producer import ProducerProcess

pytestmark = pytest.mark.integration

BOOTSTRAP_TIMEOUT_MS = 2000  # kafka-python gives up bootstrapping after this (30 s by default): the cut outlasts it


def proxied(broker_behind: Callable[[int], str], proxy: TcpProxy) -> str:
    """The bootstrap address of a broker reached only through ``proxy``."""
    host, port = broker_behind(proxy.port).rsplit(":", 1)
    proxy.upstream = (host, int(port))
    return f"127.0.0.1:{proxy.port}"


def test_a_producer_started_while_the_cluster_is_cut_off_delivers_once_it_answers(broker_behind: Callable[[int], str], unique: str) -> None:
    topic = f"start-{unique}"
    with TcpProxy() as proxy:
        bootstrap = proxied(broker_behind, proxy)
        ensure_topics({"bootstrap_servers": [bootstrap]}, [topic])
        proxy.cut()
        producer = ProducerProcess({"bootstrap_servers": [bootstrap], "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS}, outage_timeout_s=60)
        try:
            producer.start()
            time.sleep(3 * BOOTSTRAP_TIMEOUT_MS / 1000)  # the child starts and fails to bootstrap at least once meanwhile
            proxy.restore()
            producer.send(topic, [(b"k", f"v{i}".encode()) for i in range(100)])
            producer.flush()  # the old child had stopped with "cannot start a Kafka producer ... Unable to bootstrap"
        finally:
            producer.close(flush=False)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            values: list[bytes] = []
            deadline = time.monotonic() + 30
            while len(values) < 100 and time.monotonic() < deadline:
                values += [record.value for records in consumer.poll(timeout_ms=500).values() for record in records]
        finally:
            consumer.close()
    assert values == [f"v{i}".encode() for i in range(100)]


def test_a_consumer_started_while_the_cluster_is_cut_off_reads_once_it_answers(broker_behind: Callable[[int], str], unique: str) -> None:
    topic = f"start-{unique}"
    with TcpProxy() as proxy:
        bootstrap = proxied(broker_behind, proxy)
        ensure_topics({"bootstrap_servers": [bootstrap]}, [topic])
        producer = make_producer({"bootstrap_servers": [bootstrap]})
        for i in range(100):
            producer.send(topic, value=f"v{i}".encode())
        producer.close()
        proxy.cut()
        fetcher = ConsumerProcess({"bootstrap_servers": [bootstrap], "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS}, outage_timeout_s=60)
        try:
            slot = fetcher.assign(topic, 0, "earliest")
            time.sleep(3 * BOOTSTRAP_TIMEOUT_MS / 1000)  # the child starts and fails to bootstrap at least once meanwhile
            proxy.restore()
            assert fetcher.position(slot) == 0  # the old child had stopped with "cannot start a Kafka consumer ... Unable to bootstrap"
            values: list[bytes | None] = []
            deadline = time.monotonic() + 30
            while len(values) < 100 and time.monotonic() < deadline:
                batch = fetcher.next(slot)
                if batch is None:
                    time.sleep(0.05)
                    continue
                values += batch.values
        finally:
            fetcher.close()
    assert values == [f"v{i}".encode() for i in range(100)]
