from __future__ import annotations

import math
import random

import pytest
from river import metrics as river_metrics

from stream_learner.drift import DriftMonitor
from stream_learner.errors import ConfigError
from stream_learner.metrics import Prequential


def test_cumulative_accuracy_equals_rivers_accuracy() -> None:
    rng = random.Random(0)
    ours, theirs = Prequential("classification", window=50), river_metrics.Accuracy()
    for _ in range(500):
        y, y_pred = rng.choice("abc"), rng.choice(["a", "b", "c", None])
        ours.update(y, y_pred)
        theirs.update(y, y_pred)
    assert ours.accuracy == theirs.get()


def test_window_accuracy_covers_only_the_last_events() -> None:
    m = Prequential("classification", window=10)
    for _ in range(100):
        m.update(1, 0)
    for _ in range(10):
        m.update(1, 1)
    assert m.accuracy_window == 1.0
    assert m.accuracy == pytest.approx(10 / 110)


def test_regression_metrics_match_river() -> None:
    rng = random.Random(1)
    ours, mae, rmse = Prequential("regression"), river_metrics.MAE(), river_metrics.RMSE()
    for _ in range(300):
        y, y_pred = rng.uniform(-5, 5), rng.uniform(-5, 5)
        ours.update(y, y_pred)
        mae.update(y, y_pred)
        rmse.update(y, y_pred)
    assert ours.mae == pytest.approx(mae.get())
    assert ours.rmse == pytest.approx(rmse.get())
    assert ours.accuracy is None


