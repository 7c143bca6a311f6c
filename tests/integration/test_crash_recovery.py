"""kill -9 at five points, and the learner ends as if nothing happened.

The service runs as a real process (``stream-learner run --source kafka``
with a recovery directory, a river tree or a torch MLP with EWC) while the
test keeps producing to a two-partition topic. It is SIGKILLed before its
first epoch, mid-stream, during a snapshot write (its Redis stopped),
right after a snapshot and during the final flush, and restarted each time
on the same recovery directory; its final learner state (predictions on a
probe set, the events-seen and learned counters, accuracy, drifts) must
equal an uninterrupted run of the same events. Outputs may repeat
(at-least-once), but every event has its prediction: an epoch closes only
once the broker acknowledged its outputs. The Kafka producer and consumer
processes die with the killed service.
"""

from __future__ import annotations

import itertools
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
from partitions import one_partition_per_key
from test_scale_out import _free_ports
from test_store_faults import RedisServer

from connectors.kafka import ensure_topics, make_producer
from connectors.redis_store import RedisSnapshotStore
from connectors.synthetic import SyntheticSource
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import load_latest_valid

pytestmark = pytest.mark.integration

SIGNING_KEY = "crash-signing-key"
EVENTS = 3000
KEYS = ("a", "b")  # the model keys
SNAPSHOT_EVERY = 400
IDLE_SECONDS = 4  # --stop-when-idle
CLUSTER_KILL_AT = (700, 1800)  # the same, for the two-process cluster
AHEAD = 300  # most events produced ahead of the predictions seen: the kills hit mid-stream, each run lives a few epochs
ENGINE = EngineConfig(metrics_every=250, snapshot_every=SNAPSHOT_EVERY)
PROBE = [{"0": x / 2, "1": y / 2, "2": (x + y) % 10} for x, y in itertools.product(range(20), range(20))]


def _messages() -> list[tuple[bytes, bytes]]:
    source = SyntheticSource("sea", seed=11, every=1000, concepts=3)
    out = []
    for event in itertools.islice(source.read_from(0), EVENTS):
        key = KEYS[0] if event.offset % 3 else KEYS[1]  # also the Kafka key: each model key's events on one partition
        doc = {"id": f"e{event.offset}", "key": key, "features": {str(k): v for k, v in event.features.items()}, "label": event.label}
        out.append((key.encode(), orjson.dumps(doc)))
    return out


class _Watcher(threading.Thread):
    """Collects the distinct ids on the predictions topic while the service runs."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.ids: set[str] = set()
        self.total = 0
        self.stop = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            while not consumer.partitions_for_topic(self.topic):
                if self.stop.wait(0.2):
                    return
            tps = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic))]
            consumer.assign(tps)
            consumer.seek_to_beginning()
            while not self.stop.is_set():
                for messages in consumer.poll(timeout_ms=100, max_records=5000).values():
                    self.total += len(messages)
                    self.ids.update(orjson.loads(m.value)["id"] for m in messages)
        finally:
            consumer.close()

    def wait_for(self, n: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ids) < n:
            assert process.poll() is None, f"the service exited early: {log.read_text()}"
            assert time.monotonic() < deadline, f"only {len(self.ids)} predictions after {timeout}s"
            time.sleep(0.02)


def _child_processes(processes, service: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> list[int]:
    """The service's Kafka producer and consumer processes (they start with the run, before the first event)."""
    deadline = time.monotonic() + timeout
    while len(children := processes.spawned_children(service.pid)) < 2:
        assert service.poll() is None, f"the service exited early: {log.read_text()}"
        assert time.monotonic() < deadline, f"{len(children)} of the 2 Kafka child processes after {timeout}s"
        time.sleep(0.02)
    assert len(children) == 2, children
    return children


def _environment(redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "STREAM_LEARNER_REDIS__URL": redis_url,
        "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY,
        "STREAM_LEARNER_SNAPSHOT__RESUME": "false",  # only Bytewax recovery may carry state across the crashes
        "STREAM_LEARNER_KAFKA__POLL_MAX_RECORDS": "100",
        "STREAM_LEARNER_KAFKA__MAX_BATCH_RECORDS": "100",  # one fetch a batch: the kills land mid-stream
    }


