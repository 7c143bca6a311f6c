"""Each place that touches another library's private names, behind its one named function, tested against the pinned version."""

from __future__ import annotations

import multiprocessing

import pytest
from kafka import KafkaProducer

from connectors.kafka_producer import ProducerProcess, _Child
from connectors.kafka_records import FAST_PATHS_ENV, fast_paths
from stream_learner.errors import ConfigError

# -- kafka-python (pinned >=3.0.12,<3.1) ----------------------------------------------------------


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("0", False)])
def test_the_fast_paths_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(FAST_PATHS_ENV, raising=False)
    else:
        monkeypatch.setenv(FAST_PATHS_ENV, value)
    assert fast_paths() is on


def test_a_bad_fast_paths_value_stops_the_producer_before_its_child_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAST_PATHS_ENV, "yes")
    with pytest.raises(ConfigError, match="^STREAM_LEARNER_KAFKA_FAST_PATHS must be 0 .* or 1 .*, not 'yes'$"):
        ProducerProcess({"bootstrap_servers": ["127.0.0.1:1"]})


class _Unset(KafkaProducer):
    def __del__(self) -> None:  # KafkaProducer's closes what __init__ opened
        pass


def test_the_bulk_append_steps_aside_for_send_where_the_producers_internals_are_not_as_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer without the accumulator and transaction manager it read (as a renamed internal would leave it): send() places every record."""
    monkeypatch.delenv(FAST_PATHS_ENV, raising=False)
    receive, results = multiprocessing.Pipe(duplex=False)
    child = _Child({"bootstrap_servers": ["127.0.0.1:1"]}, "gzip", 5, 30.0, results)
    child.producer = object.__new__(_Unset)  # none of the fields KafkaProducer.__init__ sets
    try:
        assert child._bulk_append() is None
        kind, line = receive.recv()
        assert kind == "warning" and line.startswith("the Kafka producer's fast path stepped aside (AttributeError: "), line
    finally:
        receive.close()
        results.close()
