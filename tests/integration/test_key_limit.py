"""``--max-keys`` through the real path: Kafka in, Redis snapshots, topics out, Bytewax recovery across a restart.

A producer that puts something new in every event's key would make a
learner per event until the service runs out of memory, and, restarted on
its recovery state, would run out again: the limit keeps the keys a worker
holds, and the events of others go to the dead-letter topic with the reason.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from test_kafka_e2e import ENGINE, produce_all, read_topic, settings_for

from stream_learner.app.kafka_run import run_kafka

pytestmark = pytest.mark.integration


def _events(keys: range, first: int, n: int = 4) -> list[tuple[bytes, bytes]]:
    return [
        (f"k{k}".encode(), orjson.dumps({"id": f"k{k}-{i}", "key": f"k{k}", "features": {"x": float(i % 5)}, "label": i % 2 == 0}))
        for i in range(first, first + n)
        for k in keys
    ]


def test_a_worker_holds_max_keys_keys_through_a_restart_on_its_recovery_state(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, unique, topic_partitions=1, idle_timeout_s=3.0)
    settings = settings.model_copy(update={"recovery": settings.recovery.model_copy(update={"dir": tmp_path / "recovery", "epoch_seconds": 0.2})})
    engine = replace(ENGINE, max_keys=5)
    first = _events(range(10), 0)
    produce_all(settings, first)
    summary = run_kafka(settings, engine, handle_signals=False)
    predictions = read_topic(kafka_bootstrap, settings.kafka.predictions_topic)
    held = {p["key"] for p in predictions}
    assert len(held) == 5 and summary["predictions"] == 20 and summary["dead_letters"] == 20, summary

    then = _events(range(15), 4)  # the five keys held, the five refused, and five new ones
    produce_all(settings, then)
    summary = run_kafka(settings, engine, handle_signals=False)  # restarted: the recovery state holds the five keys
    predictions = read_topic(kafka_bootstrap, settings.kafka.predictions_topic)
    assert {p["key"] for p in predictions} == held and len(predictions) == len({p["id"] for p in predictions}) == 40
    dead = read_topic(kafka_bootstrap, settings.kafka.dead_letter_topic)
    assert {d["reason"] for d in dead} == {"too_many_keys"} and all("over the limit of 5 (--max-keys)" in d["error"] for d in dead)
    refused = {orjson.loads(d["raw"])["id"] for d in dead}
    every = {orjson.loads(value)["id"] for _, value in first + then}
    assert refused == every - {p["id"] for p in predictions} and len(refused) == 60  # each input predicted or a dead letter, once
    print(f"max_keys 5 over 15 keys and a restart: inputs {len(every)}, predicted {len(predictions)}, dead letters {len(dead)}, lost {len(every) - len(refused) - len(predictions)}")
