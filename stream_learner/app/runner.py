"""Run the dataflow on the embedded default (or any file / dataset source).

>>> import tempfile
>>> summary = run(RunOptions(source="synthetic:sea?every=500&concepts=3", out=tempfile.mkdtemp(), progress=False, signing_key=b"k"))
>>> summary["events"] == summary["predictions"] + summary["dead_letters"] == 1500
True
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from connectors.base import OffsetSource
from connectors.files import JsonlSink
from connectors.local_store import LocalSnapshotStore
from connectors.outputs import ConsoleSink
from connectors.private_dir import lock_directory, private_directory
from connectors.snapshot_writer import BackgroundSnapshotSink
from connectors.sources import parse_source
from stream_learner.app.dataflow import RunStats, Sinks, build_dataflow
from stream_learner.app.execution import execute
from stream_learner.app.progress import Progress, render_stats
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError
from stream_learner.snapshot import load_latest_valid

logger = logging.getLogger(__name__)

SIGNING_KEY_ENV = "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY"  # the settings tree's snapshot.signing_key


@dataclass
class RunOptions:
    """Everything one embedded run needs."""

    source: str = "synthetic:sea"
    engine: EngineConfig = field(default_factory=EngineConfig)
    out: str | Path = "out"
    snapshot_dir: str | Path | None = None
    app: str = "stream-learner"
    max_events: int | None = None
    seed: int = 42
    workers: int = 1
    resume: bool = False
    epoch_seconds: float = 10.0
    progress: bool = True
    console: bool = True
    retain: int = 5
    signing_key: bytes | None = None
    telemetry: Any = None  # a stream_learner.app.telemetry.Telemetry fed by this run (Prometheus, dashboard)
    rate: float = 0.0  # read at most this many events per second (0: unlimited)


def run(options: RunOptions, println: Callable[[str], None] | None = None, source: OffsetSource | None = None) -> dict[str, Any]:
    """Run to the end of the source; return the summary.

    ``source`` replaces ``options.source`` (benchmarks and tests stream in-memory records).
    """
    if options.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if options.max_events is not None and options.max_events < 0:
        raise ConfigError("--max-events must not be negative")
    out = Path(options.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None
    snapshot_dir = private_directory(options.snapshot_dir or out / "snapshots", "snapshot directory")
    lock_directory(snapshot_dir, "snapshot directory")
    store = LocalSnapshotStore(snapshot_dir, app=options.app, retain=options.retain)
    signing_key = options.signing_key or os.environ.get(SIGNING_KEY_ENV, "").encode() or store.signing_key()
    payloads, start = _latest_payloads(store, signing_key) if options.resume else ({}, 0)

    stats = RunStats(options.telemetry)
    limit = None if options.max_events is None else start + options.max_events
    if source is None:
        source = parse_source(options.source, seed=options.seed, start=start, max_events=limit)
    else:
        source.start = start
        source.max_events = limit if source.max_events is None else source.max_events
    source.on_read = stats.add_read if not options.rate else _Throttle(stats.add_read, options.rate, source.stop)
    if options.rate:
        source.batch_size = max(1, min(source.batch_size, int(options.rate / 20)))
    config = EngineConfig(**{**options.engine.__dict__, "source": source.name})
    KeyedLearner("probe", config)  # fail fast on a bad model or detector, before any thread starts

    progress = Progress(lambda: render_stats(stats.summary()), enabled=options.progress)
    println = println or progress.println
    append = options.resume  # a resumed run adds to the outputs of the runs before it
    sinks = Sinks(
        predictions=[JsonlSink(out / "predictions.jsonl", append=append)],
        # a writer process for the predictions only: the others' records are few (see connectors.jsonl_writer)
        metrics=[JsonlSink(out / "metrics.jsonl", process=False, append=append)] + ([ConsoleSink(println)] if options.console else []),
        dead_letters=[JsonlSink(out / "dead_letters.jsonl", process=False, append=append)],
        snapshots=[BackgroundSnapshotSink(store, signing_key, stats.snapshot_saved)],
    )
    # restored under this run's configuration (its source name goes into dead letters)
    restored = {key: KeyedLearner.restore(payload, config) for key, payload in payloads.items()}
    flow = build_dataflow(source, config, sinks, stats, restored=restored.get)
    with progress:
        execute(flow, epoch_seconds=options.epoch_seconds, workers=options.workers, stop=source.stop)
    summary = stats.summary()
    summary["out"] = str(out)
    if options.telemetry is not None:
        options.telemetry.mark_finished(summary)
    return summary


class _Throttle:
    """Wraps a source's read callback so that reading averages at most ``rate`` events per second (a wait that ``stop`` ends)."""

    def __init__(self, inner: Callable[[int], None], rate: float, stop: threading.Event) -> None:
        self.inner = inner
        self.rate = rate
        self.stop = stop
        self.started: float | None = None
        self.count = 0

    def __call__(self, n: int) -> None:
        self.inner(n)
        if self.started is None:
            self.started = time.monotonic()
        self.count += n
        delay = self.started + self.count / self.rate - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)


def _latest_payloads(store: LocalSnapshotStore, signing_key: bytes) -> tuple[dict[str, bytes], int]:
    """The latest verified snapshot payload per key, and the source offset to restart from."""
    payloads: dict[str, bytes] = {}
    offsets: list[int] = []
    for key in store.keys():
        found = load_latest_valid(store, key, signing_key)
        if found is None:
            continue
        header, payload, refusals = found
        for refusal in refusals:
            logger.warning(refusal)
        payloads[key] = payload
        offsets.append(header.source_offsets.get(0, 0))
    return payloads, min(offsets, default=0)
