"""The Kafka path with its fast paths off (``STREAM_LEARNER_KAFKA_FAST_PATHS=0``): kafka-python's public API alone stays correct."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import test_kafka_e2e as e2e
from kafka import KafkaConsumer

from connectors.kafka_fetch import can_chunk
from connectors.kafka_producer import _Child
from connectors.kafka_records import FAST_PATHS_ENV


@pytest.mark.parametrize("switch", ["0", None])
def test_the_switch_turns_both_childrens_fast_paths_off(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, switch: str | None) -> None:
    if switch is None:
        monkeypatch.delenv(FAST_PATHS_ENV, raising=False)
    else:
        monkeypatch.setenv(FAST_PATHS_ENV, switch)
    results, _ = multiprocessing.Pipe(duplex=False)
    child = _Child({"bootstrap_servers": [kafka_bootstrap]}, "gzip", 5, 30.0, results)
    consumer = KafkaConsumer(bootstrap_servers=[kafka_bootstrap])
    try:
        child.start()
        assert (child._append is None) == (switch == "0")  # None: every record through send()
        assert can_chunk(consumer) == (switch is None)
    finally:
        consumer.close()
        child.close()
        results.close()


def test_kafka_run_end_to_end_on_the_public_api(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, embedded_run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_kafka_e2e's main case, every record produced by ``send()`` and consumed as kafka-python's own records (the children inherit the variable)."""
    monkeypatch.setenv(FAST_PATHS_ENV, "0")
    e2e.test_kafka_run_end_to_end(kafka_bootstrap, redis_url, unique, tmp_path, embedded_run)
