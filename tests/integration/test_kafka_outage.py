"""The Kafka cluster lost mid-stream: a TCP proxy in front of the test broker cuts every connection.

The broker keeps its data (Tansu's memory storage would forget everything
if it were restarted); the service (``stream-learner run --source kafka``,
a real process) and the test's own producer reach it only through the
proxy, which cuts all connections and refuses new ones for 30 s while
events keep coming, then lets them through again. Every input must end as
a prediction or a dead letter (none lost; duplicates are counted: outputs
are at-least-once), the service must say within 10 s that the cluster is
gone, and exit 0 once the stream ends. A cut longer than
``kafka.outage_timeout_s`` stops the service with one line, exit status 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import pytest
from tcp_proxy import TcpProxy
from test_kafka_e2e import read_topic

from connectors.kafka import ensure_topics
from connectors.kafka_producer import ProducerProcess

pytestmark = pytest.mark.integration

SIGNING_KEY = "outage-signing-key"
EVENTS = 3000
BAD_EVERY = 50  # every 50th input is not JSON: a dead letter
CHUNK = 100
OUTAGE_S = 30.0


@pytest.fixture
def proxied(broker_behind: Callable[[int], str]) -> Iterator[tuple[str, TcpProxy]]:
    """``(bootstrap, proxy)``: a broker reached only through the proxy (its metadata names the proxy's port)."""
    with TcpProxy() as proxy:
        host, port = broker_behind(proxy.port).rsplit(":", 1)
        proxy.upstream = (host, int(port))
        yield f"127.0.0.1:{proxy.port}", proxy


class Stderr(threading.Thread):
    """A process's stderr lines, each with the time it arrived."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.lines: list[tuple[float, str]] = []
        self.start()

    def run(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.decode(errors="replace").rstrip("\n")))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def close(self) -> None:
        """Once the process has ended: the rest of its stderr, and its pipes closed."""
        self.join(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def kill_left(*processes: subprocess.Popen[bytes]) -> None:
    """Kill those still running (a failed test's)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def topics_for(unique: str) -> dict[str, str]:
    return {name: f"{name}-{unique}" for name in ("in", "pred", "metrics", "dlq")}


def service(bootstrap: str, redis_url: str, unique: str, idle_s: float, **env: str) -> subprocess.Popen[bytes]:
    t = topics_for(unique)
    command = [
        sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json",
        "--bootstrap-servers", bootstrap, "--app", f"outage-{unique}",
        "--input-topic", t["in"], "--predictions-topic", t["pred"], "--metrics-topic", t["metrics"], "--dead-letter-topic", t["dlq"],
        "--epoch-seconds", "0.5", "--stop-when-idle", str(idle_s), "--metrics-every", "500",
    ]  # fmt: skip
    environ = {**os.environ, "STREAM_LEARNER_REDIS__URL": redis_url, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY, **env}
    return subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def inputs() -> list[bytes]:
    return [
        b"not json %d" % i if i % BAD_EVERY == BAD_EVERY - 1 else orjson.dumps({"id": f"e-{i}", "features": {"x": float(i % 7), "y": float(i % 3)}, "label": i % 2 == 0})
        for i in range(EVENTS)
    ]


FEEDER = """
import sys, time
from connectors.kafka import make_producer
bootstrap, topic, path, chunk, pause = sys.argv[1:]
values = open(path, "rb").read().split(b"\\n")
producer = make_producer({"bootstrap_servers": [bootstrap], "reconnect_backoff_max_ms": 500})  # back as soon as the proxy is
for start in range(0, len(values), int(chunk)):
    for value in values[start : start + int(chunk)]:
        producer.send(topic, value=value)
    time.sleep(float(pause))
producer.flush()
producer.close()
"""


def feed(bootstrap: str, topic: str, values: list[bytes], pause_s: float, tmp_path: Path) -> subprocess.Popen[bytes]:
    """Produces ``values`` a chunk at a time, through the proxy, from a process of its own: what it sends during a cut waits in its producer."""
    path = tmp_path / "inputs"
    path.write_bytes(b"\n".join(values))
    return subprocess.Popen([sys.executable, "-c", FEEDER, bootstrap, topic, str(path), str(CHUNK), str(pause_s)])


def tally(bootstrap: str, unique: str, events: int = EVENTS) -> dict[str, Any]:
    """The first ``events`` inputs, and how many ended as predictions or dead letters: lost, duplicated."""
    t = topics_for(unique)
    predicted = Counter(r["id"] for r in read_topic(bootstrap, t["pred"]))
    dead = Counter(r["origin"]["offset"] for r in read_topic(bootstrap, t["dlq"]))
    valid = {f"e-{i}" for i in range(events) if i % BAD_EVERY != BAD_EVERY - 1}
    bad = events - len(valid)
    return {
        "inputs": events,
        "lost": len(valid - set(predicted)) + bad - len(dead),
        "duplicated": sum(n - 1 for n in predicted.values()) + sum(n - 1 for n in dead.values()),
        "unknown": len(set(predicted) - valid),
    }


def test_a_30_second_cut_mid_stream_loses_nothing_and_is_said(proxied: tuple[str, TcpProxy], redis_url: str, unique: str, tmp_path: Path) -> None:
    bootstrap, proxy = proxied
    t = topics_for(unique)
    ensure_topics({"bootstrap_servers": [bootstrap]}, t.values(), partitions=1)
    process = service(bootstrap, redis_url, unique, idle_s=15)  # the feeder may come back a little after the service
    errors = Stderr(process)
    try:
        feeder = feed(bootstrap, t["in"], inputs(), pause_s=0.4, tmp_path=tmp_path)
        time.sleep(6)  # the stream is flowing
        cut = time.monotonic()
        proxy.cut()
        time.sleep(OUTAGE_S)
        proxy.restore()
        assert feeder.wait(180) == 0
        assert process.wait(240) == 0, errors.text()
    finally:
        kill_left(process, feeder)
        errors.close()
    counts = tally(bootstrap, unique)
    warnings = [(at - cut, line) for at, line in errors.lines if "WARNING" in line and at > cut]
    print(f"30 s cut: {counts}, exit {process.returncode}, first warning {warnings[0][0] if warnings else None} s after the cut")
    print(errors.text())
    assert warnings and warnings[0][0] <= 10, errors.text()
    assert counts["lost"] == 0 and counts["unknown"] == 0, counts


def test_a_cut_longer_than_the_outage_timeout_stops_the_service_with_one_line(
    proxied: tuple[str, TcpProxy], redis_url: str, unique: str, tmp_path: Path
) -> None:
    bootstrap, proxy = proxied
    t = topics_for(unique)
    ensure_topics({"bootstrap_servers": [bootstrap]}, t.values(), partitions=1)
    process = service(bootstrap, redis_url, unique, idle_s=60, STREAM_LEARNER_KAFKA__OUTAGE_TIMEOUT_S="5")
    errors = Stderr(process)
    feeder = feed(bootstrap, t["in"], inputs()[:500], pause_s=0.2, tmp_path=tmp_path)
    try:
        assert feeder.wait(60) == 0
        deadline = time.monotonic() + 60
        while len(read_topic(bootstrap, t["pred"])) < 490:  # the service runs and has read them (10 are dead letters)
            assert time.monotonic() < deadline and process.poll() is None, errors.text()
        proxy.cut()
        status = process.wait(120)
    finally:
        kill_left(process, feeder)
        errors.close()
    text = errors.text()
    proxy.restore()
    counts = tally(bootstrap, unique, 500)  # what the service had read before the cut
    print(f"cut past the 5 s outage timeout: {counts}, exit {status}")
    print(text)
    assert status == 2, text
    failures = [line for _, line in errors.lines if line.startswith("stream-learner: error:")]
    assert len(failures) == 1 and "kafka.outage_timeout_s" in failures[0] and "has not answered" in failures[0], text
    assert "panicked" not in text and "Traceback" not in text and "backtrace" not in text, text
    assert all(line.startswith(("WARNING ", "stream-learner: error:")) for _, line in errors.lines), text
    assert counts["lost"] == 0 and counts["unknown"] == 0, counts


def test_a_broker_back_without_its_data_gets_every_output_sent_since(broker_behind: Callable[[int], str], unique: str) -> None:
    """The cluster comes back empty (it lost its data, and the idempotent producer's id): a new producer sends again what was not acknowledged."""
    with TcpProxy() as proxy:
        host, port = broker_behind(proxy.port).rsplit(":", 1)
        proxy.upstream = (host, int(port))
        bootstrap = f"127.0.0.1:{proxy.port}"
        client = {"bootstrap_servers": [bootstrap]}
        topic = f"out-{unique}"
        ensure_topics(client, [topic], partitions=1)
        producer = ProducerProcess(client, outage_timeout_s=120)
        try:
            producer.flush(producer.send(topic, [(b"k", orjson.dumps({"id": f"before-{i}"})) for i in range(100)]))
            proxy.cut()
            host, port = broker_behind(proxy.port).rsplit(":", 1)  # a new, empty broker behind the same address
            proxy.upstream = (host, int(port))
            proxy.restore()
            ensure_topics(client, [topic], partitions=1)
            producer.flush(producer.send(topic, [(b"k", orjson.dumps({"id": f"after-{i}"})) for i in range(100)]))
            resent = producer.resent
        finally:
            producer.close()
        ids = Counter(r["id"] for r in read_topic(bootstrap, topic))
    print(f"broker back empty: 100 outputs sent after it, {sum(ids[f'after-{i}'] > 0 for i in range(100))} arrived, resent {resent}, ids {dict(Counter(ids.values()))}")
    assert all(ids[f"after-{i}"] >= 1 for i in range(100)), ids


def test_a_cluster_back_without_its_data_stops_the_service_with_one_line(
    broker_behind: Callable[[int], str], redis_url: str, unique: str, tmp_path: Path
) -> None:
    """The partition's end is now below what the service read: never read on silently from there (its learners would skip the new records)."""
    with TcpProxy() as proxy:
        host, port = broker_behind(proxy.port).rsplit(":", 1)
        proxy.upstream = (host, int(port))
        bootstrap = f"127.0.0.1:{proxy.port}"
        t = topics_for(unique)
        ensure_topics({"bootstrap_servers": [bootstrap]}, t.values(), partitions=1)
        process = service(bootstrap, redis_url, unique, idle_s=60, STREAM_LEARNER_KAFKA__OFFSET_OUT_OF_RANGE="earliest")
        errors = Stderr(process)
        feeder = feed(bootstrap, t["in"], inputs()[:500], pause_s=0.1, tmp_path=tmp_path)
        try:
            assert feeder.wait(60) == 0
            deadline = time.monotonic() + 60
            while len(read_topic(bootstrap, t["pred"])) < 490:  # the service has read them (10 are dead letters)
                assert time.monotonic() < deadline and process.poll() is None, errors.text()
            proxy.cut()
            host, port = broker_behind(proxy.port).rsplit(":", 1)  # a new, empty broker behind the same address
            proxy.upstream = (host, int(port))
            proxy.restore()
            ensure_topics({"bootstrap_servers": [bootstrap]}, t.values(), partitions=1)
            status = process.wait(120)
        finally:
            kill_left(process, feeder)
            errors.close()
    text = errors.text()
    print(f"cluster back without its data: exit {status}")
    print(text)
    failures = [line for _, line in errors.lines if line.startswith("stream-learner: error:")]
    assert status == 2 and len(failures) == 1, text
    assert f"offset 500 of Kafka partition {t['in']}:0 is out of range: the partition is empty (next offset 0), after this run read up to it" in failures[0], text
    assert "restarted, the service goes on from the partition's first offset (kafka.offset_out_of_range=earliest)" in failures[0], text
