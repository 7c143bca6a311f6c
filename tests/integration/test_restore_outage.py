"""A model key whose first event arrives while Redis is down waits for its snapshot instead of starting afresh.

Real servers only: the session's Kafka-protocol broker and a ``redis-server``
of the test's own (stopped and started again on its port, its append-only
file keeping the snapshot).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
from test_kafka_e2e import ENGINE, SIGNING_KEY, produce_all, read_topic, settings_for
from test_store_faults import RedisServer, own_redis  # noqa: F401 - the fixture

from connectors.kafka import ensure_topics
from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.kafka_run import run_kafka
from stream_learner.settings import Settings
from stream_learner.snapshot import read_header

pytestmark = pytest.mark.integration


def _events(key: str, n: int, first: int = 0) -> list[tuple[bytes, bytes]]:
    return [(key.encode(), orjson.dumps({"id": f"{key}-{i}", "key": key, "features": {"x": float(i % 7), "y": float(i % 3)}, "label": i % 7 > 3})) for i in range(first, first + n)]


def _serve_through_an_outage(
    run: Callable[[], dict[str, Any]],
    settings: Settings,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    ready: int,
    during: list[tuple[bytes | None, bytes]],
    while_down: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], float]:
    """``run()`` as a service thread: once ``ready`` predictions are out, Redis stops, ``during`` is produced, and once the
    service says a snapshot was not loaded (and 3 s more, then ``while_down()``) Redis starts again; the run's summary and
    the outage's length."""
    done: dict[str, Any] = {}

    def serve() -> None:
        try:
            done["summary"] = run()
        except Exception as exc:  # noqa: BLE001 - reported below
            done["error"] = exc

    caplog.set_level(logging.WARNING, logger="stream_learner.app.stores")
    service = threading.Thread(target=serve)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while len(read_topic(settings.kafka.bootstrap_servers, settings.kafka.predictions_topic)) < ready:
            assert service.is_alive() and time.monotonic() < deadline, done
        redis_server.stop()
        stopped = time.monotonic()
        produce_all(settings, during)
        deadline = time.monotonic() + 30
        while not any("not loaded" in r.getMessage() for r in caplog.records):
            assert service.is_alive() and time.monotonic() < deadline, done
            time.sleep(0.1)
        time.sleep(3)  # a few more attempts while Redis stays down
        while_down()
        redis_server.start()
        outage = time.monotonic() - stopped
    finally:
        if redis_server.process is None or redis_server.process.poll() is not None:
            redis_server.start()
        service.join(120)
    assert "error" not in done, done
    return done["summary"], outage


def test_a_new_key_during_a_redis_outage_resumes_from_its_snapshot_once_redis_is_back(
    kafka_bootstrap: str, own_redis: RedisServer, unique: str, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    settings = settings_for(
        kafka_bootstrap, own_redis.url, unique, topic_partitions=1, group_id=f"group-{unique}", start="committed", idle_timeout_s=8.0
    )
    produce_all(settings, _events("a", 500))
    first = run_kafka(settings, ENGINE, handle_signals=False)  # learns key a; its final snapshot has seen 500 events; commits offset 500
    assert first["predictions"] == 500
    store = RedisSnapshotStore.from_url(own_redis.url, app=settings.app)
    assert read_header(store.load_latest("a")[1]).events_seen == 500
    store.close()

    produce_all(settings, _events("b", 10))  # a key without a snapshot: shows when the second service reads

    def nothing_of_a_yet() -> None:
        assert [p for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic) if p["key"] == "a"][500:] == []  # nothing of a's until its state is loaded

    summary, outage = _serve_through_an_outage(
        lambda: run_kafka(settings, ENGINE, handle_signals=False), settings, own_redis, caplog,
        ready=510, during=_events("a", 300, first=500), while_down=nothing_of_a_yet,
    )  # fmt: skip  (b's 10 predictions come after a's 500; a's first events in this service come while Redis is down)
    assert summary["restored_keys"] == ["a"] and summary["events"] == summary["predictions"] == 310
    everything = [p["id"] for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic)]
    print(f"new key during a {outage:.1f} s Redis outage: inputs 810, lost {810 - len(set(everything))}, duplicated {len(everything) - len(set(everything))}")
    predictions = [p for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic) if p["key"] == "a"]
    ids = [p["id"] for p in predictions]
    assert len(ids) == len(set(ids)) == 800  # none lost, none twice
    versions = [p["model_version"] for p in predictions]
    assert versions == list(range(versions[0], versions[0] + 800))  # the second service went on from the snapshot, not from zero
    warnings = [r.getMessage() for r in caplog.records]
    assert len([w for w in warnings if "not loaded" in w]) == 1, warnings  # one line for the outage, not one per attempt
    assert len([w for w in warnings if "answers again" in w]) == 1, warnings
    store = RedisSnapshotStore.from_url(own_redis.url, app=settings.app)
    assert read_header(store.load_latest("a")[1]).events_seen == 800  # the final snapshot
    store.close()


