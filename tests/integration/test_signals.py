"""SIGINT and SIGTERM mid-stream stop a run gracefully, and ``--resume`` goes on from there.

Real processes (the ``stream-learner`` command), a real Kafka-protocol
broker and a real Redis. Each case counts: the events read before the stop
are all predictions (lost = 0), the final snapshot holds exactly them, and
the resumed run predicts every other event once (duplicated = 0).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from test_kafka_e2e import read_topic

from connectors.kafka import ensure_topics, make_producer
from connectors.local_store import LocalSnapshotStore
from connectors.redis_store import RedisSnapshotStore
from stream_learner.settings import load_settings
from stream_learner.snapshot import load_latest_valid

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("stream-learner"))
SIGNING_KEY = "signals-signing-key"
STREAM = "synthetic:sea?every=1000&concepts=3"  # 3,000 events
TOTAL = 3000


def _stop_mid_stream(command: list[str], signum: int, *, cwd: Path, env: dict[str, str], until: Callable[[], bool]) -> tuple[int, dict[str, Any], str]:
    """Run ``command``, send ``signum`` once ``until()`` holds; its exit status, JSON summary and stderr."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not until():
            assert process.poll() is None, "the run ended before the signal: " + process.communicate()[1]
            assert time.monotonic() < deadline, "the run did not get far enough within 120 s"
            time.sleep(0.1)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, (stdout, stderr)
    return process.returncode, json.loads(lines[0]), stderr


def _assert_graceful(returncode: int, summary: dict[str, Any], stderr: str, signum: int) -> None:
    assert returncode == 0, stderr
    assert f"{signal.Signals(signum).name}: finishing the stream" in stderr
    assert "panicked" not in stderr and "Traceback" not in stderr, stderr
    assert 0 < summary["events"] < TOTAL  # stopped mid-stream
    assert summary["events"] == summary["predictions"] and summary["dead_letters"] == 0  # nothing read was lost


def _offsets(ids: list[str]) -> list[int]:
    return [int(i.rsplit(":", 1)[1]) for i in ids]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_an_embedded_run_gracefully_and_resume_appends_the_rest(tmp_path: Path, signum: int) -> None:
    env = {**os.environ, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY}
    common = ["run", "--source", STREAM, "--model", "hoeffding_tree", "--out", "o", "--snapshot-seconds", "0", "--metrics-every", "200"]
    predictions = tmp_path / "o" / "predictions.jsonl"

    def some_predicted() -> bool:
        return predictions.exists() and predictions.read_bytes().count(b"\n") >= 400

    returncode, summary, stderr = _stop_mid_stream([CLI, *common, "--rate", "400", "--json"], signum, cwd=tmp_path, env=env, until=some_predicted)
    _assert_graceful(returncode, summary, stderr, signum)
    read = summary["events"]
    lines = predictions.read_text().splitlines()
    assert _offsets([json.loads(line)["id"] for line in lines]) == list(range(read))  # each event read, once, in order
    # the final snapshot holds exactly the events read (the only snapshot: --snapshot-seconds 0)
    store = LocalSnapshotStore(tmp_path / "o" / "snapshots", app="stream-learner")
    header, _, refusals = load_latest_valid(store, "default", SIGNING_KEY.encode())
    assert summary["snapshots"] == 1 and refusals == []
    assert header.events_seen == read and header.source_offsets == {0: read}

    resumed = subprocess.run([CLI, *common, "--resume", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["events"] == TOTAL - read
    ids = [json.loads(line)["id"] for line in predictions.read_text().splitlines()]
    assert _offsets(ids) == list(range(TOTAL))  # the first run's lines kept, the rest appended: none lost, none twice
    metrics = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [m["events"] for m in metrics if m["type"] == "metrics"][-1] == TOTAL  # the learner went on from its snapshot


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_kafka_run_gracefully_and_a_restart_goes_on_from_its_snapshot(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, signum: int
) -> None:
    topics = {name: f"sig-{name}-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    env = {
        **os.environ,
        "STREAM_LEARNER_APP": f"signals-{unique}",
        "STREAM_LEARNER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_LEARNER_KAFKA__INPUT_TOPIC": topics["in"],
        "STREAM_LEARNER_KAFKA__PREDICTIONS_TOPIC": topics["pred"],
        "STREAM_LEARNER_KAFKA__METRICS_TOPIC": topics["metrics"],
        "STREAM_LEARNER_KAFKA__DEAD_LETTER_TOPIC": topics["dlq"],
        "STREAM_LEARNER_KAFKA__TOPIC_PARTITIONS": "1",
        "STREAM_LEARNER_REDIS__URL": redis_url,
        "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY,
    }
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("STREAM_LEARNER_")})
    client = settings.kafka.client_config()
    ensure_topics(client, [topics["in"]], 1)
    sent = [f"e-{i}" for i in range(TOTAL)]

    def produce_slowly() -> None:  # about 500 events a second: the run is mid-stream when the signal comes
        producer = make_producer(client)
        for i, event_id in enumerate(sent):
            producer.send(topics["in"], value=orjson.dumps({"id": event_id, "features": {"x": i % 10, "y": (i * 7) % 10}, "label": i % 10 > 4}))
            if i % 50 == 49:
                producer.flush()
                time.sleep(0.1)
        producer.flush()
        producer.close()

    producing = threading.Thread(target=produce_slowly)
    producing.start()
    command = [CLI, "run", "--source", "kafka", "--json", "--stop-when-idle", "3"]
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)

    def some_predicted() -> bool:
        partitions = consumer.partitions_for_topic(topics["pred"])
        return bool(partitions) and sum(consumer.end_offsets([TopicPartition(topics["pred"], p) for p in partitions]).values()) >= 300

    try:
        returncode, summary, stderr = _stop_mid_stream(command, signum, cwd=tmp_path, env=env, until=some_predicted)
    finally:
        consumer.close()
        producing.join()
    _assert_graceful(returncode, summary, stderr, signum)
    read = summary["events"]
    assert len(read_topic(kafka_bootstrap, topics["pred"])) == read  # every event read was published, once
    store = RedisSnapshotStore.from_url(redis_url, app=f"signals-{unique}")
    try:
        header, _, refusals = load_latest_valid(store, "default", SIGNING_KEY.encode())
    finally:
        store.close()
    assert refusals == [] and header.events_seen == read and header.source_offsets == {0: read}  # the final snapshot

    restarted = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr
    again = json.loads(restarted.stdout)
    assert again["restored_keys"] == ["default"] and again["predictions"] == TOTAL - read  # it skipped what the snapshot had learned
    ids = [p["id"] for p in read_topic(kafka_bootstrap, topics["pred"])]
    assert sorted(ids) == sorted(sent)  # both runs together: every event predicted once, none lost