def _command(kafka_bootstrap: str, app: str, topics: dict[str, str], recovery: Path, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json",
        "--bootstrap-servers", kafka_bootstrap, "--app", app,
        "--input-topic", topics["in"], "--predictions-topic", topics["pred"],
        "--metrics-topic", topics["metrics"], "--dead-letter-topic", topics["dlq"],
        "--recovery-dir", str(recovery), "--epoch-seconds", "0.2", "--stop-when-idle", str(IDLE_SECONDS),
        "--metrics-every", "250", "--snapshot-every", str(SNAPSHOT_EVERY), *more,
    ]  # fmt: skip


def _feeding(client: dict[str, Any], topic: str, messages: list[tuple[bytes, bytes]], watcher: _Watcher, kills_left: Callable[[], bool]) -> threading.Thread:
    """Produces the stream while the service dies and restarts: until the last kill, at most AHEAD events ahead of the predictions."""

    def producer_loop() -> None:
        producer = make_producer(client)
        for i, (key, value) in enumerate(messages):
            producer.send(topic, key=key, value=value)
            if i % 100 == 99:
                producer.flush()
                time.sleep(0.2)
                deadline = time.monotonic() + 20
                while kills_left() and i - len(watcher.ids) > AHEAD and time.monotonic() < deadline:
                    time.sleep(0.05)
        producer.flush()
        producer.close()

    feeding = threading.Thread(target=producer_loop, daemon=True)
    feeding.start()
    return feeding


def _assert_learned_as_uninterrupted(redis_url: str, app: str, messages: list[tuple[bytes, bytes]], embedded_run: Any, engine: EngineConfig = ENGINE) -> None:
    """Each key's last snapshot in Redis holds the learner an uninterrupted embedded run of the same events ends with."""
    _, local = embedded_run([value for _, value in messages], engine, SIGNING_KEY)
    store = RedisSnapshotStore.from_url(redis_url, app=app)
    try:
        for key in KEYS:
            crashed = KeyedLearner.restore(load_latest_valid(store, key, SIGNING_KEY.encode())[1], engine)
            calm = KeyedLearner.restore(load_latest_valid(local, key, SIGNING_KEY.encode())[1], engine)
            assert (crashed.events, crashed.learned) == (calm.events, calm.learned)
            assert crashed.metrics.accuracy == calm.metrics.accuracy and crashed.drifts == calm.drifts
            assert [crashed.learner.predict(x) for x in PROBE] == [calm.learner.predict(x) for x in PROBE]
            assert crashed.events > 0
    finally:
        for key in KEYS:
            store.delete(key)


class _Crash:
    """What a kill point watches: the predictions, the service, its own Redis and the snapshots there."""

    def __init__(self, watcher: _Watcher, redis: RedisServer, store: RedisSnapshotStore) -> None:
        self.watcher, self.redis, self.store = watcher, redis, store
        self.service: subprocess.Popen[bytes] | None = None
        self.log = Path()

    def alive(self) -> None:
        assert self.service is not None and self.service.poll() is None, f"the service exited early: {self.log.read_text()}"

    def pointers(self) -> list[int | None]:
        return [self.store.latest(key) for key in KEYS]


def _before_the_first_epoch(crash: _Crash) -> None:
    """The service's Kafka children are up: it has read nothing yet."""


def _mid_stream(crash: _Crash) -> None:
    crash.watcher.wait_for(len(crash.watcher.ids) + 700, crash.service, crash.log)


def _during_a_snapshot_write(crash: _Crash) -> None:
    """Redis stopped (SIGSTOP) once the service streams: the snapshots due every SNAPSHOT_EVERY events hang in their write."""
    crash.watcher.wait_for(len(crash.watcher.ids) + 100, crash.service, crash.log)  # it has reached Redis at start-up
    crash.redis.process.send_signal(signal.SIGSTOP)
    crash.watcher.wait_for(len(crash.watcher.ids) + 2 * SNAPSHOT_EVERY, crash.service, crash.log)


