"""The Kafka source reports consumer lag per partition (for the lag gauge), against a real broker."""

from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.kafka import KafkaSource, ensure_topics, make_producer

pytestmark = pytest.mark.integration


def test_lag_falls_as_the_source_reads_and_stops_where_it_stopped(kafka_bootstrap: str, unique: str) -> None:
    topic = f"lag-{unique}"
    client = {"bootstrap_servers": kafka_bootstrap}
    ensure_topics(client, [topic])
    producer = make_producer(client)
    for i in range(1000):
        producer.send(topic, value=b'{"features": [%d]}' % i)
    producer.flush()
    producer.close()

    lags: list[tuple[str, int, int]] = []
    source = KafkaSource(client, topic, batch_size=100, max_events=300, idle_timeout=2.0, on_lag=lambda t, p, lag: lags.append((t, p, lag)))
    flow = Dataflow("lag")
    read: list[object] = []
    op.output("out", op.input("in", flow, source), TestingSink(read))
    run_main(flow)

    assert sum(len(batch.items) for batch in read) == 300  # each batch one stamped SourceBatch
    assert {(t, p) for t, p, _ in lags} == {(topic, 0)}
    values = [lag for _, _, lag in lags]
    assert values == sorted(values, reverse=True) and values[0] >= 700
    assert values[-1] == 700
