"""Kafka production in a child process, off the learner's interpreter and GIL.

kafka-python's ``KafkaProducer.send()`` runs pure Python for every
message, CPU the learner's interpreter would otherwise spend learning.
:class:`ProducerProcess` moves production to a
child process (:mod:`connectors.child_process`, spawned) that owns one
idempotent, batching, compressing producer, and there skips
``send()`` for keyed records: it groups each batch's records by partition
(the default partitioner's, memoised) and appends each group to the
producer's batches in one piece (:mod:`connectors.kafka_append`; it steps
aside for ``send()`` where its kafka-python internals are not as they were
read, and ``STREAM_LEARNER_KAFKA_FAST_PATHS=0`` turns it off). The parent
hands it batches of records for one topic, as encoded ``(key bytes | None, value bytes)`` pairs or as JSON-able
dicts that the child encodes (:meth:`ProducerProcess.send_parts`: the
encoding leaves the parent too), and asks it to flush:

* :meth:`ProducerProcess.send` only enqueues; it blocks (back-pressure)
  only while ``max_pending`` batches wait for the child, and never longer
  than ``timeout_s`` without progress.
* :meth:`ProducerProcess.flush` returns once the broker acknowledged
  everything sent before it, or raises.
* A broker or producer error in the child, or the child's death, is
  raised in the parent as :class:`~stream_learner.errors.SinkError` from
  the next ``send`` or ``flush``; no call waits longer than ``timeout_s``
  without progress.
* A lost cluster is waited for: the producer retries what it holds for up
  to ``outage_timeout_s`` (an :class:`OutageWatch` says so, in warning
  lines), then the child stops with
  :class:`~stream_learner.errors.KafkaUnavailableError`. A producer whose
  state the cluster lost (an unknown producer id, sequence or epoch) is
  replaced and everything not yet acknowledged is sent again (outputs are
  at-least-once; :attr:`ProducerProcess.resent` counts the records).
* The child is spawned, ignores Ctrl-C and exits with its parent, as
  :mod:`connectors.child_process` says: a script that runs a Kafka sink
  needs the ``if __name__ == "__main__":`` guard, and a ``kill -9`` of the
  service leaves no orphan.

This module imports no Bytewax: the child imports only kafka-python.
"""

from __future__ import annotations

import functools
import logging
import marshal
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import orjson
from kafka import KafkaProducer
from kafka import errors as Errors
from kafka.partitioner.default import murmur2

from connectors.child_process import ChildHandle, ChildProcess, bounded_queue
from connectors.kafka_append import BulkAppender, can_bulk_append
from connectors.kafka_records import fast_paths
from stream_learner.errors import KafkaUnavailableError, SinkError
from stream_learner.predictions import Predictions, records_of

logger = logging.getLogger(__name__)

Pair = tuple[bytes | None, bytes]
T = TypeVar("T")
_POLL_S = 0.2  # how often a waiting parent checks that the child is still alive
GZIP_LEVEL = 1  # the producer process's default gzip level (see ProducerProcess)
OUTAGE_TIMEOUT_S = 600.0  # how long a lost cluster is waited for (kafka.outage_timeout_s)
STALL_WARN_S = 5.0  # no answer from the cluster for this long: an outage, said at once
WARN_EVERY_S = 30.0  # and said again this often while it lasts
_FLUSH_STEP_S = 2.0  # the child's flush waits in steps this long, looking at the clock in between
_START_AGAIN_S = 1.0  # a Kafka client that could not bootstrap is built again after this
# A record the cluster cannot take now but may once it is back, or once a new producer sends it again.
_PRODUCER_STATE_ERRORS = (Errors.UnknownProducerIdError, Errors.OutOfOrderSequenceNumberError, Errors.InvalidProducerEpochError, Errors.KafkaTimeoutError)


def servers_of(client_config: dict[str, Any]) -> str:
    """The bootstrap servers of kafka-python client arguments, as one string (for messages).

    >>> servers_of({"bootstrap_servers": ["a:9092", "b:9092"]})
    'a:9092,b:9092'
    """
    return ",".join(client_config.get("bootstrap_servers") or [])


