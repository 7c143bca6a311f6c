"""``benchmarks/recurring.py``: its recovery measure and a small run of its table."""

from __future__ import annotations

from benchmarks.recurring import Options, measure, recovery, report, stream

OPTIONS = Options(segment=400, segments=4, first=100, recovery_window=10, within=0.05, level=100)


def test_recovery_counts_events_until_the_window_is_back_near_the_level_before_the_return() -> None:
    before = [True] * 100  # level 1.0
    after = [False] * 30 + [True] * 370  # the last 10 events are all right from event 40 on
    assert recovery(before + after, 100, OPTIONS) == 40
    assert recovery(before + [False] * 400, 100, OPTIONS) == 400  # never: the segment's length


def test_the_streams_alternate_two_concepts_and_the_table_counts_every_return() -> None:
    events = stream("stagger", 0, OPTIONS)
    assert len(events) == 1600 and [e.offset for e in events[:3]] == [0, 1, 2]
    rows = measure(["sea"], ["logreg"], 1, OPTIONS)
    assert set(rows) == {("sea", "logreg", False), ("sea", "logreg", True)}
    assert all(row.returns == 2 and len(row.recovery) == 2 and row.reused <= row.returns for row in rows.values())
    assert rows["sea", "logreg", False].reused == 0 and not rows["sea", "logreg", False].reuse_share and len(rows["sea", "logreg", True].reuse_share) == 1
    table = report(rows, OPTIONS)
    assert table.count("| sea | logreg |") == 2 and "events/s with reuse / without" in table
