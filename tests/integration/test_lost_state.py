"""A Redis that comes back without its data, under a fleet whose cold keys wait in it: ``snapshot.lost_state`` decides;
and a Redis that deletes keys when full is named when the store opens.

Real servers only: the session's Kafka-protocol broker and a ``redis-server``
of the test's own, emptied (``FLUSHALL``) while one key's learner waits in it.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
import redis
from test_kafka_e2e import ENGINE, SIGNING_KEY, produce_all, read_topic, settings_for
from test_restore_outage import _events
from test_store_faults import RedisServer, own_redis  # noqa: F401 - the fixture

from connectors.kafka import ensure_topics
from stream_learner.app.kafka_run import run_kafka
from stream_learner.app.stores import open_store
from stream_learner.settings import load_settings

pytestmark = pytest.mark.integration

FIRST = [e for pair in zip(_events("a", 60), _events("b", 60)) for e in pair]
THEN = [e for pair in zip(_events("a", 30, first=60), _events("b", 30, first=60)) for e in pair]


def _serve_while_redis_loses_its_data(kafka_bootstrap: str, redis_url: str, unique: str, lost_state: str) -> tuple[Any, dict[str, Any]]:
    """At most one learner in memory, keys a and b evicting each other to Redis; once FIRST is predicted, Redis loses
    everything and THEN arrives. The run's settings and what the service ended with (its summary, or its error)."""
    small = {"topic_partitions": 1, "poll_max_records": 20, "max_batch_records": 20, "idle_timeout_s": 4.0}
    settings = settings_for(kafka_bootstrap, redis_url, unique, **small)
    settings = settings.model_copy(update={"snapshot": settings.snapshot.model_copy(update={"lost_state": lost_state})})
    engine = replace(ENGINE, metrics_every=10_000)
    produce_all(settings, FIRST)
    done: dict[str, Any] = {}

    def serve() -> None:
        try:
            done["summary"] = run_kafka(settings, engine, handle_signals=False, max_resident_keys=1)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            done["error"] = exc

    service = threading.Thread(target=serve)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while len(read_topic(kafka_bootstrap, settings.kafka.predictions_topic)) < len(FIRST):
            assert service.is_alive() and time.monotonic() < deadline, done
            time.sleep(0.1)
        redis.Redis.from_url(redis_url).flushall()  # the test's own server: a restart without persistence, or a failover to an empty replica
        produce_all(settings, THEN)
    finally:
        service.join(120)
    return settings, done


def test_by_default_a_key_whose_evicted_state_redis_lost_stops_the_service_with_one_line_and_so_does_each_restart(
    kafka_bootstrap: str, own_redis: RedisServer, unique: str, tmp_path: Path  # noqa: F811
) -> None:
    """A service with recovery ends with one of its three keys evicted to Redis (at most one in memory); Redis loses its
    data while the service is down. Each restart on its recovery directory stops on that key until the operator chooses
    ``new_learner``, which starts the keys Redis lost afresh."""
    settings = settings_for(kafka_bootstrap, own_redis.url, unique, topic_partitions=1)
    k = settings.kafka
    ensure_topics(k.client_config(), [k.input_topic, k.predictions_topic, k.metrics_topic, k.dead_letter_topic], partitions=1)
    command = [
        sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json",
        "--bootstrap-servers", kafka_bootstrap, "--app", settings.app, "--redis-url", own_redis.url,
        "--input-topic", k.input_topic, "--predictions-topic", k.predictions_topic, "--metrics-topic", k.metrics_topic,
        "--dead-letter-topic", k.dead_letter_topic, "--max-resident-keys", "1", "--recovery-dir", str(tmp_path / "recovery"),
        "--epoch-seconds", "0.2", "--stop-when-idle", "3", "--snapshot-seconds", "0", "--metrics-every", "10000",
    ]  # fmt: skip
    env = {
        **os.environ, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY,
        "STREAM_LEARNER_KAFKA__POLL_MAX_RECORDS": "20", "STREAM_LEARNER_KAFKA__MAX_BATCH_RECORDS": "20",
    }  # fmt: skip

    def serve(env: dict[str, str], meanwhile: Callable[[], None] = lambda: None) -> tuple[int, bytes, list[str]]:
        with (tmp_path / "service.log").open("wb") as log:
            service = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log)
        try:
            meanwhile()
            out, _ = service.communicate(timeout=120)
        finally:
            if service.poll() is None:
                service.kill()
                service.communicate(timeout=10)
        return service.returncode, out, (tmp_path / "service.log").read_text().splitlines()

    def first_then_a_new_key_in_an_epoch_of_its_own() -> None:
        produce_all(settings, FIRST)
        wait_for_predictions(len(FIRST))
        time.sleep(1)  # epochs close: a key restored in one stays in memory until it closes
        produce_all(settings, _events("c", 10))  # c comes in; used less than a and b, it leaves memory itself
        wait_for_predictions(len(FIRST) + 10)

    def wait_for_predictions(n: int) -> None:
        deadline = time.monotonic() + 60
        while len(read_topic(kafka_bootstrap, k.predictions_topic)) < n:
            assert time.monotonic() < deadline

    code, out, stderr = serve(env, first_then_a_new_key_in_an_epoch_of_its_own)
    assert code == 0 and orjson.loads(out)["evictions"]["count"] >= 1, (stderr, out)
    served = {key: len([p for p in read_topic(kafka_bootstrap, k.predictions_topic) if p["key"] == key]) for key in "abc"}
    redis.Redis.from_url(own_redis.url).flushall()  # the test's own server: a restart without persistence, or a failover to an empty replica
    produce_all(settings, THEN + _events("c", 10, first=10))

    stopped = [serve(env), serve(env)]  # restarted on the recovery directory, twice
    for code, out, stderr in stopped:
        assert (code, out) == (2, b""), stderr
        assert len(stderr) == 1, stderr
        assert re.fullmatch(r"stream-learner: error: model key '[abc]' was evicted as snapshot version \d+, and the snapshot store holds no version of it .*snapshot\.lost_state to new_learner.*", stderr[0]), stderr
    assert stopped[1][2] == stopped[0][2]  # the same key, the same line
    lost = stopped[0][2][0].split("'")[1]
    assert len([p for p in read_topic(kafka_bootstrap, k.predictions_topic) if p["key"] == lost]) == served[lost]  # not started from zero behind the operator's back

    code, out, stderr = serve({**env, "STREAM_LEARNER_SNAPSHOT__LOST_STATE": "new_learner"})  # the operator's choice
    assert code == 0, stderr
    predictions: dict[str, dict[str, Any]] = {}
    for p in read_topic(kafka_bootstrap, k.predictions_topic):  # a stopped service may have sent a few twice (at-least-once)
        assert predictions.setdefault(p["id"], p)["model_version"] == p["model_version"], p  # then as the same model predicted them
    everything = FIRST + THEN + _events("c", 20)
    assert set(predictions) == {orjson.loads(value)["id"] for _, value in everything}  # each input predicted
    versions = {key: [p["model_version"] for p in predictions.values() if p["key"] == key] for key in "abc"}
    afresh = {key for key, seen in versions.items() if seen[served[key] :][:1] == [0]}
    assert lost in afresh and orjson.loads(out)["lost_states"] == len(afresh), (out, versions)
    for key, seen in versions.items():
        if key in afresh:  # what it had learned is lost
            assert seen == list(range(served[key])) + list(range(len(seen) - served[key])), key
        else:  # it went on from its recovery state
            assert seen == list(range(len(seen))), key