def make_producer(client_config: dict[str, Any], compression: str | None = "gzip", linger_ms: int = 5, outage_timeout_s: float = OUTAGE_TIMEOUT_S) -> KafkaProducer:
    """An idempotent, batching, compressing producer that keeps retrying a record through an outage of ``outage_timeout_s``."""
    return KafkaProducer(
        enable_idempotence=True,
        acks="all",
        compression_type=compression,
        linger_ms=linger_ms,
        batch_size=256 * 1024,
        **{"delivery_timeout_ms": round((outage_timeout_s + 60) * 1000), **client_config},
    )


class OutageWatch:
    """Says when the Kafka cluster stops answering: one warning line at once, one every ``every_s`` while it lasts, one when it is back.

    The consumer and the producer report to the same watch (thread-safe), so
    an outage both notice is said once.

    >>> now = [100.0]
    >>> watch = OutageWatch("kafka:9092", timeout_s=600, clock=lambda: now[0])
    >>> watch.down("producer", 5.2), watch.out
    ('the Kafka cluster at kafka:9092 has not answered the producer for 5 s; retrying for up to 600 s (kafka.outage_timeout_s)', True)
    >>> now[0] += 20; watch.down("consumer", 9.0) is None  # said less than 30 s ago
    True
    >>> now[0] += 10; watch.down("consumer", 19.0)
    'the Kafka cluster at kafka:9092 has not answered the consumer for 19 s; retrying for up to 600 s (kafka.outage_timeout_s)'
    >>> watch.up("producer"), watch.out
    (None, True)
    >>> watch.up("consumer"), watch.out
    ('the Kafka cluster at kafka:9092 answers again', False)
    """

    def __init__(self, servers: str, timeout_s: float = OUTAGE_TIMEOUT_S, every_s: float = WARN_EVERY_S, clock: Any = time.monotonic) -> None:
        self.servers = servers
        self.timeout_s = timeout_s
        self.every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self._said: float | None = None  # when the last warning was said
        self.back_at = 0.0  # when the cluster last answered again after an outage

    @property
    def out(self) -> bool:
        """Whether some side has not heard from the cluster for ``STALL_WARN_S`` or more."""
        return bool(self._down)

    def down(self, side: str, seconds: float) -> str | None:
        """``side`` (``consumer``, ``producer``) has had no answer for ``seconds``; the warning said, if one was."""
        now = self._clock()
        with self._lock:
            self._down.add(side)
            if self._said is not None and now - self._said < self.every_s:
                return None
            self._said = now
        return _warn(f"the Kafka cluster at {self.servers} has not answered the {side} for {seconds:.0f} s; retrying for up to {self.timeout_s:.0f} s (kafka.outage_timeout_s)")

    def up(self, side: str) -> str | None:
        """``side`` hears from the cluster again; the line said, if the cluster is back for every side."""
        with self._lock:
            if side not in self._down:
                return None
            self._down.discard(side)
            if self._down:
                return None
            self._said = None
            self.back_at = self._clock()
        return _warn(f"the Kafka cluster at {self.servers} answers again")


def _warn(line: str) -> str:
    logger.warning("%s", line)
    return line


