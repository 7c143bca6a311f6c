"""The fast Kafka record paths write and read exactly what kafka-python's own code does.

They bypass kafka-python internals (3.0.x; see connectors/kafka_append.py and
connectors/kafka_fetch.py): these tests compare them, byte for byte or
record for record, with kafka-python's own builder, accumulator and
fetcher reader, so an upgrade that changes those internals fails here.
"""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka import errors as Errors
from kafka.consumer.fetcher import Fetcher
from kafka.producer.record_accumulator import RecordAccumulator
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from kafka.record.util import calc_crc32c, decode_varint, encode_varint

from connectors.kafka_append import BulkAppender, can_bulk_append
from connectors.kafka_fetch import Chunk, chunked
from connectors.kafka_records import TABLE_SIZE, RecordEncoder, decode_records, estimated_size, varint, zigzag_varint

TS = 1_700_000_000_000
TP = TopicPartition("t", 0)


def _pairs(n: int, seed: int = 1) -> list[tuple[bytes | None, bytes | None]]:
    """Records of every shape: null and empty keys and values, one- to three-byte length varints."""
    rng = random.Random(seed)
    keys = [None, b"", b"k", b"model-7", b"x" * 70, b"y" * 9000]
    sizes = [0, 1, 60, 63, 64, 200, 8191, 8192, 20000]
    pairs = []
    for i in range(n):
        value = None if i % 17 == 5 else bytes(rng.randrange(256) for _ in range(rng.choice(sizes) if i % 5 == 0 else rng.randrange(30, 140)))
        pairs.append((rng.choice(keys), value))
    return pairs


def _builder_bytes(pairs: list[Any], timestamps: list[int]) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for offset, ((key, value), ts) in enumerate(zip(pairs, timestamps)):
        builder.append(offset, ts, key, value, [])
    return bytes(builder._buffer[DefaultRecordBatchBuilder.HEADER_STRUCT.size :])


def test_encoded_records_are_the_bytes_kafka_pythons_builder_writes() -> None:
    pairs = _pairs(300)
    data, n, largest = RecordEncoder().encode(pairs, 0, 0, 0, room=1 << 30, first=True)
    assert n == 300 and data == _builder_bytes(pairs, [TS] * 300)
    # a run appended after a first record, later (timestamp delta), from a later offset
    first = _builder_bytes(pairs[:1], [TS])
    data, n, _ = RecordEncoder().encode(pairs, 1, 1, 7, room=1 << 30, first=False)
    assert first + data == _builder_bytes(pairs, [TS] + [TS + 7] * 299)
    assert largest == max(len(varint(len(r))) + len(r) for r in _records(_builder_bytes(pairs, [TS] * 300)))


def _records(section: bytes) -> list[bytes]:
    """Each record's body (after its length) in a record section."""
    out, pos = [], 0
    while pos < len(section):
        length, start = decode_varint(section, pos)  # kafka-python's own reader, not the module under test
        out.append(section[start : start + length])
        pos = start + length
    return out


def test_the_encoder_stops_where_the_room_ends_but_always_fills_an_empty_batch() -> None:
    encoder = RecordEncoder()
    pairs = [(b"k", b"v" * 100)] * 10
    one = len(encoder.encode(pairs, 0, 0, 0, room=1 << 30, first=True)[0]) // 10
    assert encoder.encode(pairs, 0, 0, 0, room=3 * one + 5, first=False)[1] == 3
    assert encoder.encode(pairs, 0, 0, 0, room=10, first=False)[1] == 0
    assert encoder.encode(pairs, 0, 0, 0, room=10, first=True)[1] == 1
    with pytest.raises(TypeError):
        encoder.encode([("text", b"v")], 0, 0, 0, room=1 << 30, first=True)  # type: ignore[list-item]


def test_the_varint_table_holds_kafka_pythons_varints() -> None:
    for n in list(range(TABLE_SIZE)) + [TABLE_SIZE, 1 << 21, 1 << 40, -1, -2, -(1 << 20)]:
        written = bytearray()
        encode_varint(n, written.append)
        assert varint(n) == zigzag_varint(n) == written, n


def test_estimated_size_is_kafka_pythons() -> None:
    for key, value in _pairs(200):
        assert estimated_size(key, value) == DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])


