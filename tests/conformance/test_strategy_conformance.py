"""Every registered strategy through :mod:`stream_learner.checks`, with every learner family it claims.

For each pair: predicting before any learning works, predicting is pure, a
snapshot round-trips exactly, clones are independent, the state stays
bounded over a long stream with many boundaries, and a task boundary in the
middle of a batch gives what the same events give one per call.
"""

from __future__ import annotations

import pytest

from strategies.registry import available
from stream_learner.checks import Check, list_checks

CHECKS = [check for info in available() if info.families for check in list_checks(info.name)]


def test_every_strategy_of_both_families_is_checked() -> None:
    checked = {(c.strategy, c.family) for c in CHECKS}
    river = {"naive", "reset", "ensemble"}
    torch = {"naive", "ewc", "replay", "lwf", "agem", "lamaml", "gem", "cumulative", "avalanche"}
    assert {("river", s) for s in river} | {("torch", s) for s in torch} <= {(f, s) for s, f in checked}
    assert {c.name for c in CHECKS} >= {"boundary_mid_batch_is_as_one_per_call", "snapshot_round_trip_is_exact"}


@pytest.mark.parametrize("check", CHECKS, ids=str)
def test_strategy(check: Check) -> None:
    check()