class ProducerProcess(ChildHandle):
    """One Kafka producer in a child process, shared by the sink partitions of this process (thread-safe).

    Args:
        client_config: kafka-python client arguments (servers, security, SASL/SSL).
        compression: ``gzip``, ``snappy``, ``lz4``, ``zstd`` or ``none``.
        gzip_level: the gzip level, 1 (fastest) to 9 (kafka-python's own, fixed,
            level). Level 1 trades slightly larger batches for much less
            CPU on JSON outputs.
        linger_ms: the producer's batching delay.
        max_pending: most batches waiting for the child before ``send`` blocks.
        outage_timeout_s: how long the child keeps retrying while the cluster does not answer.
        watch: the :class:`OutageWatch` told when the cluster stops answering (default: one of its own).
        timeout_s: longest wait without progress before the parent gives up on the child
            (default: ``outage_timeout_s`` and a minute).

    The child starts on :meth:`start`, or the first :meth:`acquire` or
    :meth:`send`. Each user :meth:`acquire`s it and :meth:`release`s it
    when done; the last release stops the child after a final flush.
    :meth:`close` stops it whoever still holds it.
    """

    def __init__(
        self,
        client_config: dict[str, Any],
        *,
        compression: str = "gzip",
        gzip_level: int = GZIP_LEVEL,
        linger_ms: int = 5,
        max_pending: int = 16,
        outage_timeout_s: float = OUTAGE_TIMEOUT_S,
        watch: OutageWatch | None = None,
        timeout_s: float | None = None,
    ) -> None:
        if not 1 <= gzip_level <= 9:
            raise ValueError(f"gzip_level must be between 1 and 9, not {gzip_level}")
        fast_paths()  # a bad STREAM_LEARNER_KAFKA_FAST_PATHS stops here, before the children start
        self.client_config = client_config
        self.compression = compression
        self.gzip_level = gzip_level
        self.linger_ms = linger_ms
        self.max_pending = max_pending
        self.outage_timeout_s = outage_timeout_s
        self.watch = watch if watch is not None else OutageWatch(servers_of(client_config), outage_timeout_s)
        self.timeout_s = outage_timeout_s + 60 if timeout_s is None else timeout_s
        self.resent = 0  # records sent again by a new producer (duplicates, where the first send had landed)
        self._lock = threading.Lock()  # orders sends and flush marks in the queue
        self._cond = threading.Condition()  # guards what the child reported
        self._child: ChildProcess | None = None
        self._commands: Any = None  # the child's bounded queue of batches and flush marks
        self._reader: threading.Thread | None = None
        self._seq = 0  # the number of the last batch or flush mark queued
        self._flush_mark = 0  # the last flush mark queued
        self._acked = 0  # every message up to this number is acknowledged by the broker
        self._progress = time.monotonic()  # when the child last took a batch or reported an acknowledgement
        self._error: str | None = None  # what the child reported
        self._error_type: type[SinkError] | type[KafkaUnavailableError] = SinkError
        self._failure: SinkError | None = None  # what a closing flush met
        self._exited = False
        self._closed = False
        self._users = 0

    def acquire(self) -> None:
        """Start the child if needed and count one more user."""
        with self._lock:
            self._start()
            self._users += 1

    def release(self) -> None:
        """One user is done: flush what it sent; the last one stops the child.

        Never raises (Bytewax calls it from ``close``, also while unwinding
        another error, where raising would abort the process): a failure is
        logged and raised by the next :meth:`close`. On a clean end of
        stream Bytewax has already taken a last snapshot, so nothing is left
        to flush here.
        """
        with self._lock:
            if self._closed:
                return
            self._users -= 1
            last = self._users <= 0
        try:
            if last:
                self.close(flush=True)
            else:
                self.flush()
        except SinkError as exc:  # the child's own error has been (or will be) raised by write_batch or snapshot
            logger.log(logging.DEBUG if self._error is not None else logging.ERROR, "%s", exc)

    def send(self, topic: str, pairs: list[Pair]) -> int:
        """Queue ``(key, value)`` records for ``topic``; return the batch's number.

        Blocks only while ``max_pending`` batches wait for the child.
        """
        return self._enqueue(topic, pairs)

    def send_parts(self, topic: str, parts: list[list[dict[str, Any]] | Predictions]) -> int:
        """Queue parts of records (lists of JSON-able dicts, :class:`Predictions`) for ``topic`` as one batch, encoded by the child as :func:`encode_records` does; return the batch's number.

        They travel marshalled, which costs the caller less than encoding
        them and pickling the encoded pairs (predictions go as their rows); a
        batch that marshal cannot carry (a value of another type) is encoded here.
        """
        try:
            payload: list[Pair] | bytes = marshal.dumps([part.to_wire() if type(part) is Predictions else part for part in parts])
        except ValueError:
            payload = encode_records(record for part in parts for record in part)
        return self._enqueue(topic, payload)

    def flush(self, through: int | None = None) -> None:
        """Return once the broker acknowledged every batch up to ``through`` (default: all sent so far)."""
        with self._lock:
            through = self._seq if through is None else through
            self._raise_if_failed()
            with self._cond:
                if self._acked >= through:
                    return
            if self._flush_mark < through:  # no flush mark queued behind that batch yet
                self._start()
                self._seq += 1
                self._flush_mark = self._seq
                self._put((self._seq, None, None))
            mark = self._flush_mark
        self._wait_for(lambda: self._acked >= mark, f"flushing {mark - self._acked} pending batches")

    def close(self, flush: bool = True) -> None:
        """Stop the child: after a final flush (``flush``), else at once. Idempotent.

        With ``flush``, raises :class:`SinkError` if anything this producer
        was given may not have reached the broker (now or at an earlier
        close); without, never raises.
        """
        if self._closed:
            if flush and self._failure is not None:
                raise self._failure
            return
        if flush:
            try:
                self.flush()
            except SinkError as exc:
                self._failure = exc
        with self._lock:
            self._closed = True
            child, commands = self._child, self._commands
            if child is not None:
                try:
                    commands.put(None, timeout=1.0)  # stop
                except (queue.Full, ValueError, OSError):
                    pass
                child.stop(5.0 if flush and self._failure is None else 0.5)
                commands.cancel_join_thread()  # never wait on a queue nobody reads any more
                commands.close()
        if flush and self._failure is not None:
            raise self._failure

    # --- internals ------------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the child (called with ``_lock`` held)."""
        if self._closed:
            raise SinkError("the Kafka producer process is closed")
        if self._child is not None:
            return
        self._commands = bounded_queue(self.max_pending)
        args = (self.client_config, self.compression, self.gzip_level, self.linger_ms, self.outage_timeout_s)
        self._child = ChildProcess.spawn("the Kafka producer process", _child_main, args, name="stream-learner-kafka-producer", commands=self._commands)
        self._reader = threading.Thread(target=self._read_results, args=(self._child.results,), name="kafka-producer-results", daemon=True)
        self._reader.start()
        logger.debug("Kafka producer process %d started", self._child.pid)

    def _enqueue(self, topic: str, payload: list[Pair] | bytes) -> int:
        """Queue one batch for the child: encoded pairs, or marshalled records it encodes itself."""
        with self._lock:
            self._start()
            self._seq += 1
            self._put((self._seq, topic, payload))
            return self._seq

    def _put(self, message: Any) -> None:
        """Queue one message, waiting (back-pressure) while the child is busy, never past ``timeout_s`` without progress."""
        started = time.monotonic()
        while True:
            self._raise_if_failed()
            try:
                self._commands.put(message, timeout=_POLL_S)
                self._progress = time.monotonic()
                return
            except queue.Full:
                self._stalled("the Kafka producer process took no batch", started)

    def _read_results(self, results: Any) -> None:
        try:
            while True:
                kind, value = results.recv()
                if kind == "warning":
                    logger.warning("%s", value)
                    continue
                if kind == "resent":
                    count, cause = value
                    self.resent += count
                    logger.warning("Kafka producer replaced (%s): %d records not yet acknowledged sent again (duplicates where they had landed)", cause, count)
                    continue
                with self._cond:
                    if kind == "flushed":
                        self._acked = max(self._acked, value)
                        self._progress = time.monotonic()
                    elif kind == "outage":
                        self._error, self._error_type = value, KafkaUnavailableError
                    else:
                        self._error = value
                    self._cond.notify_all()
                if kind == "flushed":
                    self.watch.up("producer")
        except (EOFError, OSError):
            pass
        finally:
            results.close()
            with self._cond:
                self._exited = True
                self._cond.notify_all()

    def _wait_for(self, done: Any, what: str) -> None:
        started = time.monotonic()
        with self._cond:
            while not done():
                self._raise_if_failed(locked=True)
                self._cond.wait(_POLL_S)
                if not done():
                    self._stalled(f"the Kafka producer process timed out {what}", started)

    def _stalled(self, what: str, started: float) -> None:
        """No progress since ``started`` or later: an outage from ``STALL_WARN_S`` on (the watch says so), a failed child past ``timeout_s``."""
        stalled = time.monotonic() - max(self._progress, started)
        if stalled >= self.timeout_s:
            raise SinkError(f"{what} after {stalled:.0f}s without progress")
        if stalled >= STALL_WARN_S:
            self.watch.down("producer", stalled)

    def _raise_if_failed(self, locked: bool = False) -> None:
        if not locked:
            with self._cond:
                return self._raise_if_failed(locked=True)
        if self._error is not None:
            raise self._error_type(self._error)
        if self._exited and not self._closed:  # the child's end of the results pipe closed: it is gone
            raise SinkError(self._child.exit_message())  # type: ignore[union-attr]  # started, since it exited
        return None