def _right_after_a_snapshot(crash: _Crash) -> None:
    before = crash.pointers()
    while crash.pointers() == before:
        crash.alive()
        time.sleep(0.005)


def _during_the_final_flush(crash: _Crash) -> None:
    """Every event predicted, Redis stopped: the idle stream ends and the final snapshots hang in their write."""
    crash.watcher.wait_for(EVENTS, crash.service, crash.log)
    crash.redis.process.send_signal(signal.SIGSTOP)
    time.sleep(IDLE_SECONDS + 3)
    crash.alive()


KILL_POINTS = (_before_the_first_epoch, _mid_stream, _during_a_snapshot_write, _right_after_a_snapshot, _during_the_final_flush)
MODELS = {
    "hoeffding_tree": ("--model", "hoeffding_tree"),
    "torch:mlp+ewc": ("--model", "torch:mlp", "--model-params", '{"hidden": [16], "batch_size": 10}', "--strategy", "ewc"),
}


def _engine(model: str) -> EngineConfig:
    """The engine configuration the CLI builds from MODELS[model] (the uninterrupted reference run's)."""
    args = dict(zip(MODELS[model][::2], MODELS[model][1::2]))
    spec = LearnerSpec.parse(args["--model"], args.get("--model-params"), seed=42, strategy=args.get("--strategy"))
    return EngineConfig(learner=spec, metrics_every=250, snapshot_every=SNAPSHOT_EVERY)


