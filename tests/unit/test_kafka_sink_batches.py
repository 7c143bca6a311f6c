"""The Kafka sink partition hands the producer process batches of at most ``chunk`` records, gathered across model keys, in order."""

from __future__ import annotations

from typing import Any

from connectors.kafka import _ProducerPartition
from stream_learner.predictions import Predictions


class _Producer:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def acquire(self) -> None:
        pass

    def send_parts(self, topic: str, parts: list[Any]) -> int:
        self.batches.append(parts)
        return len(self.batches)


def test_small_items_of_many_keys_share_batches_and_large_ones_are_cut() -> None:
    producer = _Producer()
    partition = _ProducerPartition(producer, "pred", 0, chunk=10)  # type: ignore[arg-type]
    small = [Predictions(f"k{i}", 1.0, [(f"e{i}", True, None, 0, 0)] * 3) for i in range(5)]  # 3 records each
    large = Predictions("big", 2.0, [(f"b{j}", False, None, j, 0) for j in range(25)])
    metrics = [{"type": "metrics", "key": "k0"}, {"type": "metrics", "key": "k1"}]
    partition.write_batch([*small, large, metrics])
    sizes = [sum(len(part) for part in batch) for batch in producer.batches]
    assert max(sizes) <= 10 and sum(sizes) == 15 + 25 + 2
    assert sizes == [9, 6, 10, 10, 7]  # 3+3+3 | 3+3 | the large item cut at 10 | 10 | 5 + the metrics: not one message per key
    sent = [record for batch in producer.batches for part in batch for record in part]
    expected = [record for item in [*small, large, metrics] for record in item]
    assert sent == expected
    assert partition._sent == 42