# --- the child ------------------------------------------------------------------------------------


def through_outage(build: Callable[[], T], outage_timeout_s: float) -> T:
    """``build()`` (a kafka-python client, which bootstraps as it is built), built again every ``_START_AGAIN_S`` while the cluster does not answer, for up to ``outage_timeout_s``.

    A service may start while the cluster is out, as it may lose it later;
    the Kafka children wait for it either way.
    """
    deadline = time.monotonic() + outage_timeout_s
    while True:
        try:
            return build()
        except Errors.KafkaTimeoutError:  # kafka-python could not bootstrap
            if time.monotonic() >= deadline:
                raise
            time.sleep(_START_AGAIN_S)


def _topic_of(future: Any) -> str:
    produced = getattr(future, "_produce_future", None)
    tp = getattr(produced, "topic_partition", None)
    return f" on topic {tp.topic!r}" if tp is not None else ""


def _failure(future: Any) -> str:
    exc = future.exception
    return f"Kafka rejected a record{_topic_of(future)}: {type(exc).__name__}: {exc}"


class _Routes:
    """The Kafka partition of each (topic, key), as kafka-python's default partitioner picks it, memoised.

    The default partitioner hashes every key with a pure-Python murmur2 on
    every record; model keys are few, so each is hashed once per topic layout. The layout is read once per batch, so a topic that gains
    partitions is followed from the next batch. Records without a key are
    left to the producer (sticky partitioning).
    """

    MAX_KEYS = 100_000

    def __init__(self, producer: KafkaProducer, custom: bool) -> None:
        self._producer = producer
        self._custom = custom  # a user-supplied partitioner decides itself
        self._tables: dict[str, tuple[list[int], dict[bytes, int]]] = {}

    def route(self, topic: str) -> Any:
        if self._custom:
            return lambda key: None
        partitions = sorted(self._producer.partitions_for(topic))
        known = self._tables.get(topic)
        if known is None or known[0] != partitions or len(known[1]) > self.MAX_KEYS:
            known = self._tables[topic] = (partitions, {})
        table, n = known[1], len(partitions)

        def route(key: bytes | None) -> int | None:
            if key is None:
                return None
            partition = table.get(key)
            if partition is None:
                partition = table[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % n]
            return partition

        return route


