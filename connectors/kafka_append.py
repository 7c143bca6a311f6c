"""Whole runs of records appended to a kafka-python producer's batches, one future per run.

``KafkaProducer.send()`` runs pure Python for every record (argument
and type checks, serializers, partitioner, metadata check, the
accumulator's locks, a ``FutureRecordMetadata`` per record, and
``DefaultRecordBatchBuilder.append``), and the sender thread completes one
future per record on every acknowledgement. :class:`BulkAppender` appends a
run of records bound for one partition as one encoded block
(:class:`~connectors.kafka_records.RecordEncoder`) into the same
accumulator batches ``send()`` fills, under the same per-partition lock,
with one ``FutureRecordMetadata`` per run and batch. Everything after the
append stays kafka-python's: linger and batch sizes, compression, the
idempotent producer id, epoch and sequence numbers (the sender sets them
on each batch when it drains it), retries, ``acks=all``, ``flush()``,
delivery timeouts and batch splitting.

Relies on kafka-python 3.0.x internals (read in 3.0.12):
``KafkaProducer._accumulator`` / ``_sender`` / ``_transaction_manager``;
``RecordAccumulator`` ``config``, ``_closed``, ``_tp_lock``, ``_batches``,
``_incomplete`` and ``_appends_in_progress``; ``ProducerBatch``
``records``, ``produce_future``, ``_record_futures`` (one entry per record,
rebound by ``split_and_reenqueue`` through ``FutureRecordMetadata.rebind``),
``max_record_size`` and ``last_append``; ``MemoryRecordsBuilder._builder`` / ``_next_offset``; and
``DefaultRecordBatchBuilder`` ``_buffer``, ``_num_records``,
``_last_offset``, ``_first_timestamp``, ``_max_timestamp``, ``_batch_size``.
``tests/unit/test_kafka_records.py`` fails if any of them changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka import errors as Errors
from kafka.producer.future import FutureRecordMetadata
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

from connectors.kafka_records import ESTIMATE_OVERHEAD, Pair, RecordEncoder, estimated_size, fast_paths

# A record's kafka-python size estimate exceeds its encoded size by at most this (see _check_sizes).
_ESTIMATE_SLACK = ESTIMATE_OVERHEAD - 3


def can_bulk_append(producer: KafkaProducer) -> bool:
    """Whether the fast paths are on and ``producer`` writes v2 batches outside transactions (idempotent or not), as :class:`BulkAppender` needs."""
    if not fast_paths():
        return False
    manager = producer._transaction_manager
    return producer._accumulator.config["message_version"] == 2 and not (manager is not None and manager.is_transactional())


class RunFuture(FutureRecordMetadata):
    """The future of a run of records appended to one batch: it completes, or fails, with the batch.

    If the broker refuses the batch as too large, kafka-python splits it and
    rebinds the future of each of its records to the part now holding it:
    the run's future, once per record, to each part. It then completes with
    the first part and fails if any part fails, so it is ``split``: final
    only once every batch is, e.g. after ``flush()``.
    """

    __slots__ = ("split",)

    def __init__(self, *args: Any) -> None:
        self.split = False
        super().__init__(*args)

    def rebind(self, new_produce_future: Any, new_batch_index: int) -> None:
        self.split = True
        super().rebind(new_produce_future, new_batch_index)


class BulkAppender:
    """Appends runs of ``(key, value)`` records to one partition of a producer that :func:`can_bulk_append` accepts."""

    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer
        self._accumulator = producer._accumulator
        self._encoder = RecordEncoder()
        self._max_request_size = producer.config["max_request_size"]

    def append(self, topic: str, partition: int, pairs: Sequence[Pair], timestamp_ms: int | None = None) -> list[RunFuture]:
        """Append ``pairs`` in order to ``topic:partition``, stamped ``timestamp_ms`` (default: now); one future per batch they landed in.

        Each future completes when its batch is acknowledged, or fails with
        the batch's error, like the futures ``send()`` returns. The caller
        has made sure the partition exists (as ``send()`` does).
        """
        if self._producer._closed:
            raise Errors.IllegalStateError("KafkaProducer already closed!")
        accumulator, encoder = self._accumulator, self._encoder
        tp = TopicPartition(topic, partition)
        timestamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        now = time.monotonic()
        futures: list[RunFuture] = []
        wake = False
        accumulator._appends_in_progress.increment()
        try:
            with accumulator._tp_lock(tp):
                if accumulator._closed:
                    raise Errors.IllegalStateError("RecordAccumulator is closed")
                dq = accumulator._batches[tp]
                start, total = 0, len(pairs)
                batch = dq[-1] if dq and not dq[-1].records.is_full() else None
                while start < total:
                    fresh = batch is None
                    if batch is None:
                        batch = self._new_batch(tp, now)
                    records = batch.records
                    builder = records._builder
                    first_timestamp = builder._first_timestamp
                    delta = 0 if first_timestamp is None else timestamp - first_timestamp
                    room = builder._batch_size - len(builder._buffer)
                    data, n, largest = encoder.encode(pairs, start, records._next_offset, delta, room, fresh)
                    if n:
                        if largest + _ESTIMATE_SLACK > self._max_request_size:
                            self._check_sizes(pairs[start : start + n])
                        if fresh:
                            dq.append(batch)
                            accumulator._incomplete.add(batch)
                            wake = True
                        futures.append(self._extend(batch, data, n, largest, timestamp, now))
                        start += n
                    if start < total:  # the batch is full
                        batch = None
                if dq and (len(dq) > 1 or dq[-1].records.is_full()):
                    wake = True
        finally:
            accumulator._appends_in_progress.decrement()
        if wake:
            self._producer._sender.wakeup()
        return futures

    def _new_batch(self, tp: TopicPartition, now: float) -> ProducerBatch:
        config = self._accumulator.config
        return ProducerBatch(tp, MemoryRecordsBuilder(config["message_version"], config["compression_attrs"], config["batch_size"]), now=now)

    @staticmethod
    def _extend(batch: ProducerBatch, data: bytes, n: int, largest: int, timestamp: int, now: float) -> RunFuture:
        """Write ``n`` encoded records into the batch, as ``n`` calls of ``ProducerBatch.try_append`` would."""
        records = batch.records
        builder = records._builder
        offset = records._next_offset
        builder._buffer += data
        builder._num_records += n
        builder._last_offset = offset + n - 1
        if builder._first_timestamp is None:
            builder._first_timestamp = builder._max_timestamp = timestamp
        elif builder._max_timestamp < timestamp:
            builder._max_timestamp = timestamp
        records._next_offset = offset + n
        batch.max_record_size = max(batch.max_record_size, largest)
        batch.last_append = now
        future = RunFuture(batch.produce_future, offset, timestamp, None, -1, -1, -1)
        batch._record_futures.extend([future] * n)  # one entry per record, as send() leaves them (see RunFuture)
        return future

    def _check_sizes(self, pairs: Sequence[Pair]) -> None:
        """Refuse a record larger than ``max_request_size``, as ``send()`` does."""
        for key, value in pairs:
            size = estimated_size(key, value)
            if size > self._max_request_size:
                raise Errors.MessageSizeTooLargeError(
                    f"The message is {size} bytes when serialized which is larger than the maximum request size you have configured with the max_request_size configuration"
                )

