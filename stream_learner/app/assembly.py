"""One run, whatever its source: the steps every run takes, in their order, and what it holds open.

A :class:`Profile` says what differs: the embedded run
(:class:`~stream_learner.app.runner.EmbeddedProfile`: a file or synthetic
source, JSONL and console sinks, a local snapshot directory) and the
deployed one (:class:`~stream_learner.app.kafka_run.KafkaProfile`: Kafka in
and out, Redis snapshots, Bytewax recovery). :func:`run_profile` takes the
steps: open (options checked, the store and its signing key), stats,
source, engine configuration (a probe learner fails fast on a bad model),
sinks, dataflow, execution (SIGTERM/SIGINT finish the stream), summary.
A profile's ``max_resident_keys`` bounds each worker's learners in memory:
cold keys are evicted to, and restored from, the run's store, which every
run reaches through an :class:`~stream_learner.residency.EvictingStore`.

Everything a run opens goes on one :class:`~contextlib.ExitStack`: closed
in reverse order, each one even when an earlier close raised; after the
run failed, a close that fails too is logged, never reported instead of
the run's own error (:func:`closing`).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import replace
from types import TracebackType
from typing import Any, Callable

from bytewax.inputs import Source
from bytewax.recovery import RecoveryConfig

from connectors.snapshot_writer import BackgroundSnapshotSink
from stream_learner.app.dataflow import Control, Sinks, build_dataflow
from stream_learner.app.execution import execute, our_error
from stream_learner.app.run_stats import RunStats
from stream_learner.control import rollback_concept
from stream_learner.engine import EngineConfig
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.residency import EvictingStore
from stream_learner.slot import Step, new_step
from stream_learner.snapshot import SnapshotStore, boundary_version, open_envelope
from stream_learner.state import decode

logger = logging.getLogger(__name__)


class Profile(ABC):
    """What one kind of run brings to :func:`run_profile`, which calls these in the order they are listed."""

    telemetry: Any = None  # a stream_learner.app.telemetry.Telemetry fed by the run (Prometheus, dashboard)
    epoch_seconds: float = 10.0
    workers: int = 1
    addresses: Sequence[str] = ()
    process_id: int = 0
    max_resident_keys: int = 0  # learners each worker keeps in memory, the others evicted to the store (0: no bound)
    lost_state: str = "error"  # snapshot.lost_state: an evicted key the store no longer holds stops the run, or starts afresh

    @abstractmethod
    def open(self, stack: ExitStack) -> tuple[SnapshotStore, bytes]:
        """Check the options and open what comes before the run's clock starts (closed by ``stack``); the snapshot store and its signing key."""

    @abstractmethod
    def source(self, stats: RunStats) -> Source[Any]:
        """The source, reporting its reads to ``stats``."""

    @abstractmethod
    def engine_config(self) -> EngineConfig:
        """The engine configuration of this run (its source is known by now)."""

    @abstractmethod
    def sinks(self, stats: RunStats) -> Sinks:
        """Where predictions, metrics and dead letters go (snapshots go to the store)."""

    def recovery(self) -> RecoveryConfig | None:
        """Where Bytewax keeps the run's recovery state, if anywhere."""
        return None

    @abstractmethod
    def restored(self, config: EngineConfig) -> Callable[[str], Step | None]:
        """For a model key, the learner resumed from its snapshot, or ``None`` to start it afresh."""

    def look_ahead(self) -> Callable[[list[str]], None] | None:
        """Sees each source batch's model keys before their learners are brought back (``None``: nothing to prepare)."""
        return None

    def recovered(self, learner: Step) -> None:  # noqa: B027 (a hook a profile may leave as it is)
        """Sees each learner Bytewax's recovery state restored (called from the dataflow)."""

    def control(self) -> tuple[bytes, float] | None:
        """The key operators' commands are signed with and their time to live, where the source reads a control topic (``None``: no commands)."""
        return None

    @abstractmethod
    def stop(self) -> threading.Event | None:
        """The source's stop event, which SIGTERM and SIGINT set to finish the stream (``None``: leave the signals alone)."""

    def running(self) -> AbstractContextManager[Any]:
        """Entered while the dataflow runs (a progress display)."""
        return nullcontext()

    @abstractmethod
    def summary(self, stats: RunStats) -> dict[str, Any]:
        """What this kind of run adds to the summary, after the run's resources are closed."""