def _cli_service_while_redis_goes_down(
    kafka_bootstrap: str, own_redis: RedisServer, settings: Settings, log: Path, env: dict[str, str], then: Callable[[subprocess.Popen[bytes]], None]  # noqa: F811
) -> tuple[int, bytes, list[str]]:
    """A CLI service reads key b's 10 events; Redis stops and key a's 100 events come (a's first event in this service waits
    for its snapshot); then ``then(service)``. The service's exit status, stdout and stderr lines."""
    k = settings.kafka
    ensure_topics(k.client_config(), [k.input_topic, k.predictions_topic, k.metrics_topic, k.dead_letter_topic], partitions=1)
    produce_all(settings, _events("b", 10))
    command = [
        sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json",
        "--bootstrap-servers", kafka_bootstrap, "--app", settings.app, "--redis-url", own_redis.url,
        "--input-topic", k.input_topic, "--predictions-topic", k.predictions_topic, "--metrics-topic", k.metrics_topic,
        "--dead-letter-topic", k.dead_letter_topic, "--group-id", k.group_id or "", "--start", "committed",
        "--stop-when-idle", "8", "--snapshot-seconds", "0",
    ]  # fmt: skip
    with log.open("wb") as stderr:
        service = subprocess.Popen(command, env={**os.environ, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY, **env}, stdout=subprocess.PIPE, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while len(read_topic(kafka_bootstrap, k.predictions_topic)) < 10:  # the service reads: b's predictions
            assert service.poll() is None and time.monotonic() < deadline, log.read_text()
        own_redis.stop()
        produce_all(settings, _events("a", 100))
        then(service)
        out, _ = service.communicate(timeout=120)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate(timeout=10)
    assert [p for p in read_topic(kafka_bootstrap, k.predictions_topic) if p["key"] == "a"] == []  # not started from zero
    return service.returncode, out, log.read_text().splitlines()


def _restarted_with_redis_back(kafka_bootstrap: str, own_redis: RedisServer, settings: Settings) -> tuple[dict[str, Any], list[str]]:  # noqa: F811
    """Redis back, the service restarted (from the committed offsets): its summary, and the ids of every prediction of key a."""
    own_redis.start()
    summary = run_kafka(settings, ENGINE, handle_signals=False)
    return summary, [p["id"] for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic) if p["key"] == "a"]


def test_a_new_key_while_redis_stays_down_stops_the_service_with_one_line_and_a_restart_predicts_its_events(
    kafka_bootstrap: str, own_redis: RedisServer, unique: str, tmp_path: Path  # noqa: F811
) -> None:
    settings = settings_for(kafka_bootstrap, own_redis.url, unique, topic_partitions=1, group_id=f"group-{unique}", start="committed", idle_timeout_s=8.0)
    code, out, stderr = _cli_service_while_redis_goes_down(
        kafka_bootstrap, own_redis, settings, tmp_path / "service.log", {"STREAM_LEARNER_SNAPSHOT__OUTAGE_TIMEOUT_S": "3"}, lambda service: None
    )
    assert (code, out) == (2, b""), stderr
    assert len(stderr) == 2, stderr  # the outage's warning, then the error
    assert "snapshot of model key 'a' not loaded" in stderr[0]
    assert stderr[1].startswith("stream-learner: error: cannot load the snapshot of model key 'a': Redis has not answered for 3 s (snapshot.outage_timeout_s): ")

    summary, a_ids = _restarted_with_redis_back(kafka_bootstrap, own_redis, settings)
    b_ids = [p["id"] for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic) if p["key"] == "b"]
    print(f"Redis down past the timeout: exit {code}; after the restart: a {len(a_ids)} of 100, b {len(b_ids)} of 10 (at-least-once)")
    assert sorted(a_ids) == sorted(f"a-{i}" for i in range(100))  # every event of a predicted, once
    assert summary["predictions"] == summary["events"] >= 100