def _runs(pairs: list[Pair], route: Any) -> Iterator[tuple[int | None, list[Pair]]]:
    """``pairs`` as runs for one partition each (``None``: the producer's choice), in order within each partition.

    Keyed records are grouped by partition up to the next record the
    producer must place itself, which is sent on its own, in its place.
    """
    runs: dict[int, list[Pair]] = {}
    for pair in pairs:
        partition = route(pair[0])
        if partition is None:
            yield from runs.items()
            runs = {}
            yield None, [pair]
            continue
        run = runs.get(partition)
        if run is None:
            run = runs[partition] = []
        run.append(pair)
    yield from runs.items()


def encode_records(records: Iterable[dict[str, Any]]) -> list[Pair]:
    """Records as messages: the JSON of each, keyed by its ``"key"`` (no key for a record without one)."""
    dumps, option = orjson.dumps, orjson.OPT_NON_STR_KEYS
    pairs: list[Pair] = []
    for record in records:
        key = record.get("key")
        pairs.append((key.encode() if key else None, dumps(record, option=option)))
    return pairs


def _use_gzip_level(level: int) -> None:
    """Make this process's kafka-python compress gzip batches at ``level`` (it always uses 9)."""
    from kafka import codec
    from kafka.record import default_records, legacy_records

    encode = functools.partial(codec.gzip_encode, compresslevel=level)
    default_records.gzip_encode = legacy_records.gzip_encode = encode


def _child_main(
    commands: Any, results: Any, client_config: dict[str, Any], compression: str, gzip_level: int, linger_ms: int, outage_timeout_s: float
) -> None:
    """The producer loop: send each batch, flush on request, report errors, stop on ``None``."""
    _use_gzip_level(gzip_level)
    child = _Child(client_config, None if compression == "none" else compression, linger_ms, outage_timeout_s, results)
    try:
        through_outage(child.start, outage_timeout_s)
    except Exception as exc:  # noqa: BLE001 - any client error is reported to the parent
        results.send(("error", f"cannot start a Kafka producer for {child.servers}: {type(exc).__name__}: {exc}"))
        return
    topic: str | None = None
    try:
        while True:
            message = commands.get()
            if message is None:
                break
            seq, topic, pairs = message
            if topic is None:  # a flush mark: everything before it must be acknowledged
                child.flush()
                results.send(("flushed", seq))
                continue
            if isinstance(pairs, bytes):  # parts of records, marshalled by send_parts
                pairs = encode_records(record for part in marshal.loads(pairs) for record in records_of(part))
            child.send(topic, pairs)
    except _Outage as exc:
        results.send(("outage", str(exc)))
    except SinkError as exc:
        results.send(("error", str(exc)))
    except Exception as exc:  # noqa: BLE001
        where = f" on topic {topic!r}" if topic else ""
        results.send(("error", f"the Kafka producer failed{where} ({child.servers}): {type(exc).__name__}: {exc}"))
    finally:
        child.close()


