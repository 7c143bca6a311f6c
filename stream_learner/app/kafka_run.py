"""The deployed run: Kafka in, Kafka topics out, Redis snapshots, Bytewax recovery.

The same dataflow as the embedded run (:func:`~stream_learner.app.dataflow.build_dataflow`);
only the connectors differ.

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
  current model from Redis. When a recovery state exists it wins.
* SIGTERM / SIGINT stop reading, finish the stream (final metrics and a
  final snapshot of every model) and drain the snapshot writer.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from bytewax.recovery import RecoveryConfig, init_db_dir

from connectors.kafka import KafkaSink, KafkaSource, ensure_topics
from connectors.kafka_producer import ProducerProcess
from connectors.outputs import ConsoleSink
from connectors.private_dir import lock_directory, private_directory
from connectors.redis_store import RedisSnapshotStore
from connectors.snapshot_writer import BackgroundSnapshotSink
from stream_learner.app.dataflow import RunStats, Sinks, build_dataflow
from stream_learner.app.execution import execute, our_error
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError
from stream_learner.settings import Settings
from stream_learner.snapshot import load_latest_valid

logger = logging.getLogger(__name__)

def signing_key(settings: Settings) -> bytes:
    """The snapshot HMAC key, ``snapshot.signing_key`` (one-line error when missing)."""
    key = settings.snapshot.signing_key.get_secret_value().encode() if settings.snapshot.signing_key is not None else b""
    if not key:
        raise ConfigError("snapshots need a signing key: set STREAM_LEARNER_SNAPSHOT__SIGNING_KEY (or snapshot.signing_key in the config file)")
    return key


def open_store(settings: Settings) -> RedisSnapshotStore:
    """The Redis snapshot store the settings name (reachable, or a one-line error)."""
    r = settings.redis
    store = RedisSnapshotStore.from_url(
        r.url.get_secret_value(),
        app=settings.app,
        retain=settings.snapshot.retain,
        password=r.password.get_secret_value() if r.password else None,
        ssl_ca_certs=r.ssl_ca_certs,
        ssl_certfile=r.ssl_certfile,
        ssl_keyfile=r.ssl_keyfile,
        socket_timeout=r.socket_timeout_s,
    )
    store.ping()
    return store


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
) -> dict[str, Any]:
    """Run until the input ends (``max_events``, idle timeout) or SIGTERM/SIGINT; return the summary.

    ``telemetry`` (a :class:`~stream_learner.app.telemetry.Telemetry`) is fed like the embedded run's.
    """
    started = time.perf_counter()
    k = settings.kafka
    client = k.client_config()
    first_batch: list[float] = []

    def on_read(n: int) -> None:  # reads start with the dataflow, once ``stats`` exists
        if not first_batch:
            first_batch.append(time.perf_counter())
        stats.add_read(n)

    source = KafkaSource(
        client,
        k.input_topic,
        labels_topic=k.labels_topic,
        start=k.start,
        group_id=k.group_id,
        batch_size=k.poll_max_records,
        max_events=max_events,
        idle_timeout=k.idle_timeout_s,
        on_read=on_read,
        on_lag=telemetry.set_consumer_lag if telemetry is not None else None,
        offset_out_of_range=k.offset_out_of_range,
        on_offset_reset=telemetry.on_offset_reset if telemetry is not None else None,
        outage_timeout_s=k.outage_timeout_s,
    )
    producer = ProducerProcess(  # one child process for every output topic
        client, compression=k.compression, linger_ms=k.linger_ms, gzip_level=k.gzip_level, outage_timeout_s=k.outage_timeout_s, watch=source.watch
    )
    # Both children start first: their start-up (a fresh interpreter importing kafka-python,
    # then connecting) overlaps everything below, the model's imports included.
    producer.start()
    source.start_fetcher()
    snapshots: BackgroundSnapshotSink | None = None
    store: RedisSnapshotStore | None = None
    refusals: list[str] = []
    restored_keys: list[str] = []
    try:
        if k.create_topics:
            ensure_topics(client, [k.input_topic, k.labels_topic or "", k.predictions_topic, k.metrics_topic, k.dead_letter_topic], k.topic_partitions, k.replication_factor)
        source.list_parts()  # the cluster answers and the input topics exist: one error line now, not a failure inside the dataflow
        store = open_store(settings)
        key = signing_key(settings)
        stats = RunStats(telemetry)  # the run's clock starts here, as the embedded run's does once its store is open
        config = engine_config(settings, engine)
        KeyedLearner("probe", config)  # fail fast on a bad model or detector, before the dataflow starts

        def restored(model_key: str) -> KeyedLearner | None:
            if not settings.snapshot.resume:
                return None
            found = load_latest_valid(store, model_key, key)
            if found is None:
                return None
            header, payload, refused = found
            for line in refused:
                logger.warning(line)
            refusals.extend(refused)
            restored_keys.append(model_key)
            learner = KeyedLearner.restore(payload, config)
            source.check_offsets(learner.next_offsets, f"the snapshot of model key {model_key!r}")
            return learner

        def sink(topic: str) -> KafkaSink:
            return KafkaSink(client, topic, producer=producer)

        snapshots = BackgroundSnapshotSink(store, key, stats.snapshot_saved)
        sinks = Sinks(
            predictions=[sink(k.predictions_topic)],
            metrics=[sink(k.metrics_topic)] + ([ConsoleSink(println)] if println is not None else []),
            dead_letters=[sink(k.dead_letter_topic)],
            snapshots=[snapshots],
        )
        recovery = _recovery(settings)
        flow = build_dataflow(
            source,
            config,
            sinks,
            stats,
            restored=restored,
            recovered=lambda learner: source.check_offsets(learner.next_offsets, f"the recovery state of model key {learner.key!r}", recovered=True),
            recoverable=recovery is not None,
        )
        execute(
            flow,
            epoch_seconds=settings.recovery.epoch_seconds,
            workers=workers,
            addresses=addresses,
            process_id=process_id,
            recovery_config=recovery,
            stop=source.stop if handle_signals else None,
        )
        producer.close()  # stopped when the stream ended; raises what its last flush met, if anything
    except Exception as exc:
        ours = our_error(exc)
        if ours is None:
            raise
        raise ours from None  # e.g. the broker's error from the producer process, rather than Bytewax's wrapper
    finally:
        producer.close(flush=False)  # after a failure: stop it now
        source.close()
        if snapshots is not None:
            snapshots.close()  # drains the writer threads, which use the store
        if store is not None:
            store.close()
    summary = stats.summary()
    summary["delayed_labels"] = _label_totals(stats)
    summary["restored_keys"] = sorted(restored_keys)
    summary["snapshot_refusals"] = refusals
    summary["outputs_resent"] = producer.resent  # by a producer that replaced one whose state the cluster lost: duplicates where they had landed
    summary["first_event_seconds"] = round(first_batch[0] - started, 3) if first_batch else None
    summary["out"] = f"kafka:{k.predictions_topic},{k.metrics_topic},{k.dead_letter_topic}"
    if telemetry is not None:
        telemetry.mark_finished(summary)
    return summary


def _recovery(settings: Settings) -> RecoveryConfig | None:
    directory = settings.recovery.dir
    if directory is None:
        return None
    directory = private_directory(directory, "recovery directory")  # it holds pickles
    lock_directory(directory, "recovery directory")  # two services on one directory would both process everything
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, settings.recovery.partitions)
    return RecoveryConfig(str(directory))


def _label_totals(stats: RunStats) -> dict[str, int] | None:
    counts = [m["delayed_labels"] for m in stats.latest_metrics.values() if "delayed_labels" in m]
    if not counts:
        return None
    return {name: sum(c[name] for c in counts) for name in counts[0]}


# --- the ``run --source kafka`` flags ----------------------------------------------------------

_FLAGS: dict[str, tuple[str, ...]] = {
    # flag dest: the setting it overrides
    "bootstrap_servers": ("kafka", "bootstrap_servers"),
    "input_topic": ("kafka", "input_topic"),
    "labels_topic": ("kafka", "labels_topic"),
    "predictions_topic": ("kafka", "predictions_topic"),
    "metrics_topic": ("kafka", "metrics_topic"),
    "dead_letter_topic": ("kafka", "dead_letter_topic"),
    "group_id": ("kafka", "group_id"),
    "start": ("kafka", "start"),
    "stop_when_idle": ("kafka", "idle_timeout_s"),
    "redis_url": ("redis", "url"),
    "recovery_dir": ("recovery", "dir"),
    "epoch_seconds": ("recovery", "epoch_seconds"),
    "snapshot_seconds": ("snapshot", "every_seconds"),
    "app": ("app",),
}


def add_arguments(run: Any) -> None:
    """Add the Kafka deployment flags to the ``run`` parser (used with ``--source kafka``)."""
    from stream_learner.app.cli import seconds_argument

    group = run.add_argument_group(
        "Kafka deployment (--source kafka)",
        "Flags override STREAM_LEARNER_* variables (nested with __), which override --config.",
    )
    group.add_argument("--config", default=None, metavar="FILE", help="settings file (TOML or JSON)")
    group.add_argument("--bootstrap-servers", default=None, metavar="HOST:PORT[,...]", help="Kafka bootstrap servers")
    group.add_argument("--input-topic", default=None, metavar="TOPIC", help="topic of input events")
    group.add_argument("--labels-topic", default=None, metavar="TOPIC", help="topic of delayed labels {id, label, key?}")
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
    group.add_argument("--process-id", type=int, default=0, help="this process's index in --addresses")
    group.add_argument("--print-settings", action="store_true", help="print the resolved settings (secrets masked) and exit")


def settings_from_args(args: Any, snapshot_every_default: int = 0) -> Settings:
    """Flags (only those given) over environment over config file."""
    from stream_learner.settings import load_settings

    overrides: dict[str, Any] = {}
    for dest, path in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            node = overrides
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
    if args.snapshot_every != snapshot_every_default:  # the shared flag, when set to something else than its default
        overrides.setdefault("snapshot", {})["every_events"] = args.snapshot_every
    return load_settings(args.config, overrides)


def run_from_args(args: Any, engine: EngineConfig) -> dict[str, Any] | None:
    """``stream-learner run --source kafka ...``; ``None`` after ``--print-settings``."""
    import json

    settings = settings_from_args(args)
    if args.print_settings:
        print(json.dumps(settings.masked(), indent=2))
        return None
    quiet = args.quiet or args.json
    addresses = [a.strip() for a in args.addresses.split(",")] if args.addresses else []
    if addresses and not 0 <= args.process_id < len(addresses):
        raise ConfigError(f"--process-id must be between 0 and {len(addresses) - 1}")
    return run_kafka(
        settings,
        engine,
        max_events=args.max_events,
        workers=max(1, args.workers),
        addresses=addresses,
        process_id=args.process_id,
        println=None if quiet else print,
        telemetry=getattr(args, "telemetry", None),
    )
