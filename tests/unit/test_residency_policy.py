"""The resident set's policy on the eviction benchmark's streams, replayed batch by batch as the dataflow brings keys (no learner runs).

Where a batch holds more keys than the bound, plain least-recently-used
evicts nearly every key before its next batch; keeping the keys used more
often must save most of those restores on a stream with busy keys, and
some on one where popularity follows Zipf's law.
"""

from __future__ import annotations

import pytest

from benchmarks.eviction import stream
from benchmarks.residency_policy import replay


@pytest.mark.parametrize(("pattern", "at_most"), [("hot", 0.5), ("zipf", 0.75)])
def test_keeping_keys_used_more_often_saves_restores(pattern: str, at_most: float) -> None:
    keys_in_order = [key for key, _, _ in stream(50_000, 5_000, pattern)]
    plain = replay(keys_in_order, limit=500, batch=2_500, by_frequency=False)
    by_frequency = replay(keys_in_order, limit=500, batch=2_500, by_frequency=True)
    assert plain["new_keys"] == by_frequency["new_keys"] and plain["restores"] > 10_000
    assert by_frequency["restores"] <= at_most * plain["restores"], (plain, by_frequency)
    assert by_frequency["evictions"] < plain["evictions"]


def test_keys_each_batch_visits_in_the_same_order_stay_resident_where_least_recently_used_evicts_every_one() -> None:
    """Six keys a batch, four resident, five batches: plain least-recently-used evicts each key before the next batch reaches it."""
    keys_in_order = list(range(6)) * 5
    plain = replay(keys_in_order, limit=4, batch=6, by_frequency=False)
    by_frequency = replay(keys_in_order, limit=4, batch=6, by_frequency=True)
    assert plain["restores"] == 4 * 6  # every visit after the first batch restores its key
    assert by_frequency["restores"] == 4 * 3  # three keys stay; the other three pass through the fourth place


def test_keys_in_turn_stay_the_worst_case_of_both() -> None:
    keys_in_order = [key for key, _, _ in stream(20_000, 2_000, "cycle")]
    plain = replay(keys_in_order, limit=200, batch=1_000, by_frequency=False)
    by_frequency = replay(keys_in_order, limit=200, batch=1_000, by_frequency=True)
    assert plain["restores"] == 20_000 - 2_000  # every event after the first round restores its key
    assert plain["restores"] * 0.85 <= by_frequency["restores"] <= plain["restores"]  # at best the keys that stay: a tenth