class _Outage(Exception):
    """The cluster did not acknowledge anything for ``outage_timeout_s``."""


class _Child:
    """The child's producer, and what it sent since the last flush mark (sent again by a new producer if the cluster lost the first's state)."""

    def __init__(self, client_config: dict[str, Any], compression: str | None, linger_ms: int, outage_timeout_s: float, results: Any) -> None:
        self.client_config = client_config
        self.compression = compression
        self.linger_ms = linger_ms
        self.outage_timeout_s = outage_timeout_s
        self.results = results
        self.servers = servers_of(client_config)
        self.producer: Any = None
        self.pending: deque[Any] = deque()  # futures of what was sent since the last flush mark
        self.unacked: list[tuple[str, list[Pair]]] = []  # and the records themselves

    def start(self) -> None:
        self.producer = make_producer(self.client_config, self.compression, self.linger_ms, self.outage_timeout_s)
        self._send, self._append = self.producer.send, self._bulk_append()
        self._routes = _Routes(self.producer, custom=self._append is None)

    def _bulk_append(self) -> Any:
        """The fast path's append, or None where ``send()`` places every record (a user's partitioner, the fast paths off or not fitting)."""
        if "partitioner" in self.client_config:
            return None
        try:
            return BulkAppender(self.producer).append if can_bulk_append(self.producer) else None
        except (AttributeError, KeyError, TypeError) as exc:  # a kafka-python internal not as it was read: step aside
            self.results.send(("warning", f"the Kafka producer's fast path stepped aside ({type(exc).__name__}: {exc}); kafka-python's send() places every record"))
            return None

    def send(self, topic: str, pairs: list[Pair]) -> None:
        self.unacked.append((topic, pairs))
        self._queue(topic, pairs)
        pending = self.pending
        while pending and pending[0].is_done:  # report failures early, keep the list short
            if pending[0].failed():
                if _recoverable(pending[0].exception):
                    break  # sent again at the flush mark
                raise SinkError(_failure(pending[0]))
            if getattr(pending[0], "split", False):  # a part of its batch may still fail: checked at the next flush
                break
            pending.popleft()

    def _queue(self, topic: str, pairs: list[Pair]) -> None:
        for partition, run in _runs(pairs, self._routes.route(topic)):
            if partition is None:  # no key, a user's partitioner, or no bulk append: the producer places it
                self.pending.extend(self._send(topic, value=value, key=key) for key, value in run)
            else:
                self.pending.extend(self._append(topic, partition, run))

    def flush(self) -> None:
        """Return once everything sent is acknowledged; through an outage of up to ``outage_timeout_s``, and a lost producer state."""
        deadline = time.monotonic() + self.outage_timeout_s
        while True:
            try:
                self.producer.flush(_FLUSH_STEP_S)
            except Errors.KafkaTimeoutError:
                if time.monotonic() < deadline:
                    continue
                raise _Outage(
                    f"the Kafka cluster at {self.servers} acknowledged no output for {self.outage_timeout_s:.0f} s (kafka.outage_timeout_s); stopping"
                ) from None
            failed = next((f for f in self.pending if f.failed()), None)
            if failed is None:
                break
            if not _recoverable(failed.exception):
                raise SinkError(_failure(failed))
            self._replace(f"{type(failed.exception).__name__}: {failed.exception}")
        self.pending.clear()
        self.unacked.clear()

    def _replace(self, cause: str) -> None:
        """A new producer (a new producer id) sends again everything not yet acknowledged."""
        self.producer.close(timeout=0)
        self.start()
        self.pending.clear()
        for topic, pairs in self.unacked:
            self._queue(topic, pairs)
        self.results.send(("resent", (sum(len(pairs) for _, pairs in self.unacked), cause)))

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=1.0)


def _recoverable(exc: BaseException | None) -> bool:
    """Whether a new producer may deliver what failed with ``exc`` (the cluster lost this one's state, or its retries ran out)."""
    return isinstance(exc, _PRODUCER_STATE_ERRORS) or bool(getattr(exc, "retriable", False))
