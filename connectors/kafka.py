"""Kafka in and out, on kafka-python.

:class:`KafkaSource` is a Bytewax ``FixedPartitionedSource`` with one source
partition per Kafka partition of the input topic (and of the labels topic,
when there is one). The partitions of one process are fetched, with manual
assignment (no consumer-group join), by one consumer child process
(:mod:`connectors.kafka_consumer`: kafka-python's record parsing leaves the
learner's interpreter), in batches, without blocking the worker; each
partition's resume state is the next offset it handed the dataflow, so
Bytewax recovery stores it with the learner state of the same epoch.

:class:`KafkaSink` is a ``FixedPartitionedSink`` writing ``(model key,
[record, ...])`` items as JSON messages keyed by the record's model key.
Its partitions hand records to a producer child process, which encodes
them (:mod:`connectors.kafka_producer`: the JSON encoding and kafka-python's
per-message cost leave the learner's interpreter); each partition's ``snapshot`` waits for the
broker's acknowledgement of what it sent, so Bytewax never commits an epoch
whose outputs could be lost (outputs are at-least-once: a crash repeats
those of the epochs not committed; each carries the event ``id``).

``client_config`` is the dict of kafka-python client arguments (servers,
client id, security protocol, SASL/SSL credentials) that
:meth:`stream_learner.settings.KafkaSettings.client_config` builds.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Literal

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from connectors.base import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_SIZE, RawRecord, SourceBatch
from connectors.kafka_consumer import OUT_OF_RANGE_HINT, ConsumerProcess, Fetched, out_of_range
from connectors.kafka_producer import GZIP_LEVEL, OUTAGE_TIMEOUT_S, OutageWatch, ProducerProcess, make_producer, servers_of  # noqa: F401 - make_producer is re-exported
from stream_learner.control import RawControl
from stream_learner.delayed import RawLabel
from stream_learner.errors import OffsetOutOfRangeError, SourceError
from stream_learner.events import Origin
from stream_learner.predictions import Predictions

logger = logging.getLogger(__name__)

Start = Literal["earliest", "latest", "committed"]
# How long a partition with nothing new sleeps before it asks the consumer child again: the most an
# event waits in the child's buffer, so part of every event's latency; asking costs a lock and a pipe poll.
IDLE_POLL = timedelta(milliseconds=5)
_BOUNDS_FETCH_WAIT_MS = 10  # the fetch that reads the input partitions' high watermarks when the run starts
_BOUNDS_TIMEOUT_S = 5.0


def ensure_topics(client_config: dict[str, Any], topics: Iterable[str], partitions: int = 1, replication_factor: int = 1) -> list[str]:
    """Create the topics that do not exist yet; return the ones created.

    The first contact of a run or a produce: see :func:`first_contact`.
    """
    with first_contact(client_config):
        admin = KafkaAdminClient(**client_config)
    try:
        existing = set(admin.list_topics())
        missing = sorted({t for t in topics if t} - existing)
        if missing:
            try:
                admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=replication_factor) for t in missing])
            except TopicAlreadyExistsError:
                pass  # another replica created them first
        return missing
    finally:
        admin.close()


@contextmanager
def first_contact(client_config: dict[str, Any]) -> Iterator[None]:
    """Connecting to the cluster: a failure is one :class:`SourceError` that names its cause.

    kafka-python logs each failed bootstrap attempt (e.g. a refused SASL
    authentication or TLS certificate) and retries, then raises a bare
    timeout. The last logged cause goes into the error instead, and unless
    kafka-python's INFO records are shown (``--verbose``), the attempts'
    records are kept out of the logs: one error line, not dozens.
    """
    failures = _BootstrapFailures()
    manager, kafka = logging.getLogger("kafka.net.manager"), logging.getLogger("kafka")
    propagate = kafka.propagate
    manager.addHandler(failures)
    kafka.propagate = propagate and kafka.isEnabledFor(logging.INFO)
    try:
        yield
    except KafkaError as exc:
        cause = failures.last if failures.last is not None else exc
        raise SourceError(f"cannot reach Kafka at {','.join(client_config['bootstrap_servers'])}: {cause}") from None
    finally:
        manager.removeHandler(failures)
        kafka.propagate = propagate


class _BootstrapFailures(logging.Handler):
    """The last error kafka-python met connecting to a bootstrap server: it logs each one and retries, then raises a bare timeout (not kept)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, BaseException) and not isinstance(arg, KafkaTimeoutError):
                self.last = arg


