"""benchmarks/champion.py on a small run: the figures it prints are the ones it means."""

from __future__ import annotations

import pytest

from benchmarks.champion import CANDIDATES, accuracy, cost, mean


def test_the_champion_follows_the_better_model_and_the_oracle_is_the_best_per_phase() -> None:
    length = 3000
    rows, champion = accuracy(1, length, promotion_window=200, min_champion_events=200)
    assert all(len(right) == 4 * length for right in rows.values())
    alone = [rows[f"{name} alone"] for name in CANDIDATES[:2]]
    for p in range(4):
        phase = slice(p * length, (p + 1) * length)
        assert mean(rows["oracle (best per phase)"][phase]) == max(mean(right[phase]) for right in alone)
    assert champion == "hoeffding_tree"  # the last phase is a tree's concept
    assert mean(rows["logreg + tree challenger"]) > min(mean(right) for right in alone)


def test_the_cost_report_names_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    cost(1, 400, 1)
    printed = capsys.readouterr().out
    assert "2 candidates" in printed and "4 candidates" in printed and "overhead" in printed
    assert all(f"{name} alone" in printed for name in CANDIDATES)
