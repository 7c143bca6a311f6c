"""Snapshot cost: size, time to snapshot and to restore, and throughput with Bytewax recovery on and off.

    .venv/bin/python benchmarks/snapshot_cost.py [--baseline DIR] [--repeat 3]

Measures whatever ``stream_learner`` imports: for each model (logreg,
hoeffding_tree, torch:mlp with EWC), a learner step trained on a seeded SEA
stream (four concepts, the task field naming each); its snapshot's payload
size; the median time of a snapshot made in place (``snapshot().payload``),
of the stream's share of a background one (``snapshot(background=True)``:
the fork) and of a restore (``KeyedLearner.restore``). Then the dataflow
over 100,000 SEA events with Bytewax recovery off and on (a recovery
directory; an epoch every second, the Kafka run's default, and every
0.1 s), events/s, run back to back.

With ``--baseline DIR`` (a worktree of an earlier commit, e.g.
``git worktree add /tmp/before HEAD``) each round runs this script once
against the current code and once against ``DIR`` (``PYTHONPATH``),
alternating, and prints both and the ratio current / baseline of each
figure's median over the rounds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

MODELS: dict[str, dict[str, Any]] = {
    "logreg": {"model": "logreg", "events": 20_000},
    "hoeffding_tree": {"model": "hoeffding_tree", "events": 20_000},
    "torch:mlp+ewc": {"model": "torch:mlp", "params": {"hidden": [32]}, "strategy": "ewc", "events": 5_000},
}
RECOVERY_MODELS = ("logreg", "hoeffding_tree")
RECOVERY_EVENTS = 100_000
EPOCHS = (1.0, 0.1)


def _sea(n: int) -> list[tuple[dict[str, Any], Any]]:
    from connectors.synthetic import SyntheticSource

    source = SyntheticSource("sea", seed=42, every=max(1, n // 4), concepts=4)
    return [(e.features, e.label) for e in itertools.islice(source.read_from(0), n)]


def _median_ms(action: Callable[[], Any], times: int) -> float:
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def snapshot_figures(name: str) -> dict[str, float]:
    """Size of one snapshot, and the median times of a snapshot in place, the fork of a background one, and a restore."""
    from stream_learner.engine import EngineConfig, KeyedLearner
    from stream_learner.events import Event
    from stream_learner.learners.base import LearnerSpec

    spec = MODELS[name]
    n = spec["events"]
    config = EngineConfig(learner=LearnerSpec(spec["model"], spec.get("params", {}), strategy=spec.get("strategy")), snapshot_seconds=0.0)
    step = KeyedLearner("k", config)
    events = [Event(str(i), "k", x, y, i * 4 // n, 0, i) for i, (x, y) in enumerate(_sea(n))]
    for i in range(0, n, 500):
        step.process(events[i : i + 500], now=0.0)
    payload = step.snapshot().payload
    forks: list[float] = []

    def background() -> None:
        started = time.perf_counter()
        snapshot = step.snapshot(background=True)
        forks.append(time.perf_counter() - started)
        snapshot.payload  # noqa: B018 (waits for the child, which is reaped)

    for _ in range(5):
        background()
    return {
        "bytes": len(payload),
        "snapshot_ms": _median_ms(lambda: step.snapshot().payload, 9),
        "fork_ms": statistics.median(forks) * 1000,
        "restore_ms": _median_ms(lambda: KeyedLearner.restore(payload, config), 9),
    }


def recovery_rates(name: str, events: list[tuple[dict[str, Any], Any]]) -> dict[str, float]:
    """Events/s of the dataflow (outputs dropped) with Bytewax recovery off, then on at each of :data:`EPOCHS`, back to back."""
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSink, cluster_main

    from connectors.memory import MemorySource
    from stream_learner.app.dataflow import Sinks, build_dataflow
    from stream_learner.app.run_stats import RunStats
    from stream_learner.engine import EngineConfig
    from stream_learner.learners.base import LearnerSpec

    rates = {}
    for epoch in (None, *EPOCHS):
        with tempfile.TemporaryDirectory() as tmp:
            config = EngineConfig(learner=LearnerSpec(name), snapshot_seconds=0.0)
            flow = build_dataflow(MemorySource(events), config, Sinks(predictions=[TestingSink([])]), RunStats(), recoverable=epoch is not None)
            recovery = None
            if epoch is not None:
                init_db_dir(Path(tmp), 1)
                recovery = RecoveryConfig(tmp)
            started = time.perf_counter()
            cluster_main(flow, [], 0, epoch_interval=timedelta(seconds=epoch or 1.0), recovery_config=recovery)
            rates["recovery_off" if epoch is None else f"recovery_{epoch:g}s"] = len(events) / (time.perf_counter() - started)
    return rates


def measure() -> dict[str, dict[str, float]]:
    """Every figure of the code ``stream_learner`` imports now."""
    results = {name: snapshot_figures(name) for name in MODELS}
    events = _sea(RECOVERY_EVENTS)
    for name in RECOVERY_MODELS:
        results[name].update(recovery_rates(name, events))
    return results


def _run_against(path: Path) -> dict[str, dict[str, float]]:
    """:func:`measure` in a child process importing the code under ``path`` first."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, __file__, "--json"], env=env, cwd=path, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def _table(title: str, results: dict[str, dict[str, float]]) -> None:
    print(title)
    recovery = ["recovery_off", *(f"recovery_{epoch:g}s" for epoch in EPOCHS)]
    print(f"{'model':<16}{'bytes':>10}{'snapshot ms':>13}{'fork ms':>9}{'restore ms':>12}" + "".join(f"{name.replace('recovery_', 'recovery ') + ' ev/s':>22}" for name in recovery))
    for name, r in results.items():
        rates = "".join(f"{r[fig]:>22,.0f}" for fig in recovery if fig in r)
        print(f"{name:<16}{r['bytes']:>10,.0f}{r['snapshot_ms']:>13.2f}{r['fork_ms']:>9.2f}{r['restore_ms']:>12.2f}{rates}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR", help="a checkout of earlier code to compare with, in the same run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds with --baseline, alternating current and baseline")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line (what --baseline reads)")
    args = parser.parse_args(argv)
    if args.baseline is None:
        results = measure()
        if args.json:
            print(json.dumps(results))
        else:
            _table("this code", results)
        return
    here = Path(__file__).resolve().parents[1]
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {"current": [], "baseline": []}
    for _ in range(args.repeat):  # alternating, so a busy spell on a shared machine meets both
        rounds["current"].append(_run_against(here))
        rounds["baseline"].append(_run_against(args.baseline.resolve()))
    medians = {
        which: {name: {fig: statistics.median(r[name][fig] for r in runs) for fig in runs[0][name]} for name in runs[0]} for which, runs in rounds.items()
    }
    _table(f"baseline ({args.baseline}), medians of {args.repeat} rounds", medians["baseline"])
    _table(f"current ({here}), medians of {args.repeat} rounds", medians["current"])
    print("current / baseline")
    for name, now in medians["current"].items():
        before = medians["baseline"][name]
        ratios = "   ".join(f"{fig} {now[fig] / before[fig]:.2f}x" for fig in now)
        print(f"{name:<16}{ratios}")


if __name__ == "__main__":
    main()
