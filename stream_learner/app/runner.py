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
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from connectors.base import OffsetSource
from connectors.files import JsonlSink
from connectors.local_store import LocalSnapshotStore
from connectors.private_dir import lock_directory, private_directory
from connectors.sources import parse_source
from stream_learner.app.args import STDIO
from stream_learner.app.assembly import Profile, run_profile
from stream_learner.app.console import ConsoleLines, StdoutJsonl
from stream_learner.app.dataflow import Sinks
from stream_learner.app.dead_letters import DeadLetterTally
from stream_learner.app.progress import Progress, render_stats
from stream_learner.app.run_stats import RunStats
from stream_learner.engine import EngineConfig
from stream_learner.errors import ConfigError
from stream_learner.slot import Step, restore_step
from stream_learner.snapshot import load_latest_valid

logger = logging.getLogger(__name__)

SIGNING_KEY_ENV = "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY"  # the settings tree's snapshot.signing_key
STDIN_PATH = "/dev/stdin"  # file:- as the path the file source opens


@dataclass
class RunOptions:
    """Everything one embedded run needs."""

    source: str = "synthetic:sea"
    engine: EngineConfig = field(default_factory=EngineConfig)
    out: str | Path = "out"
    predictions: str | Path | None = None  # default OUT/predictions.jsonl; "-" for stdout
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
    max_resident_keys: int = 0  # learners each worker keeps in memory; the others wait in the snapshot directory (0: no bound)
    lost_state: str = "error"  # an evicted key whose every version the snapshot directory lost: stop, or start it afresh ("new_learner")


def run(options: RunOptions, println: Callable[[str], None] | None = None, source: OffsetSource | None = None) -> dict[str, Any]:
    """Run to the end of the source; return the summary.

    ``source`` replaces ``options.source`` (benchmarks and tests stream in-memory records).
    """
    return run_profile(EmbeddedProfile(options, println, source))


class EmbeddedProfile(Profile):
    """The embedded run: a file, dataset or synthetic source, JSONL and console outputs, a local snapshot directory."""

    def __init__(self, options: RunOptions, println: Callable[[str], None] | None, source: OffsetSource | None) -> None:
        self.options = options
        self.println = println
        self.given_source = source
        self.telemetry = options.telemetry
        self.epoch_seconds = options.epoch_seconds
        self.workers = options.workers
        self.max_resident_keys = options.max_resident_keys
        self.lost_state = options.lost_state
        self.out = Path(options.out)
        self.payloads: dict[str, bytes] = {}
        self.start = 0
        self.progress: Progress | None = None
        self.dead_letters = DeadLetterTally()
        self._source: OffsetSource

    def open(self, stack: ExitStack) -> tuple[LocalSnapshotStore, bytes]:
        options = self.options
        if options.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if options.max_events is not None and options.max_events < 0:
            raise ConfigError("--max-events must not be negative")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot write to the output folder {self.out}: {exc.strerror or exc}") from None
        snapshot_dir = private_directory(options.snapshot_dir or self.out / "snapshots", "snapshot directory")
        lock_directory(snapshot_dir, "snapshot directory")
        store = LocalSnapshotStore(snapshot_dir, app=options.app, retain=options.retain)
        signing_key = options.signing_key or os.environ.get(SIGNING_KEY_ENV, "").encode() or store.signing_key()
        if options.resume:
            self.payloads, self.start = _latest_payloads(store, signing_key)
        else:
            _warn_of_earlier_snapshots(store, snapshot_dir)
        return store, signing_key

    def source(self, stats: RunStats) -> OffsetSource:
        options, start = self.options, self.start
        limit = None if options.max_events is None else start + options.max_events
        source = self.given_source
        if source is None:
            source = parse_source(_stdin_named(options.source), seed=options.seed, start=start, max_events=limit)
        else:
            source.start = start
            source.max_events = limit if source.max_events is None else source.max_events
        source.on_read = stats.add_read if not options.rate else _Throttle(stats.add_read, options.rate, source.stop)
        if options.rate:
            source.batch_size = max(1, min(source.batch_size, int(options.rate / 20)))
        self._source = source
        return source

    def engine_config(self) -> EngineConfig:
        return EngineConfig(**{**self.options.engine.__dict__, "source": self._source.name})

    def stop(self) -> threading.Event:
        return self._source.stop

    def sinks(self, stats: RunStats) -> Sinks:
        options, out = self.options, self.out
        self.progress = Progress(lambda: render_stats(stats.progress()), enabled=options.progress)  # constant time: summary() ranks every key
        println = self.println or self.progress.println
        append = options.resume  # a resumed run adds to the outputs of the runs before it
        return Sinks(
            predictions=[self.predictions_sink(append)],
            metrics=[JsonlSink(out / "metrics.jsonl", append=append)] + ([ConsoleLines(println)] if options.console else []),
            dead_letters=[JsonlSink(out / "dead_letters.jsonl", append=append), self.dead_letters],
            shadow_predictions=[JsonlSink(out / "shadow_predictions.jsonl", append=append)] if options.engine.shadow_predictions else [],
        )

    def predictions_sink(self, append: bool) -> JsonlSink | StdoutJsonl:
        predictions = self.options.predictions
        if predictions is None:
            return JsonlSink(self.out / "predictions.jsonl", append=append)
        return StdoutJsonl() if str(predictions) == STDIO else JsonlSink(predictions, append=append)

    def restored(self, config: EngineConfig) -> Callable[[str], Step | None]:
        # restored under this run's configuration (its source name goes into dead letters)
        return {key: restore_step(payload, config) for key, payload in self.payloads.items()}.get

    def running(self) -> AbstractContextManager[Any]:
        return self.progress or nullcontext()

    def summary(self, stats: RunStats) -> dict[str, Any]:
        return {"out": str(self.out), "dead_letter_reasons": self.dead_letters.reasons(), "dead_letters_to": str(self.out / "dead_letters.jsonl")}


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


def _stdin_named(source: str) -> str:
    """``file:-`` as the file that reads this process's stdin; any other source as it is.

    >>> _stdin_named("file:-"), _stdin_named("file:events.jsonl")
    ('file:/dev/stdin', 'file:events.jsonl')
    """
    return f"file:{STDIN_PATH}" if source == f"file:{STDIO}" else source


def _warn_of_earlier_snapshots(store: LocalSnapshotStore, snapshot_dir: Path) -> None:
    """A run that does not resume stacks its snapshots on what an earlier run left in the same folder: say so."""
    keys = store.keys()
    if keys:
        logger.warning(
            "%s already holds snapshots of %d model key(s) (%s) from an earlier run; this run starts afresh and adds its own as newer versions "
            "(--resume continues them; 'stream-learner snapshots list --dir %s' shows each version's model)",
            snapshot_dir, len(keys), ", ".join(sorted(keys)[:3]) + (", ..." if len(keys) > 3 else ""), snapshot_dir,
        )


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
