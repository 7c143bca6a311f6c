"""A kafka-python consumer that hands out fetched records in chunks of parallel lists, not one object per record.

kafka-python's fetcher turns every record into a ``DefaultRecord`` and then
a ``ConsumerRecord``, reading each varint through a function call: pure
Python per record, which is most of what the consumer child does.
:func:`chunked` replaces, on one consumer, the fetcher's per-partition
record reader (``Fetcher.PartitionRecords``) with one that keeps
kafka-python's batch handling (CRC check, decompression, control batches,
skipping records before the fetch offset, the next fetch offset after each
batch) but decodes each v2 batch's records in one tight loop
(:func:`connectors.kafka_records.decode_records`) and yields
:class:`Chunk`\\ s of at most ``size`` records. ``poll()`` then returns
``{partition: [Chunk, ...]}`` and its ``max_records`` counts chunks; the
consumer's position still advances record by record as chunks are taken.

Only for consumers without deserializers that read uncommitted records
(:func:`can_chunk`): the others keep kafka-python's reader.

Relies on kafka-python 3.0.x internals (read in 3.0.12): the consumer's
``_fetcher``, whose ``PartitionRecords`` class attribute it instantiates per
fetched partition with ``(fetch_offset, tp, records, **options)``; that
class's ``_unpack_records`` generator (given a ``MemoryRecords``) and
``_maybe_skip_record``, and its fields ``fetch_offset``,
``next_fetch_offset``, ``leader_epoch``, ``check_crcs``, ``records_read``,
``bytes_read``, ``drain()``; ``DefaultRecordBatch._maybe_uncompress``,
``_buffer`` and ``_pos``. ``tests/unit/test_kafka_records.py`` fails if
they change.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka import errors as Errors
from kafka.consumer.fetcher import Fetcher

from connectors.kafka_records import decode_records, fast_paths


@dataclass
class Chunk:
    """Consecutive records of one partition (offsets increasing, not necessarily contiguous)."""

    offsets: list[int]
    values: list[bytes | None]
    keys: list[bytes | None] | None


def can_chunk(consumer: KafkaConsumer) -> bool:
    """Whether :func:`chunked` may serve ``consumer``: the fast paths on, raw bytes, uncommitted reads."""
    config = consumer.config
    return fast_paths() and config["key_deserializer"] is None and config["value_deserializer"] is None and config["isolation_level"] == "read_uncommitted"


def chunked(consumer: KafkaConsumer, size: int, keyed: Container[TopicPartition] = ()) -> KafkaConsumer:
    """Make ``consumer.poll()`` return :class:`Chunk`\\ s of at most ``size`` records; returns it.

    Chunks carry keys for the partitions in ``keyed`` (looked up at each
    fetch: a live set may change), ``None`` for the others.
    """
    if not can_chunk(consumer):
        raise ValueError("only a consumer without deserializers reading uncommitted records can return chunks")
    consumer._fetcher.PartitionRecords = type("ChunkedPartitionRecords", (_ChunkedPartitionRecords,), {"chunk_size": size, "keyed": keyed})
    return consumer


class _ChunkedPartitionRecords(Fetcher.PartitionRecords):
    """kafka-python's reader of one partition's fetched records, yielding chunks.

    Batches are decoded one at a time and their records handed out
    ``chunk_size`` at a time, a chunk spanning batches where they are
    small. The last chunk of the fetched data drains the reader before it
    is handed out, so that the same poll fetches the partition again.
    """

    chunk_size: int = 1000
    keyed: Container[TopicPartition] = ()

    def _maybe_skip_record(self, record: Any) -> bool:
        return False  # _read_batch drops the records before the fetch offset itself

    def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Iterator[Chunk]:
        size = self.chunk_size
        offsets: list[int] = []
        values: list[bytes | None] = []
        keys: list[bytes | None] | None = [] if tp in self.keyed else None
        end: int = self.next_fetch_offset  # type: ignore[has-type]  # kafka-python's field, set in its __init__ untyped
        batch = records.next_batch()
        while batch is not None:
            end = self._read_batch(tp, batch, offsets, keys, values, end)
            batch = records.next_batch()
            while len(offsets) >= size or (batch is None and offsets):
                chunk = Chunk(offsets[:size], values[:size], keys[:size] if keys is not None else None)
                del offsets[:size], values[:size]
                if keys is not None:
                    del keys[:size]
                self.records_read += len(chunk.offsets)
                if batch is None and not offsets:  # the last one
                    self.next_fetch_offset = end
                    self.drain()
                else:
                    self.next_fetch_offset = chunk.offsets[-1] + 1
                yield chunk
        self.next_fetch_offset = end
        self.drain()

    def _read_batch(self, tp: Any, batch: Any, offsets: list[int], keys: list[bytes | None] | None, values: list[bytes | None], end: int) -> int:
        """Add the batch's records from the fetch offset on to the lists; return the offset to fetch after it."""
        if self.check_crcs and not batch.validate_crc():
            raise Errors.CorruptRecordError(f"Record batch for partition {tp} at offset {batch.base_offset} failed crc check")
        self.bytes_read += batch.size_in_bytes
        if batch.magic == 2:
            self.leader_epoch = batch.leader_epoch
            if batch.is_control_batch:  # a transaction marker, not a record
                return batch.next_offset
            batch_offsets, batch_keys, batch_values = _decode(batch, tp, keys is not None)
            # A v2 batch keeps its last offset even when compaction removed its last records: resume after it.
            end = batch.next_offset
        else:  # message format v0/v1: kafka-python's own reader
            legacy = list(batch)
            if self.check_crcs and not all(r.validate_crc() for r in legacy):
                raise Errors.CorruptRecordError(f"A record for partition {tp} in the batch at offset {batch.base_offset} failed crc check")
            batch_offsets, batch_values = [r.offset for r in legacy], [r.value for r in legacy]
            batch_keys = [r.key for r in legacy] if keys is not None else None
            if legacy:
                end = batch_offsets[-1] + 1
        start = bisect_left(batch_offsets, self.fetch_offset)  # a compressed batch comes whole, maybe from before the fetch offset
        offsets += batch_offsets[start:]
        values += batch_values[start:]
        if keys is not None:
            keys += batch_keys[start:]  # type: ignore[index]
        return end


def _decode(batch: Any, tp: Any, with_keys: bool) -> tuple[list[int], list[bytes | None] | None, list[bytes | None]]:
    batch._maybe_uncompress()
    data = bytes(memoryview(batch._buffer)[batch._pos :])
    try:
        offsets, keys, values = decode_records(data, batch.records_count, batch.base_offset, with_keys)
    except (ValueError, IndexError) as exc:
        raise Errors.CorruptRecordError(f"Found invalid record structure in partition {tp} at offset {batch.base_offset}: {exc!r}") from None
    return offsets, keys, values
