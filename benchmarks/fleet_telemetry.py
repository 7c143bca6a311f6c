"""What watching a fleet costs: the run's counts (RunStats) and the Prometheus telemetry over 1 to 100,000 keys.

    .venv/bin/python benchmarks/fleet_telemetry.py [--events 200000] [--keys 1,1000,100000] [--top-keys 100]

Feeds what a run's learner steps hand on: per batch of 1,000 events, one
step output per key in it (its predictions, and a metrics record for every
100th event of the key and each key's last), and the step's duration. For
each key count: microseconds per event through ``RunStats`` with a
``Telemetry`` listening, its exposition's samples, distinct ``key`` label
values, size and render time, and the memory both keep (tracemalloc); the
same with a label for every key (``top_keys`` unbounded, the engine before
issue #17) in the same run, up to ``--baseline-max-keys`` (a label per key
at 100,000 keys is millions of series), and the ratio bounded / per key.
Then the time of ``summary()`` (ranks every key, once at the end) and of
``progress()`` (the progress line). Times are this process's CPU time (one
thread), so a busy machine slows the run, not the figures. Seeded and
offline: no dataflow, no learner.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stream_learner.app.run_stats import RunStats
from stream_learner.app.telemetry import Telemetry
from stream_learner.engine import StepOutput

BATCH = 1000
METRICS_EVERY = 100


def _metrics(key: str, events: int, accuracy: float) -> dict[str, Any]:
    return {
        "type": "metrics", "key": key, "events": events, "labelled": events, "accuracy": accuracy, "accuracy_window": accuracy,
        "mae": None, "rmse": None, "concept": 0, "concepts": 1, "drifts": 0, "ts": 0.0,
        "forgetting": {"average": None, "bwt": None, "average_accuracy": accuracy, "average_mae": None, "metric": "accuracy", "concepts": 1, "columns": [0], "matrix": [[accuracy]]},
    }  # fmt: skip


def _batches(events: int, keys: int, seed: int = 7) -> list[list[StepOutput]]:
    """The step outputs of each batch: a key's predictions, and its metrics record every METRICS_EVERY of its events and at its last."""
    rng = random.Random(seed)
    stream = [f"key-{rng.randrange(keys)}" for _ in range(events)]
    last = {key: i for i, key in enumerate(stream)}
    seen: dict[str, int] = {}
    batches = []
    for start in range(0, events, BATCH):
        groups: dict[str, list[int]] = {}
        for i in range(start, min(start + BATCH, events)):
            groups.setdefault(stream[i], []).append(i)
        outputs = []
        for key, positions in groups.items():
            n = seen[key] = seen.get(key, 0) + len(positions)
            due = n // METRICS_EVERY > (n - len(positions)) // METRICS_EVERY or last[key] in positions
            metrics = [_metrics(key, n, rng.random())] if due else []
            outputs.append(StepOutput(predictions=[{"key": key}] * len(positions), metrics=metrics))  # type: ignore[arg-type]
        batches.append(outputs)
    return batches


def _feed(stats: RunStats, batches: list[list[StepOutput]]) -> float:
    started = time.process_time()
    for outputs in batches:
        stats.add_read(sum(len(o.predictions) for o in outputs))
        for out in outputs:
            stats.step_done(out.predictions[0]["key"], len(out.predictions), 0.0001)
        stats.observe(outputs)
    return time.process_time() - started


def _timed(call: Any, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        call()
        best = min(best, time.process_time() - started)
    return best


def _watch(batches: list[list[StepOutput]], events: int, top_keys: int) -> tuple[RunStats, Telemetry, dict[str, Any]]:
    telemetry = Telemetry(top_keys=top_keys)
    stats = RunStats(telemetry)
    seconds = _feed(stats, batches)
    tracemalloc.start()  # a second pass: tracing slows allocation, so it is not timed
    traced = RunStats(Telemetry(top_keys=top_keys))
    _feed(traced, batches)
    memory = tracemalloc.get_traced_memory()[0]  # what ``traced`` holds, and the few transient bytes left
    tracemalloc.stop()
    text = telemetry.exposition()
    samples = [s for family in text_string_to_metric_families(text.decode()) for s in family.samples]
    return stats, telemetry, {
        "us_per_event": 1e6 * seconds / events,
        "samples": len(samples),
        "key_labels": len({s.labels["key"] for s in samples if "key" in s.labels}),
        "exposition_kb": len(text) / 1024,
        "render_ms": 1e3 * _timed(telemetry.exposition, 3),
        "memory_mb": memory / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", default="1,1000,10000,100000", help="comma-separated key counts")
    parser.add_argument("--top-keys", type=int, default=100, help="keys with their own Prometheus label (--metrics-top-keys)")
    parser.add_argument("--baseline-max-keys", type=int, default=10_000, help="largest fleet also measured with a label per key")
    args = parser.parse_args()
    print(f"{args.events:,} events in batches of {BATCH:,}, a metrics record every {METRICS_EVERY} events of a key; --metrics-top-keys {args.top_keys}")
    for keys in (int(k) for k in args.keys.split(",")):
        batches = _batches(args.events, keys)
        stats, _, bounded = _watch(batches, args.events, args.top_keys)
        print(f"\n{keys:,} keys: summary() {1e3 * _timed(stats.summary, 3):,.1f} ms, progress() {1e6 * _timed(stats.progress):,.1f} us")
        rows = [("bounded", bounded)]
        if keys <= args.baseline_max_keys:
            rows.append(("label per key", _watch(batches, args.events, 10**9)[2]))
        print(f"  {'':14}" + "".join(f"{name:>15}" for name in bounded))
        for name, figures in rows:
            print(f"  {name:14}" + "".join(f"{v:>15,.2f}" if isinstance(v, float) else f"{v:>15,}" for v in figures.values()))
        if len(rows) == 2:
            print(f"  {'ratio':14}" + "".join(f"{rows[0][1][k] / rows[1][1][k]:>15.3f}" if rows[1][1][k] else f"{'-':>15}" for k in bounded))


if __name__ == "__main__":
    main()