def test_an_evicted_key_whose_events_come_while_redis_is_down_waits_for_it_and_predicts_as_without_a_bound(
    kafka_bootstrap: str, own_redis: RedisServer, unique: str, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    """At most one learner in memory: keys a and b evict each other to Redis; Redis stops while the evicted one's events arrive."""
    small = {"topic_partitions": 1, "poll_max_records": 20, "max_batch_records": 20, "idle_timeout_s": 8.0}
    bound = settings_for(kafka_bootstrap, own_redis.url, unique, **small)
    free = settings_for(kafka_bootstrap, own_redis.url, f"{unique}-free", **{**small, "input_topic": bound.kafka.input_topic, "idle_timeout_s": 1.5})
    engine = replace(ENGINE, metrics_every=10_000)  # predictions only: the metrics topic is not compared
    first = [e for pair in zip(_events("a", 60), _events("b", 60)) for e in pair]
    then = [e for pair in zip(_events("a", 30, first=60), _events("b", 30, first=60)) for e in pair]
    produce_all(bound, first)
    summary, outage = _serve_through_an_outage(
        lambda: run_kafka(bound, engine, handle_signals=False, max_resident_keys=1), bound, own_redis, caplog,
        ready=len(first), during=then,
    )  # fmt: skip  (one of the two keys waits in Redis: its next event must restore it)
    assert summary["events"] == summary["predictions"] == len(first) + len(then)
    assert summary["evictions"]["count"] >= 2 and summary["restores"]["count"] >= 2, summary

    free_summary = run_kafka(free, engine, handle_signals=False)  # every event at once, nothing evicted
    assert free_summary["predictions"] == len(first) + len(then)

    def predictions(settings: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in p.items() if k != "ts"} for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic)]

    bounded = predictions(bound)
    ids = [p["id"] for p in bounded]
    print(f"evicted key during a {outage:.1f} s Redis outage: inputs {len(first) + len(then)}, lost {len(first) + len(then) - len(set(ids))}, duplicated {len(ids) - len(set(ids))}")
    assert bounded == predictions(free)  # none lost, none twice, each as the unbounded run predicted it
    warnings = [r.getMessage() for r in caplog.records]
    assert len([w for w in warnings if "not loaded" in w]) == 1, warnings  # one line for the outage, not one per attempt
    assert len([w for w in warnings if "answers again" in w]) == 1, warnings


def test_a_signal_while_a_key_waits_for_redis_stops_the_service_at_once_in_one_line_and_a_restart_predicts_its_events(
    kafka_bootstrap: str, own_redis: RedisServer, unique: str, tmp_path: Path  # noqa: F811
) -> None:
    """Before, the stop waited for Redis up to snapshot.outage_timeout_s (600 s), past any supervisor's grace period."""
    settings = settings_for(kafka_bootstrap, own_redis.url, unique, topic_partitions=1, group_id=f"group-{unique}", start="committed", idle_timeout_s=8.0)
    log, signalled = tmp_path / "service.log", []

    def terminate_once_a_waits(service: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while "not loaded" not in log.read_text():  # a's first event waits for its snapshot
            assert service.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        signalled.append(time.monotonic())
        service.send_signal(signal.SIGTERM)

    code, out, stderr = _cli_service_while_redis_goes_down(kafka_bootstrap, own_redis, settings, log, {}, terminate_once_a_waits)  # timeout: 600 s
    stopped_in = time.monotonic() - signalled[0]
    assert (code, out) == (2, b""), stderr
    assert stopped_in < 30, stopped_in  # a supervisor's usual grace period, far below the 600 s of the timeout
    assert len(stderr) == 3, stderr  # the outage's warning, the signal's, then the error
    assert "snapshot of model key 'a' not loaded" in stderr[0] and "SIGTERM: finishing the stream" in stderr[1]
    assert stderr[2].startswith("stream-learner: error: cannot load the snapshot of model key 'a': stopped while Redis does not answer (")

    summary, a_ids = _restarted_with_redis_back(kafka_bootstrap, own_redis, settings)
    print(f"SIGTERM while Redis is down: stopped in {stopped_in:.1f} s, exit {code}; after the restart: a {len(a_ids)} of 100")
    assert sorted(a_ids) == sorted(f"a-{i}" for i in range(100)) and summary["predictions"] >= 100  # every event of a predicted, once