def _bounds(consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[int, tuple[int, int]]:
    """Each partition's first and next offsets.

    The next is also read from a fetch's high watermark: Tansu's end
    offsets lag it (the last batch's first offset, plus one).
    """
    first, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, end[tp])
    deadline = time.monotonic() + _BOUNDS_TIMEOUT_S
    while any(consumer.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
        consumer.poll(timeout_ms=_BOUNDS_FETCH_WAIT_MS, max_records=1)
    return {tp.partition: (first[tp], max(end[tp], consumer.highwater(tp) or 0)) for tp in tps}


class _Budget:
    """``max_events`` shared by the input partitions of one process."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.taken = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> int:
        if self.limit is None:
            return n
        with self._lock:
            n = min(n, self.limit - self.taken)
            self.taken += n
            return n

    @property
    def spent(self) -> bool:
        return self.limit is not None and self.taken >= self.limit


class _KafkaPartition(StatefulSourcePartition[SourceBatch, int]):
    """One Kafka partition, fetched by the process's consumer child; its state is the next offset to read.

    Each batch is stamped with the time it reached this process from the consumer child (:class:`~connectors.base.SourceBatch`).
    """

    def __init__(self, source: KafkaSource, topic: str, partition: int, resume_state: int | None) -> None:
        self._source = source
        self._topic = topic
        self._partition = partition
        self._side = source.side_of(topic)  # "labels" or "control": a side topic ends with the input and counts in no budget
        start: int | str = source.start
        if resume_state is not None:
            start = resume_state
        elif partition in source.start_offsets.get(topic, {}):
            start = source.start_offsets[topic][partition]
        self._fetcher = source.fetcher()
        self._slot = self._fetcher.assign(topic, partition, start, keys=self._side == "labels")
        self._offset: int | None = start if isinstance(start, int) else None  # known once the child resolved it
        self._last_data = time.monotonic()
        self._awake: datetime | None = None
        self._ended = False
        self._released = False

    def next_batch(self) -> list[SourceBatch]:
        """Every batch the consumer child has fetched for this partition and not handed over yet, up to ``max_batch_records`` records and one source batch's bytes.

        Taking what waits, not one fetch a call, lets a key's events from
        several fetches reach its learner in one call when the stream runs
        behind (a fleet pays per key and call); a stream that keeps up
        finds one fetch waiting, and no event waits for more.
        """
        source = self._source
        if source.stop.is_set() or (self._side is None and source.budget.spent):
            self._end()
        fetched = self._fetcher.next(self._slot)
        if fetched is None:
            self._idle()
            return []
        self._awake = None
        self._last_data = time.monotonic()
        batches: list[SourceBatch] = []
        records = size = 0
        while fetched is not None:
            if fetched.reset is not None:  # the child moved an offset that was out of range: the resume state follows
                self._offset = fetched.reset
                break
            batch = self._records(fetched)
            if batch:
                batches.append(SourceBatch(fetched.received_at, batch))  # stamped when the fetch reached this process
                self._offset = batch[-1].origin.offset + 1
                records += len(batch)
                size += sum(len(v) for v in fetched.values if v is not None)
            if records >= source.max_batch_records or size >= DEFAULT_BATCH_BYTES or len(batch) < len(fetched.values):
                break  # a full batch, or the event budget ran out
            fetched = self._fetcher.next(self._slot)
        self._report_lag()
        return batches

    def _idle(self) -> None:
        """Nothing has arrived: end the partition when it has been idle too long (or its input ended), else ask again soon."""
        source, now = self._source, time.monotonic()
        self._report_lag()
        watch = source.watch
        if not self._fetcher.ready(self._slot) or watch.out:
            self._last_data = now  # the idle time counts from when the child fetches, and not while the cluster is lost
        idle = source.idle_timeout
        if (idle is not None and now - max(self._last_data, watch.back_at) >= idle) or (self._side is not None and source.inputs_done()):
            self._end()  # idle, or caught up with the labels of a finished input
        self._awake = datetime.now(timezone.utc) + IDLE_POLL

    def _records(self, fetched: Fetched) -> list[Any]:
        """The items of one fetch: raw records (as many as the run's event budget still takes), labels or commands."""
        topic, partition, offsets, values = self._topic, self._partition, fetched.offsets, fetched.values
        if self._side == "labels":
            keys = fetched.keys or [None] * len(values)
            return [RawLabel(v, Origin(topic, partition, o), k.decode("utf-8", "replace") if k else None) for v, o, k in zip(values, offsets, keys)]
        if self._side == "control":
            return [RawControl(v, Origin(topic, partition, o)) for v, o in zip(values, offsets)]
        source = self._source
        n = source.budget.take(len(values))
        if source.on_read is not None and n:
            source.on_read(n)
        return [RawRecord(v, Origin(topic, partition, o)) for v, o in zip(values[:n], offsets[:n])]

    def _report_lag(self) -> None:
        """How far this partition is behind its high watermark (known from the child's last fetch)."""
        on_lag = self._source.on_lag
        if on_lag is None or self._offset is None:
            return
        high = self._fetcher.highwater(self._slot)
        if high is not None:
            on_lag(self._topic, self._partition, max(0, high - self._offset))

    def _end(self) -> None:
        if self._offset is None:  # ended before reading anything: its resume state is still where it started
            self._offset = self._fetcher.position(self._slot)
        self._release(commit=self._offset if self._source.group_id else None)  # the final snapshot cannot commit: the child may have stopped
        if self._side is None and not self._ended:
            self._ended = True
            self._source.input_closed()
        raise StopIteration

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        if self._offset is None:
            self._offset = self._fetcher.position(self._slot)
        if self._source.group_id and not self._released:  # informational, for start=committed; recovery does not depend on it
            self._fetcher.commit(self._slot, self._offset)
        return self._offset

    def close(self) -> None:
        self._release()

    def _release(self, commit: int | None = None) -> None:
        if not self._released:
            self._released = True
            self._fetcher.release(self._slot, commit)


class KafkaSource(FixedPartitionedSource[SourceBatch, int]):
    """The input topic (raw events) and, optionally, the labels topic (raw delayed labels).

    Args:
        client_config: kafka-python client arguments.
        input_topic: the events topic.
        labels_topic: the delayed-labels topic, if any.
        control_topic: the operators' commands topic, if any (read as :class:`~stream_learner.control.RawControl`).
        start: where a partition without resume state starts: ``earliest``,
            ``latest`` or the group's ``committed`` offset.
        group_id: consumer group, used only to commit offsets (never joined).
        batch_size: most records per poll.
        max_batch_records: most records a partition hands the dataflow at once: every fetch that
            waits, up to this many (``batch_size``: one fetch at a time).
        max_events: stop after this many input records (in this process).
        idle_timeout: stop a partition after this many seconds without records.
        start_offsets: ``{topic: {partition: offset}}`` overriding ``start``.
        on_read: called with the number of input records of each batch.
        on_lag: called with ``(topic, partition, records behind the high watermark)`` after each poll.
        offset_out_of_range: what a resume offset the partition does not hold does:
            ``error`` (the run stops), ``earliest`` or ``latest`` (a warning).
        on_offset_reset: called with ``(topic, partition, policy)`` for each such offset that was reset.
        outage_timeout_s: how long the consumer waits for a cluster that stopped answering.
        watch: told when the cluster stops answering (shared with the sinks' producer, so an outage is said once).
    """

    def __init__(
        self,
        client_config: dict[str, Any],
        input_topic: str,
        *,
        labels_topic: str | None = None,
        control_topic: str | None = None,
        start: Start = "earliest",
        group_id: str | None = None,
        batch_size: int = 1000,
        max_batch_records: int = DEFAULT_BATCH_SIZE,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        start_offsets: dict[str, dict[int, int]] | None = None,
        on_read: Callable[[int], None] | None = None,
        on_lag: Callable[[str, int, int], None] | None = None,
        offset_out_of_range: str = "error",
        on_offset_reset: Callable[[str, int, str], None] | None = None,
        outage_timeout_s: float = OUTAGE_TIMEOUT_S,
        watch: OutageWatch | None = None,
    ) -> None:
        self.client_config = client_config
        self.input_topic = input_topic
        self.labels_topic = labels_topic
        self.control_topic = control_topic
        self.start = start
        self.group_id = group_id
        self.batch_size = batch_size
        self.max_batch_records = max_batch_records
        self.budget = _Budget(max_events)
        self.idle_timeout = idle_timeout
        self.start_offsets = start_offsets or {}
        self.on_read = on_read
        self.on_lag = on_lag
        self.offset_out_of_range = offset_out_of_range
        self.on_offset_reset = on_offset_reset
        self.outage_timeout_s = outage_timeout_s
        self.watch = watch if watch is not None else OutageWatch(servers_of(client_config), outage_timeout_s)
        self.bounds: dict[int, tuple[int, int]] = {}  # the input partitions' first and next offsets when the run started
        self.name = input_topic
        self.stop = threading.Event()
        self._fetcher: ConsumerProcess | None = None
        self._inputs_lock = threading.Lock()
        self._inputs_open: int | None = None
        self._parts: list[str] | None = None

    def list_parts(self) -> list[str]:
        if self._parts is None:
            topics = [self.input_topic] + [topic for topic in (self.labels_topic, self.control_topic) if topic]
            with first_contact(self.client_config):  # the first contact of a run that creates no topics
                consumer = KafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=_BOUNDS_FETCH_WAIT_MS, **self.client_config)
                try:
                    parts = []
                    for topic in topics:
                        partitions = consumer.partitions_for_topic(topic)
                        if not partitions:
                            raise SourceError(f"Kafka topic {topic!r} does not exist (create it, or enable create_topics)")
                        parts += [f"{topic}:{p}" for p in sorted(partitions)]
                    self.bounds = _bounds(consumer, [TopicPartition(self.input_topic, p) for p in consumer.partitions_for_topic(self.input_topic)])
                finally:
                    consumer.close()
            self._parts = parts
        return self._parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        topic, _, partition = for_part.rpartition(":")
        if topic == self.input_topic:
            with self._inputs_lock:
                self._inputs_open = (self._inputs_open or 0) + 1
        return _KafkaPartition(self, topic, int(partition), resume_state)

    def fetcher(self) -> ConsumerProcess:
        """This process's consumer child, shared by its partitions (started on first use)."""
        with self._inputs_lock:
            if self._fetcher is None:
                config = {**self.client_config, **({"group_id": self.group_id} if self.group_id else {})}
                self._fetcher = ConsumerProcess(
                    config,
                    batch_size=self.batch_size,
                    offset_out_of_range=self.offset_out_of_range,
                    on_reset=self.on_offset_reset,
                    outage_timeout_s=self.outage_timeout_s,
                    watch=self.watch,
                )
            return self._fetcher

    def start_fetcher(self) -> None:
        """Start the consumer child now (its start-up then overlaps the dataflow's)."""
        self.fetcher().start()

    def close(self) -> None:
        """Stop the consumer child, if the partitions have not (e.g. after a failure)."""
        if self._fetcher is not None:
            self._fetcher.close()

    def check_offsets(self, offsets: dict[int, int], what: str, *, recovered: bool = False) -> None:
        """Apply ``offset_out_of_range`` to a learner's ``offsets`` (input partition: next offset), in place.

        An offset outside what its partition held when the run started raises
        :class:`~stream_learner.errors.OffsetOutOfRangeError` (``error``) or
        moves to the partition's first or next offset, with a warning: a
        learner restored from a snapshot skips the events before its offsets.
        A learner ``recovered`` with the source's offsets follows its partition,
        which says so itself (and stops the run, for ``error``).
        """
        policy = self.offset_out_of_range
        for partition, offset in list(offsets.items()):
            first, end = self.bounds.get(partition, (offset, offset))
            if first <= offset <= end or (recovered and policy == "error"):
                continue
            where = f"{what}: {out_of_range(self.input_topic, partition, offset, first, end)}"
            if policy == "error":
                raise OffsetOutOfRangeError(f"{where}; {OUT_OF_RANGE_HINT}")
            offsets[partition] = first if policy == "earliest" else end
            if recovered:
                logger.info("%s; learning on from offset %d, as its partition reads on", where, offsets[partition])
                continue
            logger.warning("%s; kafka.offset_out_of_range=%s: learning on from offset %d", where, policy, offsets[partition])
            if self.on_offset_reset is not None:
                self.on_offset_reset(self.input_topic, partition, policy)

    def side_of(self, topic: str) -> Literal["labels", "control"] | None:
        """Which side topic ``topic`` is (``None``: the input topic)."""
        if topic == self.input_topic:
            return None
        if topic == self.labels_topic:
            return "labels"
        return "control" if topic == self.control_topic else None

    def inputs_done(self) -> bool:
        """Whether every input partition of this process has ended (or reached ``max_events``)."""
        if self.budget.spent:
            return True
        with self._inputs_lock:
            return self._inputs_open == 0

    def input_closed(self) -> None:
        with self._inputs_lock:
            self._inputs_open = max(0, (self._inputs_open or 1) - 1)


class _ProducerPartition(StatefulSinkPartition[list[dict[str, Any]] | Predictions, int]):
    """One sink partition: encodes records and hands them to the producer process.

    ``write_batch`` only queues (back-pressure aside); ``snapshot``, called
    at every epoch close before Bytewax commits the epoch, returns once the
    broker acknowledged every record this partition sent. Its state, the
    number of records acknowledged so far, is informational.
    """

    def __init__(self, producer: ProducerProcess, topic: str, written: int, chunk: int) -> None:
        self._producer = producer
        self._topic = topic
        self._written = written
        self._sent = 0  # records queued since the last acknowledged snapshot
        self._last = 0  # number of the last batch queued
        self._chunk = chunk
        producer.acquire()

    def write_batch(self, items: list[list[dict[str, Any]] | Predictions]) -> None:
        send, chunk, topic = self._producer.send_parts, self._chunk, self._topic  # the child encodes them
        parts: list[list[dict[str, Any]] | Predictions] = []
        size = 0  # records in parts: each batch handed over holds at most ``chunk``, however many model keys' items it gathers
        for records in items:
            for i in range(0, len(records), chunk):
                piece = records[i : i + chunk]
                if parts and size + len(piece) > chunk:
                    self._last = send(topic, parts)
                    parts, size = [], 0
                parts.append(piece)
                size += len(piece)
            self._sent += len(records)
        if parts:
            self._last = send(topic, parts)

    def snapshot(self) -> int:
        if self._sent:
            self._producer.flush(self._last)
            self._written += self._sent
            self._sent = 0
        return self._written

    def close(self) -> None:
        self._producer.release()


class KafkaSink(FixedPartitionedSink[list[dict[str, Any]] | Predictions, int]):
    """Writes ``(model key, [record, ...])`` items to one topic as JSON, keyed by ``record["key"]``.

    Production runs in a child process (:class:`~connectors.kafka_producer.ProducerProcess`):
    an idempotent (``acks=all``), batching, compressing producer. Outputs are
    at-least-once: each partition's ``snapshot``, which Bytewax takes at every
    epoch close before committing the epoch, waits until the broker has
    acknowledged every record the partition sent, so a crash repeats at most
    the records of the epochs not committed (each carries the event ``id``).
    A broker error raises :class:`~stream_learner.errors.SinkError` from the
    next ``write_batch`` or ``snapshot``.

    Partitions: ``{topic}#0`` .. ``{topic}#{partitions - 1}``, the same list on
    every process and every run, with items routed by the model key
    (``adler32``, Bytewax's default) so each key's records stay in order and a
    scaled-out cluster spreads production over its processes. Their state is
    only a count, so any ``partitions`` is safe across restarts.

    Args:
        client_config: kafka-python client arguments (servers, security, SASL/SSL).
        topic: the topic written.
        compression: ``gzip``, ``snappy``, ``lz4``, ``zstd`` or ``none``.
        gzip_level: gzip's level, 1 (fastest, the default) to 9.
        linger_ms: the producer's batching delay.
        partitions: sink partitions (see above).
        producer: a producer process shared with other sinks (its own
            settings apply); by default the sink starts one of its own.
        chunk: most records per batch handed to the producer process.
    """

    def __init__(
        self,
        client_config: dict[str, Any],
        topic: str,
        *,
        compression: str = "gzip",
        gzip_level: int = GZIP_LEVEL,
        linger_ms: int = 5,
        partitions: int = 4,
        producer: ProducerProcess | None = None,
        chunk: int = 1000,
    ) -> None:
        self.client_config = client_config
        self.topic = topic
        self.compression = compression
        self.linger_ms = linger_ms
        self.partitions = partitions
        self.gzip_level = gzip_level
        self.producer = producer if producer is not None else ProducerProcess(client_config, compression=compression, gzip_level=gzip_level, linger_ms=linger_ms)
        self.chunk = chunk

    def list_parts(self) -> list[str]:
        return [f"{self.topic}#{i}" for i in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ProducerPartition:
        return _ProducerPartition(self.producer, self.topic, resume_state or 0, self.chunk)