def test_with_lost_state_new_learner_the_key_starts_afresh_said_and_counted_and_nothing_else_is_lost(
    kafka_bootstrap: str, own_redis: RedisServer, unique: str, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.ERROR, logger="stream_learner.residency")
    settings, done = _serve_while_redis_loses_its_data(kafka_bootstrap, own_redis.url, unique, "new_learner")
    assert "error" not in done, done
    summary = done["summary"]
    errors = [r.getMessage() for r in caplog.records if r.name == "stream_learner.residency"]
    assert len(errors) == 1 and "starting it afresh" in errors[0], errors  # one key waited in Redis when it lost its data
    lost = errors[0].split("'")[1]
    assert summary["lost_states"] == 1 and summary["events"] == summary["predictions"] == len(FIRST) + len(THEN), summary

    predictions = read_topic(kafka_bootstrap, settings.kafka.predictions_topic)
    ids = [p["id"] for p in predictions]
    print(f"Redis lost its data under an evicted key: inputs {len(FIRST) + len(THEN)}, lost {len(FIRST) + len(THEN) - len(set(ids))}, duplicated {len(ids) - len(set(ids))}")
    assert sorted(ids) == sorted(orjson.loads(value)["id"] for _, value in FIRST + THEN)  # each input predicted once
    after = [p for p in predictions[len(FIRST) :] if p["key"] == lost]
    assert [p["model_version"] for p in after] == list(range(30))  # a new learner: it had learned nothing
    kept = [p for p in predictions if p["key"] != lost]
    assert [p["model_version"] for p in kept] == list(range(90))  # the key in memory went on as if nothing happened



def test_a_redis_that_deletes_keys_when_its_memory_is_full_is_named_in_one_warning_line_when_the_store_opens(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    settings = load_settings(overrides={"redis": {"url": own_redis.url}}, environ={})
    server = redis.Redis.from_url(own_redis.url)  # the test's own: its settings change here

    def warnings_on_open() -> list[str]:
        caplog.clear()
        open_store(settings).close()
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    caplog.set_level(logging.WARNING, logger="stream_learner.app.stores")
    assert warnings_on_open() == []  # no maxmemory: nothing is ever deleted
    server.config_set("maxmemory", "64mb")
    server.config_set("maxmemory-policy", "allkeys-lru")
    [warning] = warnings_on_open()
    assert "(maxmemory-policy allkeys-lru)" in warning and "set its maxmemory-policy to noeviction" in warning
    server.config_set("maxmemory-policy", "volatile-lru")  # deletes only keys with an expiry: snapshots have none
    assert warnings_on_open() == []
    server.config_set("maxmemory-policy", "noeviction")  # full, it refuses writes instead: the snapshot writer tries again
    assert warnings_on_open() == []