@pytest.mark.parametrize("model", MODELS)
def test_sigkill_at_five_points_changes_nothing_learned(
    model: str, kafka_bootstrap: str, unique: str, tmp_path: Path, embedded_run, processes
) -> None:
    """SIGKILL before the first epoch, mid-stream, during a snapshot write, right after a snapshot and during the final flush."""
    topics = {name: f"{name}-crash-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, list(topics.values()), partitions=2)
    messages = _messages()
    redis = RedisServer(tmp_path / "redis")
    redis.workdir.mkdir()
    redis.start()
    env = _environment(redis.url)
    app = f"crash-{unique}"
    command = _command(kafka_bootstrap, app, topics, tmp_path / "recovery", *MODELS[model])
    store = RedisSnapshotStore.from_url(redis.url, app=app)

    watcher = _Watcher(kafka_bootstrap, topics["pred"])
    crash = _Crash(watcher, redis, store)
    seen_at_kill: list[int] = []
    streaming: list[bool] = []
    watcher.start()
    feeding = _feeding(client, topics["in"], messages, watcher, kills_left=lambda: len(seen_at_kill) < len(KILL_POINTS) - 1)
    try:
        for i, kill_point in enumerate(KILL_POINTS):
            crash.log = tmp_path / f"service-{i}.log"
            with crash.log.open("wb") as err:
                crash.service = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
                children = _child_processes(processes, crash.service, crash.log)
                kill_point(crash)
                crash.alive()
                seen_at_kill.append(len(watcher.ids))
                streaming.append(feeding.is_alive())
                crash.service.send_signal(signal.SIGKILL)
                crash.service.wait(10)
                redis.process.send_signal(signal.SIGCONT)
                deadline = time.monotonic() + 10
                while any(processes.alive(pid) for pid in children):  # it dies with its parent: no orphan
                    assert time.monotonic() < deadline, f"a Kafka child process {children} outlived the killed service"
                    time.sleep(0.05)
        feeding.join(60)
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
        summary = json.loads(final.stdout.strip().splitlines()[-1])
    finally:
        if crash.service is not None and crash.service.poll() is None:  # a failed assertion left it running
            crash.service.kill()
            crash.service.wait(10)
        redis.process.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        watcher.stop.set()
        watcher.join(10)

    try:
        assert seen_at_kill[0] == 0 and seen_at_kill[-1] == EVENTS, seen_at_kill
        assert streaming[:4] == [True] * 4  # the first four kills hit while events were still arriving
        # every event was predicted (some more than once: outputs are at-least-once) ...
        assert watcher.ids == {f"e{i}" for i in range(EVENTS)}
        # ... but only what followed the last closed epoch is repeated, and the last run resumed rather than restarted
        # (without recovery, each restart would predict every event again)
        assert watcher.total - EVENTS < sum(seen_at_kill) - EVENTS, (watcher.total, seen_at_kill)
        assert summary["events"] < 1000 and summary["dead_letters"] == 0, summary
        # the same events, uninterrupted, through the embedded run: the same learner
        _assert_learned_as_uninterrupted(redis.url, app, messages, embedded_run, _engine(model))
    finally:
        redis.stop()


def test_sigkill_of_one_cluster_process_mid_stream_changes_nothing_learned(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, embedded_run
) -> None:
    """Two processes as one Bytewax cluster; one is SIGKILLed mid-stream (the other then stops too), both restart.

    Each key's events are on one partition, so its learner sees them in one
    order whoever reads them: the final state must equal the uninterrupted run's.
    """
    topics = {name: f"{name}-cluster-crash-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, [topics["in"]], partitions=2)
    # one writing process per output partition (see :mod:`partitions`)
    ensure_topics(client, [topics[name] for name in ("pred", "metrics", "dlq")], partitions=one_partition_per_key(KEYS))
    messages = _messages()
    env = _environment(redis_url)

    def command(process_id: int, addresses: str) -> list[str]:
        recovery = tmp_path / f"recovery-{process_id}"
        return _command(kafka_bootstrap, f"cluster-crash-{unique}", topics, recovery, "--addresses", addresses, "--process-id", str(process_id))

    def start_cluster(round_: int, stdout: int = subprocess.DEVNULL) -> list[subprocess.Popen[bytes]]:
        addresses = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))
        logs = [(tmp_path / f"cluster-{round_}-{i}.log").open("wb") for i in range(2)]
        try:
            return [subprocess.Popen(command(i, addresses), env=env, stdout=stdout, stderr=logs[i]) for i in range(2)]
        finally:
            for log in logs:
                log.close()

    watcher = _Watcher(kafka_bootstrap, topics["pred"])
    killed: list[int] = []
    watcher.start()
    feeding = _feeding(client, topics["in"], messages, watcher, kills_left=lambda: len(killed) < len(CLUSTER_KILL_AT))
    clusters: list[list[subprocess.Popen[bytes]]] = []
    try:
        for round_, point in enumerate(CLUSTER_KILL_AT):
            cluster = start_cluster(round_)
            clusters.append(cluster)
            log = tmp_path / f"cluster-{round_}-1.log"
            watcher.wait_for(point, cluster[1], log)
            cluster[1].send_signal(signal.SIGKILL)
            cluster[1].wait(10)
            killed.append(point)
            cluster[0].wait(30)  # its peer gone, the other process stops on its own, with one line that says what to do
            [line] = (tmp_path / f"cluster-{round_}-0.log").read_text().splitlines()
            assert cluster[0].returncode == 2 and line.startswith("stream-learner: error: process 0 lost its connection to the cluster"), line
        feeding.join(60)
        final = start_cluster(len(CLUSTER_KILL_AT), stdout=subprocess.PIPE)
        clusters.append(final)
        summaries = []
        for service in final:
            out, _ = service.communicate(timeout=180)
            assert service.returncode == 0, (tmp_path / f"cluster-{len(CLUSTER_KILL_AT)}-{final.index(service)}.log").read_text()
            summaries.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for service in itertools.chain.from_iterable(clusters):
            if service.poll() is None:
                service.kill()
                service.wait(10)
        time.sleep(1.0)
        watcher.stop.set()
        watcher.join(10)

    assert watcher.ids == {f"e{i}" for i in range(EVENTS)}  # every event predicted, some more than once
    assert sum(s["events"] for s in summaries) < EVENTS - CLUSTER_KILL_AT[-1] + 1000  # the last cluster resumed
    _assert_learned_as_uninterrupted(redis_url, f"cluster-crash-{unique}", messages, embedded_run)