# --- appending to the accumulator ---------------------------------------------------------------


def _producer(batch_size: int, max_request_size: int = 1 << 20) -> Any:
    """What BulkAppender uses of a KafkaProducer: a real accumulator, and a sender that counts its wake-ups."""
    accumulator = RecordAccumulator(batch_size=batch_size, linger_ms=5, message_version=2)
    wakeups = []
    return SimpleNamespace(
        _accumulator=accumulator,
        _sender=SimpleNamespace(wakeup=lambda: wakeups.append(1)),
        _closed=False,
        _transaction_manager=None,
        config={"max_request_size": max_request_size},
        wakeups=wakeups,
    )


def _closed_batches(producer: Any, tp: TopicPartition = TP) -> list[Any]:
    """The partition's batches, given a producer state (as the sender does on drain) and closed."""
    batches = list(producer._accumulator._batches[tp])
    sequence = 0
    for batch in batches:
        batch.records.set_producer_state(4242, 3, sequence, False)
        sequence += batch.records.next_offset()
        batch.records.close()
    return batches


@pytest.mark.parametrize("batch_size", [512, 16384, 1 << 20])
def test_bulk_appended_batches_equal_kafka_pythons_byte_for_byte(batch_size: int) -> None:
    pairs = _pairs(400, seed=batch_size)
    ours, theirs = _producer(batch_size), _producer(batch_size)
    # both start with records from the ordinary path, one earlier
    for producer in (ours, theirs):
        producer._accumulator.append(TP, TS, b"k0", b"started by send()", [])
    runs = [pairs[:1], pairs[1:150], pairs[150:151], pairs[151:]]
    futures = []
    appender = BulkAppender(ours)  # type: ignore[arg-type]
    for i, run in enumerate(runs):
        futures += appender.append("t", 0, run, timestamp_ms=TS + 3 + i)
        for key, value in run:
            theirs._accumulator.append(TP, TS + 3 + i, key, value, [])
    mine, reference = _closed_batches(ours), _closed_batches(theirs)
    assert len(mine) == len(reference) > (1 if batch_size < 1 << 20 else 0)
    for a, b in zip(mine, reference):
        assert bytes(a.records.buffer()) == bytes(b.records.buffer())
        assert a.record_count == b.record_count and a.max_record_size == b.max_record_size
        assert len(a._record_futures) == a.record_count  # one entry per record, as batch splitting expects
    run_futures = {id(f) for batch in mine for f in batch._record_futures} - {id(mine[0]._record_futures[0])}  # less send()'s own
    assert run_futures == {id(f) for f in futures} and len(futures) == len(run_futures)  # one per run and batch
    assert bool(ours.wakeups) == (len(mine) > 1)  # a new batch (the previous one full) wakes the sender


def test_read_back_the_bulk_appended_records_are_the_ones_sent() -> None:
    pairs = _pairs(500, seed=3)
    producer = _producer(4096)
    BulkAppender(producer).append("t", 0, pairs)  # type: ignore[arg-type]
    read = [(r.key, r.value) for batch in _closed_batches(producer) for rb in MemoryRecords(bytes(batch.records.buffer())) for r in rb]
    assert read == pairs


def test_a_run_future_completes_with_its_batch_and_fails_with_it() -> None:
    producer = _producer(1 << 20)
    appender = BulkAppender(producer)  # type: ignore[arg-type]
    (future,) = appender.append("t", 0, [(b"k", b"v")] * 10)
    (batch,) = _closed_batches(producer)  # drained by the sender ...
    producer._accumulator._batches[TP].clear()
    assert not future.is_done
    batch.complete(100, -1)  # ... and acknowledged
    assert future.succeeded() and future.value.offset == 100
    (future,) = appender.append("t", 0, [(b"k", b"v")] * 10)
    (batch,) = producer._accumulator._batches[TP]
    batch.complete_exceptionally(Errors.NotEnoughReplicasError(), lambda index: Errors.NotEnoughReplicasError())
    assert future.failed() and isinstance(future.exception, Errors.NotEnoughReplicasError)


