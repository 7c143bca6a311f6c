"""Output topics for tests where several processes write one topic.

Tansu's in-memory storage (the test broker) can leave a partition's high
watermark stale when two producers append to it at once: acknowledged
records then stay invisible to consumers (seen about once in a hundred
two-process runs; Apache Kafka serialises appends). A model key's outputs
come from one process (its sink partition has one owner), so giving each
key a Kafka partition of its own leaves every partition one writer.
"""

from __future__ import annotations

from itertools import count

from kafka.partitioner.default import murmur2


def kafka_partition(key: str, partitions: int) -> int:
    """The partition kafka-python's default partitioner (our producer's) picks for ``key``.

    >>> kafka_partition("a", 7), kafka_partition("b", 7), kafka_partition("c", 7)
    (5, 6, 0)
    """
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def one_partition_per_key(keys: tuple[str, ...]) -> int:
    """The fewest partitions that give each key a partition of its own.

    >>> one_partition_per_key(("a", "b", "c")), one_partition_per_key(("a", "b"))
    (7, 3)
    """
    return next(n for n in count(len(keys)) if len({kafka_partition(key, n) for key in keys}) == len(keys))
