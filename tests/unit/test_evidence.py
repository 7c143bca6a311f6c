"""Paired tests (stream_learner.evidence) against scipy's, on many random cases and on the edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from stream_learner.errors import SnapshotError
from stream_learner.evidence import EXACT_BELOW, PairedTest, PairedWindow, mcnemar, wilcoxon

PROPERTY = settings(max_examples=200, database=None, deadline=None)


@PROPERTY
@given(st.integers(0, 60), st.integers(0, 60))
def test_mcnemar_matches_scipy(b: int, c: int) -> None:
    """Exact below EXACT_BELOW discordant pairs (scipy's two-sided binomial test), corrected chi-square from there on."""
    result = mcnemar(b, c)
    n = b + c
    if n == 0:
        assert result.p_value == 1.0
    elif n < EXACT_BELOW:
        assert result.test == "mcnemar_exact"
        assert result.p_value == pytest.approx(stats.binomtest(b, n, 0.5).pvalue, rel=1e-12)
    else:
        chi2 = (abs(b - c) - 1) ** 2 / n
        assert result.test == "mcnemar_chi2"
        assert result.statistic == pytest.approx(chi2)
        assert result.p_value == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-9, abs=1e-300)
    assert result.n == n
    assert mcnemar(c, b).p_value == result.p_value  # symmetric


def test_mcnemar_chi2_is_close_to_exact_where_it_takes_over() -> None:
    """The switch to the chi-square loses little at its threshold (the reason for its place)."""
    for b in range(EXACT_BELOW + 1):
        c = EXACT_BELOW - b
        exact = stats.binomtest(b, EXACT_BELOW, 0.5).pvalue
        chi2 = mcnemar(b, c).p_value
        assert abs(chi2 - exact) < 0.02


def test_mcnemar_refuses_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


differences = st.lists(
    st.one_of(st.integers(-6, 6).map(lambda v: v / 2), st.floats(-100, 100, allow_nan=False)),
    min_size=1,
    max_size=80,
)


@PROPERTY
@given(differences)
def test_wilcoxon_matches_scipy(d: list[float]) -> None:
    """Ties (many repeated halves) and zeros included: scipy's zero_method='wilcox', normal approximation, no correction."""
    result = wilcoxon(d)
    nonzero = [v for v in d if v != 0]
    assert result.n == len(nonzero)
    if not nonzero:
        assert result.p_value == 1.0
        return
    expected = stats.wilcoxon(nonzero, zero_method="wilcox", correction=False, method="approx")
    assert result.statistic == pytest.approx(expected.statistic)
    if math.isnan(expected.pvalue):  # every magnitude tied and the signs balanced: no variance left
        assert result.p_value == 1.0
    else:
        assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_wilcoxon_edges() -> None:
    assert wilcoxon([]).p_value == 1.0
    assert wilcoxon([0.0] * 50) == PairedTest("wilcoxon", 0.0, 1.0, 0)
    tied = wilcoxon([1.0] * 30)  # every magnitude tied, all one sign: strong evidence
    assert tied.statistic == 0.0 and tied.p_value < 1e-6
    assert tied.p_value == pytest.approx(stats.wilcoxon([1.0] * 30, method="approx").pvalue)


def test_wilcoxon_missing_predictions() -> None:
    """A learner that gave no prediction (an infinite error) loses that pair by the largest margin; two missing ones tie."""
    with_inf = wilcoxon([math.inf, 1.0, 2.0, -0.5, math.inf - math.inf])
    as_largest = wilcoxon([1e9, 1.0, 2.0, -0.5])
    assert (with_inf.statistic, with_inf.p_value, with_inf.n) == (as_largest.statistic, as_largest.p_value, as_largest.n)


@PROPERTY
@given(st.integers(1, 30), st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), max_size=100))
def test_classification_window_is_the_last_pairs(size: int, pairs: list[tuple[int, int]]) -> None:
    """The window's counts, rates and test are those of its last ``size`` pairs, through a state round trip."""
    window = PairedWindow("classification", size)
    for first, second in pairs:
        window.add(first, second)
    last = pairs[-size:]
    assert window.n == len(last)
    expected = mcnemar(sum(1 for f, s in last if f and not s), sum(1 for f, s in last if s and not f))
    result = window.test()
    assert (result.test, result.statistic, result.p_value, result.n) == (expected.test, expected.statistic, expected.p_value, len(last))
    if last:
        assert (result.first_error, result.second_error) == pytest.approx((np.mean([f for f, _ in last]), np.mean([s for _, s in last])))
    restored = PairedWindow.from_state(window.state_dict())
    assert restored.test().p_value == result.p_value and restored.n == window.n
    restored.add(1, 0)
    window.add(1, 0)
    assert restored.test() == window.test()


@PROPERTY
@given(st.integers(1, 30), st.lists(st.tuples(st.floats(0, 10), st.floats(0, 10)), max_size=100))
def test_regression_window_is_the_last_pairs(size: int, pairs: list[tuple[float, float]]) -> None:
    window = PairedWindow("regression", size)
    for first, second in pairs:
        window.add(first, second)
    last = pairs[-size:]
    result = window.test()
    expected = wilcoxon([f - s for f, s in last])
    assert (result.test, result.statistic, result.p_value, result.n) == (expected.test, expected.statistic, expected.p_value, len(last))
    if last:
        assert result.first_error == pytest.approx(np.mean([f for f, _ in last]))
        assert result.second_error == pytest.approx(np.mean([s for _, s in last]))
    restored = PairedWindow.from_state(window.state_dict())
    for pair in [(3.0, 1.0), (0.5, 2.0)]:
        restored.add(*pair)
        window.add(*pair)
    assert restored.test() == window.test()
    assert restored.state_dict()["first"] == window.state_dict()["first"]


def test_window_edges() -> None:
    window = PairedWindow("classification", 10)
    empty = window.test()
    assert (empty.n, empty.p_value) == (0, 1.0) and math.isnan(empty.first_error)
    for _ in range(10):
        window.add(1, 1)  # both always wrong: no discordant pair, no evidence
    assert window.full and window.test().p_value == 1.0
    assert not window.test().second_better(0.05)
    for _ in range(10):
        window.add(1, 0)
    assert window.test().second_better(0.05) and not window.test().second_better(0.001)
    window.clear()
    assert window.n == 0 and window.test().p_value == 1.0
    with pytest.raises(ValueError):
        PairedWindow("classification", 0)
    with pytest.raises(SnapshotError):
        PairedWindow.from_state({**window.state_dict(), "version": 99})
