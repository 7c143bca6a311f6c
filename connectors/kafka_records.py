"""Kafka v2 records (message format 2, KIP-98) encoded and decoded a run of records at a time.

kafka-python encodes each record on its own: type checks, a ``bytearray``
grown byte by byte through ``encode_varint`` callbacks, a size check, a
``DefaultRecordMetadata``: pure Python per record.
:class:`RecordEncoder` writes the records of a run ``(key, value), ...`` as
one ``bytes``, with every varint taken from a precomputed table and each
distinct key's length prefix computed once. The bytes are exactly those
``DefaultRecordBatchBuilder.append`` writes for the same records with no
headers and one timestamp (``tests/unit/test_kafka_records.py`` checks it),
so the batch around them (header, CRC, compression) is still kafka-python's.
:func:`decode_records` reads a batch's records back in one loop, where
kafka-python builds two objects and calls ``decode_varint`` six times per
record.

A v2 record is ``length, attributes (one byte, 0), timestamp delta, offset
delta, key length, key, value length, value, header count, headers``; every
integer but the attributes is a zigzag varint, and a null key or value has
length -1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import islice

import kafka

from stream_learner.errors import ConfigError

INTERNALS_VERSION = "3.0."
"""The kafka-python releases whose internals the fast paths (:mod:`connectors.kafka_append`,
:mod:`connectors.kafka_fetch`) were written against (pyproject pins this range); elsewhere the children use the public API."""

FAST_PATHS_ENV = "STREAM_LEARNER_KAFKA_FAST_PATHS"
"""``0`` turns every fast path off: the children use kafka-python's public API alone."""


def internals_known() -> bool:
    """Whether the installed kafka-python is one whose internals the fast paths rely on."""
    return kafka.__version__.startswith(INTERNALS_VERSION)


def fast_paths() -> bool:
    """Whether the fast paths may serve: :data:`FAST_PATHS_ENV` is not ``0`` and :func:`internals_known`.

    Another value of :data:`FAST_PATHS_ENV` than ``0`` or ``1`` is a :class:`~stream_learner.errors.ConfigError`.
    """
    value = os.environ.get(FAST_PATHS_ENV, "1")
    if value not in ("0", "1"):
        raise ConfigError(f"{FAST_PATHS_ENV} must be 0 (kafka-python's public API only) or 1 (the default), not {value!r}")
    return value == "1" and internals_known()


Pair = tuple[bytes | None, bytes | None]

NULL = b"\x01"  # the zigzag varint of -1: a null key or value
NO_HEADERS = b"\x00"
# The smallest batch header (61 bytes) plus kafka-python's per-record overhead bound (21): its record-size estimate, less key and value.
ESTIMATE_OVERHEAD = 61 + 21


def zigzag_varint(n: int) -> bytes:
    """``n`` as a Kafka (zigzag, little-endian base-128) varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


TABLE_SIZE = 1 << 14  # record lengths and offset deltas below this (all but huge records and batches) come from the table
# zigzag_varint(i) for every i below TABLE_SIZE (z = 2i): one, two or three bytes, written out rather than by calling
# zigzag_varint, because the service and both Kafka children import this module at their start
VARINTS = [
    bytes((z,)) if z < 0x80 else bytes(((z & 0x7F) | 0x80, z >> 7)) if z < 0x4000 else bytes(((z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, z >> 14))
    for z in range(0, 2 * TABLE_SIZE, 2)
]


def varint(n: int) -> bytes:
    return VARINTS[n] if 0 <= n < TABLE_SIZE else zigzag_varint(n)


class RecordEncoder:
    """Encodes runs of records; remembers the length prefix of each key it met (model keys are few).

    Keys and values are ``bytes`` or ``None`` (what the producer process is handed).
    """

    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._keys: dict[bytes | None, bytes] = {None: NULL}

    def _key_prefix(self, key: bytes) -> bytes:
        if type(key) is not bytes:
            raise TypeError(f"Not supported type for key: {type(key)}")
        if len(self._keys) > self.MAX_KEYS:
            self._keys = {None: NULL}
        prefix = self._keys[key] = varint(len(key)) + key
        return prefix

    def encode(self, pairs: Sequence[Pair], start: int, offset: int, timestamp_delta: int, room: int, first: bool) -> tuple[bytes, int, int]:
        """Encode ``pairs[start:]`` from offset delta ``offset`` while they fit in ``room`` bytes.

        ``first``: the batch is empty, so the first record goes in even if it
        is larger than ``room`` (as kafka-python does). Returns the bytes, the
        number of records encoded and the largest record's size.
        """
        keys, table, size_limit = self._keys, VARINTS, TABLE_SIZE
        head = b"\x00" + varint(timestamp_delta)  # attributes, timestamp delta
        fixed = len(head) + 1  # and the header count
        parts: list[bytes] = []
        extend = parts.extend
        used = largest = 0
        end = offset
        for key, value in islice(pairs, start, None):
            key_part = keys.get(key)
            if key_part is None:
                key_part = self._key_prefix(key)  # type: ignore[arg-type]
            if value is None:
                value_part, length = NULL, 0
                value = b""
            else:
                length = len(value)
                value_part = table[length] if length < size_limit else zigzag_varint(length)
            offset_part = table[end] if end < size_limit else zigzag_varint(end)
            body = fixed + len(offset_part) + len(key_part) + len(value_part) + length
            length_part = table[body] if body < size_limit else zigzag_varint(body)
            total = len(length_part) + body
            if used + total > room and (used or not first):
                break
            extend((length_part, head, offset_part, key_part, value_part, value, NO_HEADERS))
            used += total
            end += 1
            if total > largest:
                largest = total
        return b"".join(parts), end - offset, largest


def estimated_size(key: bytes | None, value: bytes | None) -> int:
    """kafka-python's upper bound on a header-less record's size in a batch of its own (``estimate_size_in_bytes``)."""
    return ESTIMATE_OVERHEAD + sum(1 if part is None else len(varint(len(part))) + len(part) for part in (key, value)) + 1


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint of any length at ``pos``: its value and the position after it."""
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift >= 64:
            raise ValueError("varint out of int64 range")