def _error_stream(before: float, after: float, n: int = 2000, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < (before if i < n // 2 else after)) for i in range(n)]


@pytest.mark.parametrize("name", ["adwin", "page_hinkley", "ddm", "eddm", "kswin"])
def test_each_detector_notices_a_rise_in_error(name: str) -> None:
    monitor = DriftMonitor(name)
    hits = [i for i, e in enumerate(_error_stream(0.05, 0.8)) if monitor.update(e)]
    after_change = [i for i in hits if i >= 1000]
    assert after_change and after_change[0] < 1300, hits


def test_a_fall_in_error_is_not_a_drift_by_default() -> None:
    falling = _error_stream(0.6, 0.05)
    assert not [i for i, e in enumerate(falling) if DriftMonitor("adwin").update(e) and i >= 1000]
    both = DriftMonitor("adwin", only_increases=False)
    assert [i for i, e in enumerate(falling) if both.update(e) and i >= 1000]


def test_bad_detector_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown drift detector 'bogus'"):
        DriftMonitor("bogus")
    with pytest.raises(ConfigError, match="bad parameters for drift detector 'adwin'"):
        DriftMonitor("adwin", {"nope": 1})
    assert math.isfinite(DriftMonitor("adwin", {"delta": 0.01}).detector.delta)


def test_window_accuracy_equals_the_accuracy_of_the_last_window_events() -> None:
    rng = random.Random(2)
    m = Prequential("classification", window=37)
    pairs = []
    for _ in range(500):
        pair = (rng.choice("ab"), rng.choice("ab"))
        pairs.append(pair)
        m.update(*pair)
        last = pairs[-37:]
        assert m.accuracy_window == pytest.approx(sum(y == p for y, p in last) / len(last))


@pytest.mark.parametrize("kind", ["0/1 errors", "absolute errors"])
def test_adwin_rise_detections_equal_rivers_public_adwin(kind: str) -> None:
    from river.drift import ADWIN

    errors = _error_stream(0.1, 0.6, n=3000, seed=3) + _error_stream(0.6, 0.05, n=3000, seed=4) + _error_stream(0.05, 0.5, n=3000, seed=5)
    if kind == "absolute errors":
        rng = random.Random(6)
        errors = [abs(rng.gauss(3 * e, 1.0)) for e in errors]
    monitor, reference = DriftMonitor("adwin"), ADWIN()
    ours, theirs = [], []
    for i, e in enumerate(errors):
        if monitor.update(e):
            ours.append(i)
        before = reference.estimation
        reference.update(e)
        if reference.drift_detected and reference.estimation > before:
            theirs.append(i)
    assert ours == theirs and len(ours) >= 2
    assert monitor.detector.estimation == reference.estimation and monitor.detector.width == reference.width


@pytest.mark.parametrize("written", ["as now", "as version 1 since the sum restarts at a detection", "as version 1 with the window before the detection"])
def test_a_monitor_restored_at_a_detection_detects_as_the_one_that_went_on(written: str) -> None:
    """A state taken at a detection (a boundary version's) gives the detections of the monitor that was never stopped.

    "with the window before the detection": a version-1 state as releases
    that restarted the running sum at the update after a detection wrote it,
    holding the errors before the detection, which the detector's own flag
    says to drop (its next update starts a fresh window).
    """
    errors = _error_stream(0.1, 0.6, n=3000, seed=3) + _error_stream(0.6, 0.05, n=3000, seed=4) + _error_stream(0.05, 0.5, n=3000, seed=5)
    went_on = DriftMonitor("adwin")
    hits = [i for i, e in enumerate(errors) if went_on.update(e)]
    stopped = DriftMonitor("adwin")
    first = next(i for i, e in enumerate(errors) if stopped.update(e))
    state = stopped.state_dict()
    if written != "as now":
        state["version"] = 1
    if written.endswith("before the detection"):
        state["sum"], state["count"] = sum(errors[: first + 1]), first + 1
    restored = DriftMonitor.from_state(state)
    later = [i for i, e in enumerate(errors[first + 1 :], start=first + 1) if restored.update(e)]
    assert len(hits) >= 2 and [first, *later] == hits


class _PublicOnly:
    """A river detector seen only through its public names: a private one read or written fails the test."""

    def __init__(self, detector: object) -> None:
        object.__setattr__(self, "_detector", detector)

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AssertionError(f"the monitor read the detector's private {name!r}")
        return getattr(object.__getattribute__(self, "_detector"), name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AssertionError(f"the monitor wrote the detector's {name!r}")


@pytest.mark.parametrize("name", ["adwin", "page_hinkley", "ddm", "eddm", "kswin"])
def test_the_monitor_uses_only_rivers_public_detector_api(name: str) -> None:
    errors = _error_stream(0.1, 0.6, n=3000, seed=3) + _error_stream(0.6, 0.05, n=3000, seed=4) + _error_stream(0.05, 0.5, n=3000, seed=5)
    guarded, plain = DriftMonitor(name), DriftMonitor(name)
    guarded.detector = _PublicOnly(guarded.detector)  # type: ignore[assignment]
    hits = [i for i, e in enumerate(errors) if guarded.update(e)]
    assert hits == [i for i, e in enumerate(errors) if plain.update(e)] and hits


@pytest.mark.parametrize("name", ["adwin", "page_hinkley", "ddm", "eddm", "kswin"])
def test_a_reset_monitor_detects_as_a_new_one_does(name: str) -> None:
    """``reset`` keeps nothing of the errors before it (river's ``clone()`` would keep KSWIN's window)."""
    first, second = _error_stream(0.05, 0.8, seed=8), _error_stream(0.1, 0.7, n=3000, seed=9)
    params = {"delta": 0.01} if name == "adwin" else None
    used = DriftMonitor(name, params)
    for e in first[:1500]:
        used.update(e)
    used.reset()
    hits = [i for i, e in enumerate(second) if used.update(e)]
    fresh = DriftMonitor(name, params)
    assert hits == [i for i, e in enumerate(second) if fresh.update(e)] and hits


def test_errors_counted_in_bulk_equal_errors_counted_one_at_a_time() -> None:
    """The learner step appends errors to ``pending`` in runs of any length; the figures are those of one update at a time."""
    rng = random.Random(7)
    bulk, single = Prequential("classification", window=37), Prequential("classification", window=37)
    errors: list[int] = []
    while len(errors) < 2000:
        run = [rng.choice((0, 1, 1)) for _ in range(rng.choice((1, 5, 36, 37, 38, 100)))]
        bulk.pending.extend(run)
        for e in run:
            single.update(1, 1 - e)
            errors.append(e)
        assert (bulk.labelled, bulk.correct, bulk.accuracy_window) == (single.labelled, single.correct, single.accuracy_window)
        assert bulk.accuracy_window == pytest.approx(1 - sum(errors[-37:]) / len(errors[-37:]))
        assert bulk.accuracy == pytest.approx(1 - sum(errors) / len(errors))