@pytest.mark.parametrize("fail_part", [None, 0, 1])
def test_a_batch_the_broker_finds_too_large_is_split_and_the_run_future_follows_every_part(fail_part: int | None) -> None:
    producer = _producer(1 << 20)
    (future,) = BulkAppender(producer).append("t", 0, [(b"k", b"v%d" % i) for i in range(10)])  # type: ignore[arg-type]
    accumulator = producer._accumulator
    batch = accumulator._batches[TP].popleft()  # drained and sent ...
    batch.records.close()
    accumulator.split_and_reenqueue(batch)  # ... and refused: MESSAGE_TOO_LARGE
    accumulator.deallocate(batch)
    parts = list(accumulator._batches[TP])
    assert len(parts) == 2 and future.split and not future.is_done
    for i, part in enumerate(parts):
        if i == fail_part:
            part.complete_exceptionally(Errors.KafkaTimeoutError(), lambda index: Errors.KafkaTimeoutError())
        else:
            part.complete(10 * i, -1)
    assert future.is_done and future.failed() == (fail_part is not None)  # whichever part failed, first or last


def test_too_large_records_and_closed_producers_are_refused_as_send_refuses_them() -> None:
    producer = _producer(1 << 20, max_request_size=1000)
    appender = BulkAppender(producer)  # type: ignore[arg-type]
    appender.append("t", 0, [(b"k", b"v" * 900)])
    with pytest.raises(Errors.MessageSizeTooLargeError):
        appender.append("t", 0, [(b"k", b"v" * 990)])
    producer._closed = True
    with pytest.raises(Errors.IllegalStateError):
        appender.append("t", 0, [(b"k", b"v")])


def test_bulk_append_needs_v2_batches_outside_transactions() -> None:
    producer = _producer(1024)
    assert can_bulk_append(producer)
    producer._transaction_manager = SimpleNamespace(is_transactional=lambda: True)
    assert not can_bulk_append(producer)
    producer._transaction_manager, producer._accumulator.config["message_version"] = None, 1
    assert not can_bulk_append(producer)


def test_the_fast_paths_step_aside_for_a_kafka_python_whose_internals_they_do_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    import kafka

    from connectors.kafka_fetch import can_chunk

    producer = _producer(1024)
    consumer = SimpleNamespace(config={"key_deserializer": None, "value_deserializer": None, "isolation_level": "read_uncommitted"})
    assert can_bulk_append(producer) and can_chunk(consumer)
    monkeypatch.setattr(kafka, "__version__", "3.1.0")
    assert not can_bulk_append(producer) and not can_chunk(consumer)  # the children then use kafka-python's public API


# --- decoding ---------------------------------------------------------------------------------


