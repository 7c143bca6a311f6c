"""Throughput: the engine against a plain river loop on the same events, in one run.

    .venv/bin/python benchmarks/throughput.py [--events 100000] [--models logreg hoeffding_tree]

For each model: (a) a plain river loop (predict_one, Accuracy.update,
learn_one) over a pre-generated SEA drift stream; (b) the engine (the real
Bytewax dataflow, predictions/metrics/dead letters to JSONL files, local
snapshots) over the same events from memory. Prints events/s of the best of
``--repeat`` interleaved runs and their ratio; the median of the ratios of
each back-to-back pair (on a shared machine whose speed drifts, the fairer
figure: both runs of a pair meet the same load); and the ratio of their CPU
time in this process, which other jobs distort far less. It also
measures what Bytewax's per-epoch state snapshots would cost with recovery
on, at a 10 s epoch (the default) and at a 0.1 s one.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.testing import TestingSink, cluster_main
from river import metrics

from connectors.memory import MemorySource
from connectors.synthetic import SyntheticSource
from stream_learner.app.dataflow import Sinks, build_dataflow
from stream_learner.app.run_stats import RunStats
from stream_learner.app.runner import RunOptions, run
from stream_learner.engine import EngineConfig
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner


def sea_events(n: int, seed: int = 42) -> list[tuple[dict[str, Any], Any]]:
    """``n`` SEA events, four concepts, materialised once for every contender."""
    source = SyntheticSource("sea", seed=seed, every=max(1, n // 4), concepts=4)
    return [(e.features, e.label) for e in itertools.islice(source.read_from(0), n)]


class Timed:
    """Wall-clock and CPU seconds of this process (all its threads) over a ``with`` block."""

    def __enter__(self) -> Timed:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu


def plain_loop(model_name: str, events: list[tuple[dict[str, Any], Any]]) -> tuple[Timed, float]:
    model = build_learner(LearnerSpec(model_name)).model
    accuracy = metrics.Accuracy()
    with Timed() as timed:
        for x, y in events:
            y_pred = model.predict_one(x)
            accuracy.update(y, y_pred)
            model.learn_one(x, y)
    return timed, accuracy.get()


def engine(model_name: str, events: list[tuple[dict[str, Any], Any]], out: Path) -> tuple[Timed, float]:
    options = RunOptions(engine=EngineConfig(learner=LearnerSpec(model_name)), out=out, progress=False, console=False)
    with Timed() as timed:
        summary = run(options, source=MemorySource(events, name="bench"))
    return timed, summary["accuracy"]


def engine_with_epoch_snapshots(model_name: str, events: list[tuple[dict[str, Any], Any]], epoch: float) -> float:
    """The dataflow with recovery-style state snapshots at every epoch close (outputs dropped)."""
    discard = Sinks(predictions=[TestingSink([])])
    flow = build_dataflow(MemorySource(events), EngineConfig(learner=LearnerSpec(model_name)), discard, RunStats(), recoverable=True)
    started = time.perf_counter()
    cluster_main(flow, [], 0, epoch_interval=timedelta(seconds=epoch))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--models", nargs="+", default=["logreg", "hoeffding_tree"])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each contender, interleaved")
    args = parser.parse_args(argv)
    events = sea_events(args.events)
    print(f"{args.events:,} SEA drift events, {args.repeat} interleaved runs each")
    print(f"{'model':<16}{'plain river ev/s':>18}{'engine ev/s':>14}{'ratio':>8}{'paired':>8}{'CPU ratio':>11}   accuracy (plain / engine)   engine's own CPU")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            plain, ours = [], []
            for i in range(args.repeat):  # interleaved, so a busy spell on a shared machine hits both
                plain.append(plain_loop(name, events))
                ours.append(engine(name, events, Path(tmp) / f"{name}{i}"))
            p_secs, o_secs = min(t.wall for t, _ in plain), min(t.wall for t, _ in ours)
            paired = statistics.median(p.wall / o.wall for (p, _), (o, _) in zip(plain, ours))  # each pair ran back to back
            p_cpu, o_cpu = min(t.cpu for t, _ in plain), min(t.cpu for t, _ in ours)  # what other jobs on a shared machine distort least
            p_rate, o_rate = args.events / p_secs, args.events / o_secs
            added = (o_cpu - p_cpu) / args.events * 1e6
            print(
                f"{name:<16}{p_rate:>18,.0f}{o_rate:>14,.0f}{o_rate / p_rate:>8.2f}{paired:>8.2f}{p_cpu / o_cpu:>11.2f}"
                f"   {plain[0][1]:.4f} / {ours[0][1]:.4f}   +{added:.1f} us/event"
            )
    print()
    print("Bytewax state snapshots with recovery on (each learner's state at each epoch close):")
    for name in args.models:
        rates = {epoch: args.events / engine_with_epoch_snapshots(name, events, epoch) for epoch in (10.0, 0.1)}
        print(f"{name:<16} epoch 10 s: {rates[10.0]:>9,.0f} ev/s   epoch 0.1 s: {rates[0.1]:>9,.0f} ev/s   ({rates[0.1] / rates[10.0]:.2f}x)")


if __name__ == "__main__":
    main()
