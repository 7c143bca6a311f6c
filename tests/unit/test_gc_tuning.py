"""The run's collector settings: a source batch in flight is not collected, cyclic garbage still is, and the settings are restored."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from connectors.base import DEFAULT_BATCH_SIZE
from stream_learner.app.gc_tuning import GEN0_THRESHOLD, streaming_gc


@contextmanager
def young_collections() -> Iterator[list[int]]:
    """The generations collected while inside (one entry per collection)."""
    seen: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(count)
    try:
        yield seen
    finally:
        gc.callbacks.remove(count)


def a_batch_in_flight(records: int, objects_per_record: int) -> int:
    """Allocate what a batch keeps alive at once (``objects_per_record`` tracked containers a record), then drop it; how many were alive."""
    batch: list[list[dict[str, float]]] = [[{} for _ in range(objects_per_record - 1)] for _ in range(records)]
    alive = sum(len(record) + 1 for record in batch)
    del batch
    return alive


def test_a_full_batch_of_a_fleet_is_not_collected_mid_batch() -> None:
    # 13 tracked objects a record: what a full batch over 10,000 keys holds at once (benchmarks/README.md, fleets)
    with streaming_gc(), young_collections() as collected:
        alive = [a_batch_in_flight(DEFAULT_BATCH_SIZE, 13) for _ in range(5)]
    assert alive == [DEFAULT_BATCH_SIZE * 13] * 5
    assert collected == []


def test_the_same_batches_were_collected_under_the_former_threshold() -> None:
    """The test above can fail: at 50,000 the batch in flight is scanned several times a batch."""
    with streaming_gc(50_000), young_collections() as collected:
        for _ in range(5):
            a_batch_in_flight(DEFAULT_BATCH_SIZE, 13)
    assert len(collected) >= 5


def test_cyclic_garbage_is_still_collected_once_the_young_generation_fills() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    with streaming_gc(), young_collections() as collected:
        cycle = weakref.ref(Node())  # unreachable once made: only the collector frees a cycle
        assert cycle() is not None
        kept: list[dict[str, float]] = [{} for _ in range(GEN0_THRESHOLD + 1_000)]  # what stays (new keys' learners), with room for the few objects that die meanwhile
    assert collected and collected[0] == 0
    assert cycle() is None
    assert len(kept) == GEN0_THRESHOLD + 1_000


def test_the_collector_is_restored_after_the_run_even_when_it_fails() -> None:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(RuntimeError), streaming_gc():
        assert gc.get_threshold() == (GEN0_THRESHOLD, *thresholds[1:])
        assert gc.get_freeze_count() > frozen
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == frozen
