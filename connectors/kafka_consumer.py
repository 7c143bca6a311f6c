"""Kafka fetching and record parsing in a child process, off the learner's interpreter and GIL.

kafka-python parses record batches in pure Python, record by record: a
large share of the learner's worker thread. One :class:`ConsumerProcess`
per service process moves it to a child (:mod:`connectors.child_process`,
spawned) that owns one consumer with manual assignment and hands the
parent, per batch, the first offset and the values (and keys, where asked
for) as lists of bytes: one pickle per batch instead of Python parsing per
record. The child itself decodes each fetched record batch in one tight
loop (:mod:`connectors.kafka_fetch`).

* The source partitions (:class:`connectors.kafka.KafkaSource`) keep their
  own next offset as Bytewax resume state: the child only reads ahead.
  What it read ahead and nobody consumed is simply dropped at a restart.
* The parent never blocks on data: :meth:`ConsumerProcess.next` returns
  a batch already received, or ``None``. A slot (one Kafka partition) that
  buffers ``max_buffered`` batches is paused in the child until its
  partition catches up, so a slow partition cannot fill the parent's memory.
* The child resolves ``earliest``/``latest``/``committed`` starts and
  reports the offset (:meth:`ConsumerProcess.position` waits for it).
* An offset the partition no longer holds (the topic was recreated, the
  cluster lost its data, retention deleted it) is never skipped silently:
  by ``offset_out_of_range`` the child stops with
  :class:`~stream_learner.errors.OffsetOutOfRangeError` (``error``) or
  goes on from the partition's first or next offset (``earliest``,
  ``latest``), which the parent logs as a warning and reports to ``on_reset``.
* A cluster that stops answering is noticed within seconds (a partition
  with nothing to fetch asks for its end offset every ``_PROBE_AFTER_S``)
  and told to the :class:`~connectors.kafka_producer.OutageWatch`; kafka-python
  reconnects by itself. After ``outage_timeout_s`` without an answer the
  child stops with :class:`~stream_learner.errors.KafkaUnavailableError`.
* A consumer error in the child, or its death, is raised in the parent as
  :class:`~stream_learner.errors.SourceError`. The child ignores Ctrl-C
  and exits as soon as its parent dies (:mod:`connectors.child_process`).

This module imports no Bytewax: the child imports only kafka-python.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.errors import OffsetOutOfRangeError as KafkaOffsetOutOfRange
from kafka.structs import OffsetAndMetadata

from connectors.child_process import ChildHandle, ChildProcess
from connectors.kafka_fetch import Chunk, can_chunk, chunked
from connectors.kafka_producer import OUTAGE_TIMEOUT_S, OutageWatch, servers_of, through_outage
from stream_learner.errors import KafkaUnavailableError, OffsetOutOfRangeError, SourceError, StreamLearnerError

logger = logging.getLogger(__name__)

Start = int | str  # an offset, or "earliest", "latest", "committed"
_IDLE_POLL_MS = 50  # the child's poll timeout while it has partitions and nothing arrives
_FINAL_COMMIT_MS = 1500  # a partition's last commit, within the parent's 2 s wait for the child to stop
_CHUNKS_PER_POLL = 4  # each poll also sends the next fetches (a hand-off to kafka-python's network thread): not once per chunk
_PROBE_AFTER_S = 2.0  # the cluster has sent nothing for this long: ask it for an end offset
_PROBE_TIMEOUT_MS = 2000  # no answer within this: the cluster is unreachable
# How long the broker may hold a fetch that finds no records. Kafka answers it as soon as records arrive;
# some Kafka-protocol brokers (Tansu) do not, so this wait bounds what an idle partition adds to an event's latency.
# Not shorter: with a 2 ms wait, kafka-python's own consumer (nothing of ours) stopped receiving from Tansu for seconds at a time.
FETCH_MAX_WAIT_MS = 10
_ERRORS: dict[str, type[StreamLearnerError]] = {"offsets": OffsetOutOfRangeError, "outage": KafkaUnavailableError}
OUT_OF_RANGE = ("error", "earliest", "latest")


def out_of_range(topic: str, partition: int, offset: int, first: int, end: int) -> str:
    """What is wrong with ``offset``, when ``topic:partition`` holds ``first`` up to ``end`` (its next offset).

    >>> out_of_range("events", 0, 5000, 0, 3000)
    'offset 5000 of Kafka partition events:0 is out of range: the partition holds offsets 0 to 2999'
    """
    holds = f"holds offsets {first} to {end - 1}" if end > first else f"is empty (next offset {end})"
    return f"offset {offset} of Kafka partition {topic}:{partition} is out of range: the partition {holds}"


OUT_OF_RANGE_HINT = "the topic was recreated, or the cluster lost records? Set kafka.offset_out_of_range to earliest or latest to go on from there"


@dataclass
class Fetched:
    """Consecutive records of one partition: offsets, values and (where asked for) keys.

    No records and a ``reset`` offset: the child moved the partition there (its offset was out of range).
    ``received_at``: when this process took it from the child (Unix time), where its events' latency starts,
    however long it then waits for its partition's turn.
    """

    offsets: Sequence[int]
    values: list[bytes | None]
    keys: list[bytes | None] | None
    reset: int | None = None
    received_at: float = field(default_factory=time.time)


@dataclass
class _Slot:
    """What the parent knows about one assigned partition."""

    start: int | None = None
    ready: bool = False  # the child has positioned the partition
    high: int | None = None
    paused: bool = False
    batches: deque[Fetched] = field(default_factory=deque)


class ConsumerProcess(ChildHandle):
    """One Kafka consumer in a child process, shared by the source partitions of this process (thread-safe).

    Args:
        client_config: kafka-python client arguments (servers, security, SASL/SSL; ``group_id`` for commits).
        batch_size: most records per batch.
        max_buffered: batches a partition may buffer in the parent before the child pauses it.
        timeout_s: longest wait for the child to resolve a start offset (default: ``outage_timeout_s`` and a minute).
        offset_out_of_range: what an offset the partition does not hold does: ``error``,
            ``earliest`` or ``latest`` (see the module's docstring).
        on_reset: called with ``(topic, partition, policy)`` when a partition's offset was reset.
        outage_timeout_s: how long the child waits for a cluster that stopped answering.
        watch: told when the cluster stops answering and answers again (default: one of its own).

    Each source partition :meth:`assign`\\ s its Kafka partition (a slot) and
    :meth:`release`\\ s it when done; the last release stops the child.
    """

    def __init__(
        self,
        client_config: dict[str, Any],
        *,
        batch_size: int = 1000,
        max_buffered: int = 8,
        timeout_s: float | None = None,
        offset_out_of_range: str = "error",
        on_reset: Callable[[str, int, str], None] | None = None,
        outage_timeout_s: float = OUTAGE_TIMEOUT_S,
        watch: OutageWatch | None = None,
    ) -> None:
        if offset_out_of_range not in OUT_OF_RANGE:
            raise ValueError(f"offset_out_of_range must be one of {', '.join(OUT_OF_RANGE)}, not {offset_out_of_range!r}")
        self.client_config = client_config
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self.timeout_s = outage_timeout_s + 60 if timeout_s is None else timeout_s
        self.offset_out_of_range = offset_out_of_range
        self.on_reset = on_reset
        self.outage_timeout_s = outage_timeout_s
        self.watch = watch if watch is not None else OutageWatch(servers_of(client_config), outage_timeout_s)
        self._lock = threading.RLock()
        self._child: ChildProcess | None = None
        self._commands: Any = None
        self._results: Any = None
        self._slots: dict[int, _Slot] = {}
        self._next_slot = 0
        self._error: StreamLearnerError | None = None  # what the child reported, or its death
        self._closed = False

    def assign(self, topic: str, partition: int, start: Start, *, keys: bool = False) -> int:
        """Fetch ``topic:partition`` from ``start`` (with message keys if ``keys``); return its slot."""
        with self._lock:
            self._start()
            slot = self._next_slot
            self._next_slot += 1
            self._slots[slot] = _Slot(start=start if isinstance(start, int) else None)
            self._command(("assign", slot, topic, partition, start, keys))
            return slot

    def next(self, slot: int) -> Fetched | None:
        """The slot's next batch, if one has arrived; never blocks."""
        with self._lock:
            state = self._slots[slot]
            while not state.batches and self._receive(0):
                pass
            if not state.batches:
                self._raise_if_failed()
                return None
            batch = state.batches.popleft()
            if state.paused and len(state.batches) <= self.max_buffered // 2:
                state.paused = False
                self._command(("resume", slot))
            return batch

    def position(self, slot: int) -> int:
        """The slot's start offset, waiting for the child to resolve it."""
        deadline = time.monotonic() + self.timeout_s
        with self._lock:
            state = self._slots[slot]
            while state.start is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SourceError(f"the Kafka consumer process did not resolve a start offset within {self.timeout_s:.0f}s")
                if not self._receive(min(left, 0.2)):
                    self._raise_if_failed()
            return state.start

    def ready(self, slot: int) -> bool:
        """Whether the child has positioned the slot's partition (it fetches from then on)."""
        with self._lock:
            state = self._slots.get(slot)
            return state is None or state.ready

    def highwater(self, slot: int) -> int | None:
        """The partition's end offset at the child's last fetch, if known."""
        with self._lock:
            return self._slots[slot].high

    def commit(self, slot: int, offset: int) -> None:
        """Commit ``offset`` for the slot's partition to the consumer group (asynchronous, informational)."""
        with self._lock:
            self._command(("commit", slot, offset))

    def release(self, slot: int, commit: int | None = None) -> None:
        """Stop fetching the slot's partition; the last release stops the child. Idempotent.

        ``commit``: an offset the child commits for the partition first, synchronously
        (a partition's last commit, which the child stopping next must not drop).
        """
        with self._lock:
            if self._slots.pop(slot, None) is None or self._closed:
                return
            if self._slots or commit is not None:
                self._command(("release", slot, commit))
            if self._slots:
                return
        self.close()

    def close(self) -> None:
        """Stop the child. Idempotent; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._child is None:
                return
            try:
                self._commands.send(None)
            except (OSError, ValueError):
                pass
            self._child.stop(2.0)
            self._commands.close()
            self._results.close()

    # --- internals ------------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the child (called with ``_lock`` held)."""
        if self._closed:
            raise SourceError("the Kafka consumer process is closed")
        if self._child is not None:
            return
        args = (self.client_config, self.batch_size, self.offset_out_of_range, self.outage_timeout_s)
        self._child = ChildProcess.spawn("the Kafka consumer process", _child_main, args, name="stream-learner-kafka-consumer", wide_results=True)
        self._commands, self._results = self._child.commands, self._child.results
        logger.debug("Kafka consumer process %d started", self._child.pid)

    def _command(self, message: Any) -> None:
        try:
            self._commands.send(message)
        except (OSError, ValueError):
            self._raise_if_failed()
            raise SourceError("the Kafka consumer process is gone") from None

    def _receive(self, wait: float) -> bool:
        """Take one message from the child if one comes within ``wait`` seconds; whether one came."""
        if self._error is not None:
            return False
        try:
            if not self._results.poll(wait):
                return False
            message = self._results.recv()
        except (EOFError, OSError):
            self._error = SourceError(self._child.exit_message())  # type: ignore[union-attr]  # started, since it sent
            return False
        kind, slot, *rest = message
        state = self._slots.get(slot)
        if kind == "batch" and state is not None:
            first, offsets, values, keys, state.high = rest
            state.batches.append(Fetched(range(first, first + len(values)) if offsets is None else offsets, values, keys))
            if not state.paused and len(state.batches) >= self.max_buffered:
                state.paused = True
                self._command(("pause", slot))
        elif kind == "start" and state is not None:
            state.start, state.ready = rest[0], True
        elif kind == "high" and state is not None:
            state.high = rest[0]
        elif kind == "reset":
            topic, partition, policy, target, message = rest
            logger.warning("%s", message)
            if state is not None:
                state.batches.append(Fetched((), [], None, reset=target))
            if self.on_reset is not None:
                self.on_reset(topic, partition, policy)
        elif kind == "down":
            self.watch.down("consumer", rest[0])
        elif kind == "up":
            self.watch.up("consumer")
        elif kind == "warning":
            logger.warning("%s", rest[0])
        elif kind == "error":
            self._error = _ERRORS.get(rest[1] if len(rest) > 1 else "", SourceError)(rest[0])
        return True

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


# --- the child ------------------------------------------------------------------------------------


class _Child:
    """The child's consumer and the slots it fetches.

    A paused slot leaves the consumer's assignment and comes back with a
    seek to where it stopped (kafka-python's own ``pause``/``resume`` stalled
    a resumed partition here).
    """

    def __init__(
        self, consumer: KafkaConsumer, results: Any, batch_size: int, offset_out_of_range: str = "error", outage_timeout_s: float = OUTAGE_TIMEOUT_S
    ) -> None:
        self.consumer = consumer
        self.results = results
        self.batch_size = batch_size
        self.offset_out_of_range = offset_out_of_range
        self.outage_timeout_s = outage_timeout_s
        self.heard = time.monotonic()  # when the cluster last answered
        self.silent = False  # whether the parent was told it does not
        self.slots: dict[TopicPartition, tuple[int, bool]] = {}  # partition -> (slot, with keys)
        self.keyed: set[TopicPartition] = set()  # the partitions fetched with their keys
        self.tps: dict[int, TopicPartition] = {}
        self.paused: dict[TopicPartition, int] = {}  # partition -> next offset to fetch
        self.highs: dict[TopicPartition, int | None] = {}
        self.unchecked: set[TopicPartition] = set()  # positioned at a stored offset, nothing read from it yet
        self.positions: dict[TopicPartition, int] = {}  # the next offset of each partition (what kafka-python's position() says, without its look-ups)
        self.chunks = can_chunk(consumer)
        if self.chunks:  # poll() returns Chunks of at most batch_size records
            chunked(consumer, batch_size, self.keyed)

    @property
    def fetching(self) -> bool:
        return len(self.slots) > len(self.paused)

    def handle(self, message: Any) -> None:
        kind, slot, *rest = message
        if kind == "assign":
            topic, partition, start, keys = rest
            if not self.fetching:  # the cluster's silence counts from when the child asks it something
                self.heard = time.monotonic()
            tp = TopicPartition(topic, partition)
            self.slots[tp], self.tps[slot] = (slot, keys), tp
            if keys:
                self.keyed.add(tp)
            self._assign()
            offset = self._resolve(tp, start)
            self.consumer.seek(tp, offset)
            self.positions[tp] = offset
            if start not in ("earliest", "latest"):  # a stored offset, which the partition may no longer hold
                self.unchecked.add(tp)
            self.results.send(("start", slot, offset))
        elif kind == "release":
            tp = self.tps.pop(slot)
            if rest and rest[0] is not None:
                try:
                    self.consumer.commit({tp: OffsetAndMetadata(rest[0], "", -1)}, timeout_ms=_FINAL_COMMIT_MS)
                except Exception as exc:  # noqa: BLE001 - informational, as the asynchronous commits are
                    self.results.send(("warning", None, f"committing offset {rest[0]} of {tp.topic}:{tp.partition} failed: {exc}"))
            del self.slots[tp]
            self.keyed.discard(tp)
            self.unchecked.discard(tp)
            self.positions.pop(tp, None)
            self.paused.pop(tp, None)
            self._assign()
        elif kind == "pause" and slot in self.tps:
            tp = self.tps[slot]
            self.paused[tp] = self.consumer.position(tp)
            self._assign()
        elif kind == "resume" and self.tps.get(slot) in self.paused:
            tp = self.tps[slot]
            offset = self.paused.pop(tp)
            self._assign()
            self.consumer.seek(tp, offset)
            self.positions[tp] = offset
        elif kind == "commit":
            tp = self.tps.get(slot)
            if tp is not None:
                self.consumer.commit_async({tp: OffsetAndMetadata(rest[0], "", -1)}, callback=self._committed)

    def _assign(self) -> None:
        """Fetch exactly the slots not paused (positions of partitions kept are kept)."""
        self.consumer.assign([tp for tp in self.slots if tp not in self.paused])

    def _resolve(self, tp: TopicPartition, start: Start) -> int:
        if isinstance(start, int):
            return start
        if start == "committed":
            committed = self._ask(lambda timeout_ms: self.consumer.committed(tp, timeout_ms=timeout_ms))
            if committed is not None:
                return committed
            start = "earliest"
        ask = self.consumer.beginning_offsets if start == "earliest" else self.consumer.end_offsets
        return self._ask(lambda timeout_ms: ask([tp], timeout_ms=timeout_ms))[tp]

    def _committed(self, offsets: Any, response: Any) -> None:
        if isinstance(response, Exception):
            self.results.send(("warning", None, f"committing offsets {offsets} failed: {response}"))

    def fetch(self) -> None:
        """One poll: its records as messages of at most ``batch_size`` records to the parent."""
        try:
            polled = self.consumer.poll(timeout_ms=_IDLE_POLL_MS, max_records=_CHUNKS_PER_POLL if self.chunks else self.batch_size)
        except KafkaOffsetOutOfRange as exc:  # kafka-python raises it only for records it has not returned yet
            for tp, offset in exc.args[0].items():
                self._out_of_range(tp, offset, stored=tp in self.unchecked)
            return
        send, highwater = self.results.send, self.consumer.highwater
        for tp, fetched in polled.items():
            entry = self.slots.get(tp)
            if entry is None or not fetched:
                continue
            slot = entry[0]
            self.highs[tp] = high = highwater(tp)
            for chunk in fetched if self.chunks else [_chunk(fetched, tp in self.keyed)]:
                offsets = chunk.offsets
                first = offsets[0]
                consecutive = offsets[-1] - first == len(offsets) - 1
                send(("batch", slot, first, None if consecutive else offsets, chunk.values, chunk.keys, high))
            self.positions[tp] = offsets[-1] + 1
            if self.unchecked:
                self.unchecked.discard(tp)
        if polled:
            self._answered()
        else:
            self._report_highs()
            self._check_positions()
            if time.monotonic() - self.heard >= _PROBE_AFTER_S:
                self._probe()

    def _probe(self) -> None:
        """Nothing came for a while: ask for the partitions' end offsets, to tell an idle topic from a cluster that does not answer."""
        tps = [tp for tp in self.slots if tp not in self.paused]
        try:
            self.consumer.end_offsets(tps, timeout_ms=_PROBE_TIMEOUT_MS)
        except KafkaError as exc:
            self._unanswered(exc)
            return
        self._answered()

    def _ask(self, question: Callable[[int], Any]) -> Any:
        """``question(timeout_ms)``'s answer from the cluster, asked again while it does not answer, for up to ``outage_timeout_s``."""
        while True:
            try:
                answer = question(_PROBE_TIMEOUT_MS)
            except KafkaError as exc:
                self._unanswered(exc)
                continue
            self._answered()
            return answer

    def _unanswered(self, exc: KafkaError) -> None:
        """A question timed out: tell the parent, or stop once the cluster has been silent for ``outage_timeout_s``."""
        if not (isinstance(exc, KafkaTimeoutError) or exc.retriable):
            raise exc
        silent = time.monotonic() - self.heard
        if silent >= self.outage_timeout_s:
            raise _Stop(f"the Kafka cluster at {self.servers} has not answered the consumer for {silent:.0f} s (kafka.outage_timeout_s); stopping", "outage")
        self.silent = True
        self.results.send(("down", None, silent))

    def _answered(self) -> None:
        self.heard = time.monotonic()
        if self.silent:
            self.silent = False
            self.results.send(("up", None))

    @property
    def servers(self) -> str:
        return servers_of(self.consumer.config)

    def _check_positions(self) -> None:
        """Positions past their partition's end: a stored offset the partition no longer holds, or a cluster back without its data.

        A Kafka broker answers a fetch there with OFFSET_OUT_OF_RANGE; some
        Kafka-protocol brokers (Tansu) answer with no records, for ever, so
        an idle partition compares its position with the fetches' end. (A
        partition refilled past the position meanwhile cannot be told.)
        """
        for tp in self.slots:
            if tp in self.paused:  # out of the consumer's assignment
                continue
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            position = self.positions[tp]
            if position > high:
                self._out_of_range(tp, position, stored=tp in self.unchecked)
            else:
                self.unchecked.discard(tp)

    def _out_of_range(self, tp: TopicPartition, offset: int, *, stored: bool) -> None:
        """``tp``'s fetch offset is outside the partition: stop (``error``) or seek to one of its ends, said out loud.

        ``stored``: the offset the partition started from (recovery state,
        committed). One this run read up to always stops the run: its
        learners remember offsets up to there and would skip the partition's
        new records as already learned; restarted, they move with it.
        """
        entry = self.slots.get(tp)
        if entry is None:
            return
        first = self._ask(lambda timeout_ms: self.consumer.beginning_offsets([tp], timeout_ms=timeout_ms))[tp]
        # a fetch's high watermark where known: Tansu's end offsets can lag it
        end = max(self._ask(lambda timeout_ms: self.consumer.end_offsets([tp], timeout_ms=timeout_ms))[tp], self.consumer.highwater(tp) or 0)
        where = out_of_range(tp.topic, tp.partition, offset, first, end)
        policy = self.offset_out_of_range
        if not stored:
            where += ", after this run read up to it: the cluster lost records, or retention deleted some not yet read"
            if policy != "error":
                raise _Stop(f"{where}; restarted, the service goes on from the partition's {'first' if policy == 'earliest' else 'next'} offset (kafka.offset_out_of_range={policy})", "offsets")
        if policy == "error":
            raise _Stop(f"{where}; {OUT_OF_RANGE_HINT}", "offsets")
        target = first if policy == "earliest" else end
        self.consumer.seek(tp, target)
        self.positions[tp] = target
        self.unchecked.discard(tp)
        self.results.send(("reset", entry[0], tp.topic, tp.partition, policy, target, f"{where}; kafka.offset_out_of_range={policy}: reading on from offset {target}"))

    def _report_highs(self) -> None:
        """End offsets that moved while nothing new arrived (for the lag gauge)."""
        for tp, (slot, _) in self.slots.items():
            if tp in self.paused:
                continue
            high = self.consumer.highwater(tp)
            if high is not None and high != self.highs.get(tp):
                self.highs[tp] = high
                self.results.send(("high", slot, high))


def _chunk(messages: list[Any], with_keys: bool) -> Chunk:
    """kafka-python's records (from a consumer :func:`~connectors.kafka_fetch.chunked` cannot serve) as one chunk."""
    return Chunk([m.offset for m in messages], [m.value for m in messages], [m.key for m in messages] if with_keys else None)


class _Stop(Exception):
    """The child stops: its message, and the kind of error the parent raises (``offsets``: :class:`OffsetOutOfRangeError`)."""


def _child_main(
    commands: Any, results: Any, client_config: dict[str, Any], batch_size: int, offset_out_of_range: str = "error", outage_timeout_s: float = OUTAGE_TIMEOUT_S
) -> None:
    """The fetch loop: apply the parent's commands, fetch, stop on ``None``."""
    servers = servers_of(client_config)
    try:
        # no automatic reset: an offset out of range is handled (and said) by _Child._out_of_range
        arguments = {"enable_auto_commit": False, "auto_offset_reset": "none", "fetch_max_wait_ms": FETCH_MAX_WAIT_MS, **client_config}
        consumer = through_outage(lambda: KafkaConsumer(**arguments), outage_timeout_s)
    except Exception as exc:  # noqa: BLE001 - any client error is reported to the parent
        results.send(("error", None, f"cannot start a Kafka consumer for {servers}: {type(exc).__name__}: {exc}"))
        return
    child = _Child(consumer, results, batch_size, offset_out_of_range, outage_timeout_s)
    try:
        while True:
            while commands.poll(0 if child.fetching else 0.2):
                message = commands.recv()
                if message is None:
                    return
                child.handle(message)
            if child.fetching:
                child.fetch()
    except (EOFError, OSError):
        pass  # the parent is gone
    except _Stop as stop:
        results.send(("error", None, *stop.args))
    except Exception as exc:  # noqa: BLE001
        results.send(("error", None, f"the Kafka consumer failed ({servers}): {type(exc).__name__}: {exc}"))
    finally:
        consumer.close()