def rollback_reader(store: SnapshotStore, signing_key: bytes) -> Callable[[str, int | str], tuple[int, dict[str, Any]] | None]:
    """For a rollback of ``key`` to ``arg`` (a snapshot version, or ``concept:N``: the newest boundary version of concept N): that version and its verified state; ``None`` where none is kept that verifies."""

    def target(key: str, arg: int | str) -> tuple[int, dict[str, Any]] | None:
        concept = rollback_concept(arg)
        version = boundary_version(store, key, concept) if concept is not None else arg if isinstance(arg, int) else None
        if version is None:
            return None
        try:
            _, payload = open_envelope(store.load(key, version), signing_key=signing_key)
            return version, decode(payload)
        except SnapshotError as exc:
            logger.warning("rollback of key %r to %s (version %d): %s", key, arg, version, exc)
            return None

    return target


def run_profile(profile: Profile) -> dict[str, Any]:
    """Run to the end of the source; return the summary.

    An error of ours that Bytewax wrapped is raised as itself.
    """
    if profile.max_resident_keys < 0:
        raise ConfigError("--max-resident-keys must not be negative (0: no bound)")
    try:
        with ExitStack() as stack:
            store, signing_key = profile.open(stack)
            stats = RunStats(profile.telemetry)
            source = profile.source(stats)
            # the dataflow takes due snapshots in rounds (restored learners too), and writes each boundary's outgoing model as a version
            config = replace(profile.engine_config(), snapshot_rounds=True, boundary_versions=True)
            new_step("probe", config)  # fail fast on a bad model or detector (or challengers), before the dataflow starts
            sinks = profile.sinks(stats)
            # also without a bound: a recovery state of a bounded run names keys that wait in the store
            store = evictions = EvictingStore(
                store, signing_key, config, stats.key_evicted, stats.key_restored, lost_state=profile.lost_state, on_lost=stats.key_lost
            )
            snapshots = BackgroundSnapshotSink(store, signing_key, stats.snapshot_saved)
            closing(stack, snapshots.close, "the snapshot writer")  # drains the writer threads, which use the store
            sinks.snapshots = [snapshots]
            recovery = profile.recovery()
            restored = profile.restored(config)
            commands = profile.control()
            control = None if commands is None else Control(commands[0], rollback_reader(store, signing_key), commands[1])
            flow = build_dataflow(
                source, config, sinks, stats,
                restored=restored, look_ahead=profile.look_ahead(), recovered=profile.recovered, recoverable=recovery is not None,
                evictions=evictions, max_resident_keys=profile.max_resident_keys, control=control,
            )  # fmt: skip
            with profile.running():
                execute(
                    flow,
                    epoch_seconds=profile.epoch_seconds,
                    workers=profile.workers,
                    addresses=profile.addresses,
                    process_id=profile.process_id,
                    recovery_config=recovery,
                    stop=profile.stop(),
                )
    except Exception as exc:
        ours = our_error(exc)
        if ours is None:
            raise
        raise ours from None  # e.g. the broker's error from the producer process, rather than Bytewax's wrapper
    summary = stats.summary()
    summary.update(profile.summary(stats))
    if profile.telemetry is not None:
        profile.telemetry.mark_finished(summary)
    return summary


def closing(stack: ExitStack, close: Callable[[], object], what: str) -> None:
    """Have ``stack`` call ``close`` on its way out; a failed close after the run failed is logged, not raised.

    >>> with ExitStack() as stack:
    ...     closing(stack, lambda: print("first opened, closed last"), "first")
    ...     closing(stack, lambda: print("second"), "second")
    second
    first opened, closed last
    """

    def exit_(exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        try:
            close()
        except Exception as error:
            if exc is None:
                raise
            logger.error("%s could not be closed after the run failed: %s", what, error)
        return False

    stack.push(exit_)
