"""The deployed run: Kafka in, Kafka topics out, Redis snapshots, Bytewax recovery.

The same run as the embedded one (:mod:`~stream_learner.app.assembly`);
only the profile differs (:class:`KafkaProfile`).

Guarantees:

* With a recovery directory, Bytewax stores each source partition's next
  offset and every learner's state at each epoch close, together. After a
  crash (even ``kill -9``) the restarted run resumes from the last closed
  epoch: no event is learned twice and none is skipped. Outputs produced
  after that epoch are produced again (at-least-once; each carries the
  event ``id``): an epoch closes only once the broker acknowledged its
  outputs, which a producer child process sends (off the learner's GIL).
* Redis snapshots serve other purposes: a *new* replica (no recovery
  state) starts each model from its latest valid snapshot, skipping the
  events that snapshot had already learned; other services load the
  current model from Redis. When a recovery state exists it wins. A key
  whose first event comes while Redis does not answer waits for its
  snapshot, never starts afresh; a key evicted from memory waits likewise
  for its state (:class:`~stream_learner.app.stores.PatientReads`).
* SIGTERM / SIGINT stop reading, finish the stream (final metrics and a
  final snapshot of every model) and drain the snapshot writer.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from typing import Any, Callable, Sequence

from bytewax.recovery import RecoveryConfig

from connectors.base import DEFAULT_BATCH_SIZE
from connectors.kafka import KafkaSink, KafkaSource, ensure_topics
from connectors.kafka_producer import ProducerProcess
from stream_learner.app.assembly import Profile, closing, run_profile
from stream_learner.app.console import ConsoleLines
from stream_learner.app.control_cmd import control_signing_key
from stream_learner.app.dataflow import Sinks
from stream_learner.app.dead_letters import DeadLetterTally
from stream_learner.app.recovery_dir import open_recovery_dir
from stream_learner.app.run_stats import RunStats
from stream_learner.app.stores import NewKeysAhead, PatientReads, open_store, signing_key
from stream_learner.engine import EngineConfig
from stream_learner.errors import ConfigError
from stream_learner.settings import Settings
from stream_learner.slot import Step, restore_step
from stream_learner.snapshot import load_latest_valid

logger = logging.getLogger(__name__)

def engine_config(settings: Settings, engine: EngineConfig) -> EngineConfig:
    """The engine configuration of a Kafka run: snapshot cadence and label window from the settings."""
    k, s, lab = settings.kafka, settings.snapshot, settings.labels
    return EngineConfig(
        **{
            **engine.__dict__,
            "source": k.input_topic,
            "snapshot_every": s.every_events,
            "snapshot_seconds": s.every_seconds,
            "label_window": lab.window_size if k.labels_topic else 0,
            "label_window_seconds": lab.window_seconds,
        }
    )


def run_kafka(
    settings: Settings,
    engine: EngineConfig,
    *,
    max_events: int | None = None,
    workers: int = 1,
    addresses: Sequence[str] = (),
    process_id: int = 0,
    println: Callable[[str], None] | None = None,
    handle_signals: bool = True,
    telemetry: Any = None,
    max_resident_keys: int = 0,
) -> dict[str, Any]:
    """Run until the input ends (``max_events``, idle timeout) or SIGTERM/SIGINT; return the summary.

    ``telemetry`` (a :class:`~stream_learner.app.telemetry.Telemetry`) is fed like the embedded run's.
    ``max_resident_keys`` (0: no bound) keeps at most that many learners in
    each worker's memory, the others waiting in Redis (see :mod:`stream_learner.residency`).
    """
    profile = KafkaProfile(settings, engine, max_events, workers, addresses, process_id, println, handle_signals, telemetry)
    profile.max_resident_keys = max_resident_keys
    return run_profile(profile)


class KafkaProfile(Profile):
    """The deployed run: a Kafka source, Kafka sinks through one producer child, Redis snapshots, Bytewax recovery."""

    def __init__(
        self,
        settings: Settings,
        engine: EngineConfig,
        max_events: int | None,
        workers: int,
        addresses: Sequence[str],
        process_id: int,
        println: Callable[[str], None] | None,
        handle_signals: bool,
        telemetry: Any,
    ) -> None:
        """The arguments of :func:`run_kafka`."""
        self.started = time.perf_counter()
        self.settings = settings
        self.engine = engine
        self.max_events = max_events
        self.workers = workers
        self.addresses = addresses
        self.process_id = process_id
        self.println = println
        self.handle_signals = handle_signals
        self.telemetry = telemetry
        self.epoch_seconds = settings.recovery.epoch_seconds
        self.lost_state = settings.snapshot.lost_state
        self.client = settings.kafka.client_config()
        self.first_batch: float | None = None
        self.refusals: list[str] = []
        self.restored_keys: list[str] = []
        self.dead_letters = DeadLetterTally()

    def open(self, stack: ExitStack) -> tuple[PatientReads, bytes]:
        k, telemetry = self.settings.kafka, self.telemetry
        self.signing_key = signing_key(self.settings)  # a missing key is one line at once, before any client starts
        self.control_key = control_signing_key(self.settings) if k.control_topic else None
        self.kafka_source = source = KafkaSource(
            self.client,
            k.input_topic,
            labels_topic=k.labels_topic,
            control_topic=k.control_topic,
            start=k.start,
            group_id=k.group_id,
            batch_size=k.poll_max_records,
            max_batch_records=k.max_batch_records or DEFAULT_BATCH_SIZE,
            max_events=self.max_events,
            idle_timeout=k.idle_timeout_s,
            on_read=self._on_read,
            on_lag=telemetry.set_consumer_lag if telemetry is not None else None,
            offset_out_of_range=k.offset_out_of_range,
            on_offset_reset=telemetry.on_offset_reset if telemetry is not None else None,
            outage_timeout_s=k.outage_timeout_s,
        )
        self.producer = producer = ProducerProcess(  # one child process for every output topic
            self.client, compression=k.compression, linger_ms=k.linger_ms, gzip_level=k.gzip_level, outage_timeout_s=k.outage_timeout_s, watch=source.watch
        )
        # after a run that went well: a final flush, raising what it (or an earlier one) met; after a failure: stopped at once
        stack.push(lambda exc_type, exc, tb: producer.close(flush=exc is None))
        closing(stack, source.close, "the Kafka consumer")
        # Both children start first: their start-up (a fresh interpreter importing kafka-python,
        # then connecting) overlaps everything below, the model's imports included.
        producer.start()
        source.start_fetcher()
        if k.create_topics:
            ensure_topics(self.client, [k.input_topic, k.labels_topic or "", k.control_topic or "", k.predictions_topic, k.metrics_topic, k.dead_letter_topic, k.shadow_topic or ""], k.topic_partitions, k.replication_factor)
        source.list_parts()  # the cluster answers and the input topics exist: one error line now, not a failure inside the dataflow
        redis_store = open_store(self.settings)
        self.store = PatientReads(redis_store, self.settings.snapshot.outage_timeout_s, stop=source.stop)
        self.new_keys = NewKeysAhead(redis_store)
        closing(stack, self.store.close, "the Redis snapshot store")
        return self.store, self.signing_key

    def _on_read(self, n: int) -> None:  # reads start with the dataflow, once ``stats`` exists
        if self.first_batch is None:
            self.first_batch = time.perf_counter()
        self.stats.add_read(n)

    def source(self, stats: RunStats) -> KafkaSource:
        self.stats = stats  # the run's clock starts once the store is open, as the embedded run's does
        return self.kafka_source

    def engine_config(self) -> EngineConfig:
        return engine_config(self.settings, self.engine)

    def sinks(self, stats: RunStats) -> Sinks:
        k = self.settings.kafka

        def sink(topic: str) -> KafkaSink:
            return KafkaSink(self.client, topic, producer=self.producer)

        return Sinks(
            predictions=[sink(k.predictions_topic)],
            metrics=[sink(k.metrics_topic)] + ([ConsoleLines(self.println)] if self.println is not None else []),
            dead_letters=[sink(k.dead_letter_topic), self.dead_letters],
            shadow_predictions=[sink(k.shadow_topic)] if k.shadow_topic else [],
        )

    def recovery(self) -> RecoveryConfig | None:
        directory = self.settings.recovery.dir
        if directory is None:
            return None
        return open_recovery_dir(directory, self.settings.recovery.partitions)

    def restored(self, config: EngineConfig) -> Callable[[str], Step | None]:
        if not self.settings.snapshot.resume:
            return lambda model_key: None

        def restored(model_key: str) -> Step | None:
            if self.new_keys.nothing_stored(model_key):
                return None
            found = load_latest_valid(self.store, model_key, self.signing_key)
            if found is None:
                return None
            header, payload, refused = found
            for line in refused:
                logger.warning(line)
            self.refusals.extend(refused)
            self.restored_keys.append(model_key)
            learner = restore_step(payload, config)
            self.kafka_source.check_offsets(learner.next_offsets, f"the snapshot of model key {model_key!r}")
            return learner

        return restored

    def look_ahead(self) -> Callable[[list[str]], None] | None:
        # one process: a cluster's other processes bring back their own keys, which this one's batches also carry
        return self.new_keys.ahead if self.settings.snapshot.resume and len(self.addresses) <= 1 else None

    def recovered(self, learner: Step) -> None:
        self.kafka_source.check_offsets(learner.next_offsets, f"the recovery state of model key {learner.key!r}", recovered=True)

    def control(self) -> tuple[bytes, float] | None:
        if self.control_key is None:
            return None
        return self.control_key, self.settings.control.max_age_s

    def stop(self) -> threading.Event | None:
        return self.kafka_source.stop if self.handle_signals else None

    def summary(self, stats: RunStats) -> dict[str, Any]:
        k = self.settings.kafka
        return {
            "delayed_labels": _label_totals(stats),
            "restored_keys": sorted(self.restored_keys),
            "snapshot_refusals": self.refusals,
            "outputs_resent": self.producer.resent,  # by a producer that replaced one whose state the cluster lost: duplicates where they had landed
            "first_event_seconds": round(self.first_batch - self.started, 3) if self.first_batch is not None else None,
            "out": f"kafka:{k.predictions_topic},{k.metrics_topic},{k.dead_letter_topic}",
            "dead_letter_reasons": self.dead_letters.reasons(),
            "dead_letters_to": f"topic {k.dead_letter_topic}",
        }


def _label_totals(stats: RunStats) -> dict[str, int] | None:
    counts = [m["delayed_labels"] for m in stats.latest_metrics.values() if "delayed_labels" in m]
    if not counts:
        return None
    return {name: sum(c[name] for c in counts) for name in counts[0]}


# --- the ``run --source kafka`` flags (stream_learner.app.run_settings maps them to settings) ---------


def add_arguments(run: Any) -> None:
    """Add the Kafka deployment flags to the ``run`` parser (used with ``--source kafka``)."""
    from stream_learner.app.args import seconds_argument

    group = run.add_argument_group(
        "Kafka deployment (--source kafka)",
        "Flags override STREAM_LEARNER_* variables (nested with __: STREAM_LEARNER_KAFKA__INPUT_TOPIC), which override --config.",
    )
    group.add_argument("--bootstrap-servers", default=None, metavar="HOST:PORT[,...]", help="Kafka bootstrap servers")
    group.add_argument("--input-topic", default=None, metavar="TOPIC", help="topic of input events")
    group.add_argument("--labels-topic", default=None, metavar="TOPIC", help="topic of delayed labels {id, label, key?}")
    group.add_argument("--shadow-topic", default=None, metavar="TOPIC", help="topic of every challenger's predictions, each naming its candidate (with --challenger); default: none published")
    group.add_argument("--control-topic", default=None, metavar="TOPIC", help="topic of operators' signed commands (stream-learner control); default: none read")
    group.add_argument("--predictions-topic", default=None, metavar="TOPIC")
    group.add_argument("--metrics-topic", default=None, metavar="TOPIC", help="metrics and drift records")
    group.add_argument("--dead-letter-topic", default=None, metavar="TOPIC")
    group.add_argument("--group-id", default=None, help="consumer group for committed offsets (never joined)")
    group.add_argument("--start", default=None, choices=["earliest", "latest", "committed"], help="where partitions without recovery state start")
    group.add_argument("--stop-when-idle", type=float, default=None, metavar="SECONDS", help="end the run when no input arrived for this long")
    group.add_argument("--redis-url", default=None, metavar="URL", help="redis:// or rediss:// URL of the snapshot store")
    group.add_argument("--recovery-dir", default=None, metavar="DIR", help="Bytewax recovery directory (exactly-once learner state through crashes)")
    group.add_argument("--epoch-seconds", type=float, default=None, metavar="S", help="how often recovery state is committed")
    group.add_argument("--snapshot-seconds", type=seconds_argument, default=None, metavar="S", help="snapshot every S seconds, 0 for by events only (default: 30; also for runs without Kafka)")
    group.add_argument("--app", default=None, help="application name (Redis key prefix)")
    group.add_argument("--addresses", default=None, metavar="HOST:PORT,...", help="every process of a scaled-out cluster, in order")
    group.add_argument("--process-id", type=int, default=None, help="this process's index in --addresses (default: 0)")


def run_from_args(args: Any, settings: Settings, engine: EngineConfig, println: Callable[[str], None] | None) -> dict[str, Any]:
    """``stream-learner run --source kafka ...`` with its resolved settings; metrics lines to ``println`` (``None``: none)."""
    addresses = [a.strip() for a in args.addresses.split(",")] if args.addresses else []
    process_id = args.process_id or 0
    if addresses and not 0 <= process_id < len(addresses):
        raise ConfigError(f"--process-id must be between 0 and {len(addresses) - 1}")
    return run_kafka(
        settings,
        engine,
        max_events=settings.run.max_events,
        workers=settings.run.workers,
        addresses=addresses,
        process_id=process_id,
        println=println,
        telemetry=getattr(args, "telemetry", None),
        max_resident_keys=getattr(settings.run, "max_resident_keys", 0),
    )