def decode_records(data: bytes, count: int, base_offset: int, with_keys: bool) -> tuple[list[int], list[bytes | None] | None, list[bytes | None]]:
    """The offsets, keys (if ``with_keys``) and values of the ``count`` v2 records that make up ``data``.

    ``data`` is a batch's (uncompressed) record section. Headers are checked
    and skipped. Raises ``ValueError`` or ``IndexError`` on a malformed
    record, or if bytes are left over (as kafka-python's reader does);
    timestamps are not returned. Varints of one and two bytes (lengths
    below 8 KiB, offset deltas below 8192) are read inline.
    """
    offsets: list[int] = []
    values: list[bytes | None] = []
    keys: list[bytes | None] | None = [] if with_keys else None
    add_offset, add_value = offsets.append, values.append
    pos = 0
    for _ in range(count):
        b = data[pos]  # record length
        if b < 0x80:
            length, pos = (b >> 1) ^ -(b & 1), pos + 1
        elif data[pos + 1] < 0x80:
            n = (b & 0x7F) | (data[pos + 1] << 7)
            length, pos = (n >> 1) ^ -(n & 1), pos + 2
        else:
            length, pos = _read_varint(data, pos)
        end = pos + length
        pos += 1  # attributes (one byte, unused)
        while data[pos] & 0x80:  # timestamp delta, not returned
            pos += 1
        b = data[pos + 1]  # offset delta
        if b < 0x80:
            add_offset(base_offset + ((b >> 1) ^ -(b & 1)))
            pos += 2
        elif data[pos + 2] < 0x80:
            n = (b & 0x7F) | (data[pos + 2] << 7)
            add_offset(base_offset + ((n >> 1) ^ -(n & 1)))
            pos += 3
        else:
            delta, pos = _read_varint(data, pos + 1)
            add_offset(base_offset + delta)
        b = data[pos]  # key length
        if b < 0x80:
            size, pos = (b >> 1) ^ -(b & 1), pos + 1
        else:
            size, pos = _read_varint(data, pos)
        if size >= 0:
            if keys is not None:
                keys.append(data[pos : pos + size])
            pos += size
        elif keys is not None:
            keys.append(None)
        b = data[pos]  # value length
        if b < 0x80:
            size, pos = (b >> 1) ^ -(b & 1), pos + 1
        elif data[pos + 1] < 0x80:
            n = (b & 0x7F) | (data[pos + 1] << 7)
            size, pos = (n >> 1) ^ -(n & 1), pos + 2
        else:
            size, pos = _read_varint(data, pos)
        if size >= 0:
            add_value(data[pos : pos + size])
            pos += size
        else:
            add_value(None)
        if data[pos]:  # headers: checked and skipped
            pos = _skip_headers(data, pos)
        else:
            pos += 1
        if pos != end:
            raise ValueError(f"invalid record size: expected {length} bytes in the record, read {length + pos - end}")
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} unconsumed bytes after all records")
    return offsets, keys, values


def _skip_headers(data: bytes, pos: int) -> int:
    count, pos = _read_varint(data, pos)
    if count < 0:
        raise ValueError(f"invalid number of record headers {count}")
    for _ in range(count):
        size, pos = _read_varint(data, pos)
        if size < 0:
            raise ValueError(f"invalid negative header key size {size}")
        pos += size
        size, pos = _read_varint(data, pos)
        if size > 0:
            pos += size
    return pos
