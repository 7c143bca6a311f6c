"""Drift monitoring over the error stream with river's detectors.

>>> monitor = DriftMonitor("adwin")
>>> errors = [0.0] * 1000 + [1.0] * 200
>>> [i for i, e in enumerate(errors) if monitor.update(e)][:1]
[1023]
"""

from __future__ import annotations

import importlib
from typing import Any

from stream_learner.errors import ConfigError, parse_json_object
from stream_learner.state import drift_monitor_state, expect_version, from_river_blob, river_blob, sorted_values

DETECTORS: dict[str, str] = {
    "adwin": "river.drift.ADWIN",
    "kswin": "river.drift.KSWIN",
    "page_hinkley": "river.drift.PageHinkley",
    "ddm": "river.drift.binary.DDM",
    "eddm": "river.drift.binary.EDDM",
}
"""Detector names (``--drift-detector NAME``) and the river class each builds
(imported when first used: ``river.drift`` takes a second to import)."""

BINARY_ONLY = frozenset({"ddm", "eddm"})

VERSION = 2
"""The layout of :meth:`DriftMonitor.state_dict` (older ones are upgraded by :func:`~stream_learner.state.drift_monitor_state`)."""


class DriftMonitor:
    """Feeds errors to a river detector and reports drifts.

    Args:
        name: a key of :data:`DETECTORS`.
        params: keyword arguments for the detector.
        only_increases: report a drift only when the error rose (a model
            that got better has not met a new concept). DDM and EDDM only
            ever detect rises; PageHinkley is set to ``mode="up"``.
        seed: seeds the detectors that sample at random (KSWIN).
        detector: the detector to go on with (a restored one, built from
            these parameters); ``None``: a new one.
    """

    def __init__(
        self, name: str = "adwin", params: dict[str, Any] | None = None, only_increases: bool = True, seed: int | None = 42, detector: Any = None
    ) -> None:
        if name not in DETECTORS:
            raise ConfigError(f"unknown drift detector {name!r}; choose one of {', '.join(DETECTORS)}, or none")
        params = dict(params or {})
        if name == "kswin":
            params.setdefault("seed", seed)  # KSWIN samples at random: seed it so runs repeat
        if name == "page_hinkley" and only_increases:
            params.setdefault("mode", "up")
        if detector is None:
            module, _, cls = DETECTORS[name].rpartition(".")
            try:
                detector = getattr(importlib.import_module(module), cls)(**params)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"bad parameters for drift detector {name!r}: {exc}") from None
        self.detector = detector
        self.name = name
        self.params = params  # what reset builds afresh from
        self.only_increases = only_increases
        self.binary = name in BINARY_ONLY
        self._check_rise = only_increases and name == "adwin"
        self._sum, self._count = 0.0, 0  # the errors in ADWIN's window (see update)

    def update(self, error: float) -> bool:
        """Feed one error; return True when a drift is detected here.

        With ``only_increases`` ADWIN's detections count only where the
        window's mean after the cut exceeds the mean before this error. ADWIN
        starts a fresh window at the update after a detection, so until the
        next one its window holds every error since the last: that mean is
        kept here as a running sum rather than asked of ``estimation`` before
        every update, and starts again at each detection.
        """
        detector = self.detector
        if not self._check_rise:
            detector.update(error > 0 if self.binary else error)
            return detector.drift_detected
        total, count = self._sum, self._count
        detector.update(error)
        if not detector.drift_detected:
            self._sum, self._count = total + error, count + 1
            return False
        self._sum, self._count = 0.0, 0  # the errors of ADWIN's fresh window, which its next update starts
        return detector.estimation > (total / count if count else 0.0)

    def reset(self) -> None:
        """Start afresh: a boundary found otherwise (a new label) began a new concept.

        A new detector from the same parameters: river's ``clone()`` would
        copy KSWIN's current window, which it keeps under its ``window``
        parameter's name.
        """
        self.detector = type(self.detector)(**self.params)
        self._sum, self._count = 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        """The detector (one river blob), its parameters and the running mean since its last detection."""
        return {
            "version": VERSION,
            "name": self.name,
            "params": dict(self.params),
            "only_increases": self.only_increases,
            "detector": river_blob(self.detector),
            "sum": self._sum,
            "count": self._count,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DriftMonitor:
        """The monitor :meth:`state_dict` describes (of any layout :func:`~stream_learner.state.drift_monitor_state` reads)."""
        state = drift_monitor_state(state)
        monitor = cls(state["name"], state["params"], state["only_increases"], detector=from_river_blob(state["detector"]))
        monitor._sum, monitor._count = state["sum"], state["count"]
        return monitor


class NewLabelWatch:
    """Marks a concept boundary where a label never seen before arrives.

    In a class-incremental stream each task brings classes the model has
    never seen, so its error is high at the change; but a model that learns
    new classes slowly (La-MAML learns them mostly later, by replay) is
    wrong as often before the change as after it, and an error-based
    detector has no rise to find. A label never seen before is itself a
    change of the label distribution, known at once. The labels of one task
    arrive close together: a new label fewer than ``gap`` labelled events
    after the last boundary (or the stream's start) joins the current concept.

    >>> watch, marks = NewLabelWatch(gap=3), []
    >>> for y in [0, 1, 0, 1, 2, 3, 0, 1, 4]:
    ...     if watch.update(y):
    ...         marks.append(y)
    ...         watch.boundary()
    >>> marks
    [2, 4]
    """

    def __init__(self, gap: int, seen: set[Any] | None = None) -> None:
        if gap < 1:
            raise ConfigError(f"the new-label gap must be at least 1 labelled event, not {gap}")
        self.gap = gap
        self.seen: set[Any] = set(seen or ())
        self.since = 0  # labelled events since the last boundary

    def update(self, label: Any) -> bool:
        """Count one labelled event; True when its label is new and the last boundary is ``gap`` events back or more."""
        self.since += 1
        if label in self.seen:
            return False
        self.seen.add(label)
        return self.since > self.gap

    def boundary(self) -> None:
        """A new concept began here (whatever marked it)."""
        self.since = 0

    def state_dict(self) -> dict[str, Any]:
        """The labels seen and the count since the last boundary (the gap is the run's setting, given to :meth:`from_state`)."""
        return {"version": 1, "seen": sorted_values(self.seen), "since": self.since}

    @classmethod
    def from_state(cls, state: dict[str, Any], gap: int) -> NewLabelWatch:
        """The watch :meth:`state_dict` describes, under this run's ``gap``."""
        expect_version(state, "the new-label watch", 1)
        watch = cls(gap, seen=set(state["seen"]))
        watch.since = state["since"]
        return watch


def parse_detector_params(text: str | None) -> dict[str, Any]:
    """Parse ``--drift-params`` JSON; bad JSON is a :class:`ConfigError`."""
    return parse_json_object(text, "drift detector parameters", '{"delta": 0.001}')