def _batch(records: list[tuple[int, bytes | None, bytes | None, list[Any]]], base: int = 0, compression: int = 0, control: bool = False) -> bytes:
    """A v2 batch of ``(offset delta, key, value, headers)`` records at base offset ``base``."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=compression, is_transactional=False, producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for delta, key, value, headers in records:
        builder.append(delta, TS + delta, key, value, headers)
    buffer = builder.build()
    struct.pack_into(">q", buffer, 0, base)
    if control:
        attributes_at = DefaultRecordBatch.ATTRIBUTES_OFFSET
        struct.pack_into(">h", buffer, attributes_at, struct.unpack_from(">h", buffer, attributes_at)[0] | DefaultRecordBatch.CONTROL_MASK)
        struct.pack_into(">I", buffer, DefaultRecordBatch.CRC_OFFSET, calc_crc32c(memoryview(buffer)[attributes_at:]))
    return bytes(buffer)


def _with_headers(n: int) -> list[tuple[int, bytes | None, bytes | None, list[Any]]]:
    pairs = _pairs(n, seed=9)
    return [(2 * i, key, value, [("h", b"\x00\x01"), ("e", None)] if i % 4 == 1 else []) for i, (key, value) in enumerate(pairs)]


def test_decoded_records_are_what_kafka_pythons_reader_reads() -> None:
    buffer = _batch(_with_headers(300), base=1000)  # offsets with gaps (as after compaction), headers, every length
    expected = list(DefaultRecordBatch(buffer))
    offsets, keys, values = decode_records(buffer[61:], 300, 1000, True)
    assert offsets == [r.offset for r in expected] and keys == [r.key for r in expected] and values == [r.value for r in expected]
    assert decode_records(buffer[61:], 300, 1000, False)[1] is None
    with pytest.raises(ValueError):
        decode_records(buffer[61:] + b"\x00", 300, 1000, False)  # left-over bytes
    with pytest.raises((ValueError, IndexError)):
        decode_records(buffer[61:-3], 300, 1000, False)  # truncated


def _read(cls: Any, fetch_offset: int, data: bytes, max_records: int) -> tuple[list[Any], int]:
    """Everything a PartitionRecords class hands out, taken ``max_records`` at a time, and the offset to fetch next."""
    part = cls(fetch_offset, TP, MemoryRecords(data), check_crcs=True)
    taken = []
    while part:
        taken += part.take(max_records)
    return taken, part.next_fetch_offset


@pytest.mark.parametrize("compression", [0, 1])
@pytest.mark.parametrize("fetch_offset", [0, 37, 1000, 1061])
def test_chunked_fetches_hand_out_the_records_and_next_offset_of_kafka_pythons_fetcher(compression: int, fetch_offset: int) -> None:
    data = (
        _batch(_with_headers(40), base=0, compression=compression)  # offsets 0, 2, .. 78
        + _batch([(0, None, b"\x00\x00\x00\x00\x00\x00", [])], base=79, control=True)  # a transaction marker
        + _batch([(i, b"k", b"v%d" % i, []) for i in range(0, 600, 3)], base=1000, compression=compression)
        + _batch([(0, b"k", b"last", []), (5, None, None, [])], base=1600)[:-4]  # a batch cut short by the fetch size: not handed out
    )
    consumer = SimpleNamespace(config={"key_deserializer": None, "value_deserializer": None, "isolation_level": "read_uncommitted"}, _fetcher=SimpleNamespace())
    chunked(consumer, 64, keyed={TP})  # type: ignore[arg-type]
    chunks, ours_next = _read(consumer._fetcher.PartitionRecords, fetch_offset, data, 1)
    theirs, their_next = _read(Fetcher.PartitionRecords, fetch_offset, data, 100)
    assert all(isinstance(c, Chunk) and 0 < len(c.offsets) <= 64 for c in chunks)
    assert [o for c in chunks for o in c.offsets] == [r.offset for r in theirs]
    assert [v for c in chunks for v in c.values] == [r.value for r in theirs]
    assert [k for c in chunks for k in c.keys or []] == [r.key for r in theirs]
    assert ours_next == their_next == 1598


def test_a_corrupt_batch_fails_the_chunked_fetch_as_it_fails_kafka_pythons() -> None:
    data = bytearray(_batch([(i, b"k", b"value", []) for i in range(10)]))
    data[-2] ^= 0xFF
    consumer = SimpleNamespace(config={"key_deserializer": None, "value_deserializer": None, "isolation_level": "read_uncommitted"}, _fetcher=SimpleNamespace())
    chunked(consumer, 64)  # type: ignore[arg-type]
    for cls in (consumer._fetcher.PartitionRecords, Fetcher.PartitionRecords):
        with pytest.raises(Errors.CorruptRecordError):
            _read(cls, 0, bytes(data), 100)
    with pytest.raises(ValueError):
        chunked(SimpleNamespace(config={**consumer.config, "isolation_level": "read_committed"}), 64)  # type: ignore[arg-type]


@pytest.mark.parametrize("compression", [0, 1])
def test_chunked_fetches_read_old_message_formats_as_kafka_python_does(compression: int) -> None:
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=compression, batch_size=1 << 20)
    for offset in range(50):
        builder.append(offset, TS, None if offset % 4 else b"k", b"v%d" % offset)
    data = bytes(builder.build())
    consumer = SimpleNamespace(config={"key_deserializer": None, "value_deserializer": None, "isolation_level": "read_uncommitted"}, _fetcher=SimpleNamespace())
    chunked(consumer, 16, keyed={TP})  # type: ignore[arg-type]
    chunks, ours_next = _read(consumer._fetcher.PartitionRecords, 10, data, 1)
    theirs, their_next = _read(Fetcher.PartitionRecords, 10, data, 100)
    assert [(o, k, v) for c in chunks for o, k, v in zip(c.offsets, c.keys or [], c.values)] == [(r.offset, r.key, r.value) for r in theirs]
    assert len(theirs) == 40 and ours_next == their_next == 50
