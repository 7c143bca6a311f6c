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


class DriftMonitor:
    """Feeds errors to a river detector and reports drifts.

    Args:
        name: a key of :data:`DETECTORS`.
        params: keyword arguments for the detector.
        only_increases: report a drift only when the error rose (a model
            that got better has not met a new concept). DDM and EDDM only
            ever detect rises; PageHinkley is set to ``mode="up"``.
        seed: seeds the detectors that sample at random (KSWIN).
    """

    def __init__(
        self, name: str = "adwin", params: dict[str, Any] | None = None, only_increases: bool = True, seed: int | None = 42
    ) -> None:
        if name not in DETECTORS:
            raise ConfigError(f"unknown drift detector {name!r}; choose one of {', '.join(DETECTORS)}, or none")
        params = dict(params or {})
        if name == "kswin":
            params.setdefault("seed", seed)  # KSWIN samples at random: seed it so runs repeat
        if name == "page_hinkley" and only_increases:
            params.setdefault("mode", "up")
        module, _, cls = DETECTORS[name].rpartition(".")
        try:
            self.detector = getattr(importlib.import_module(module), cls)(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad parameters for drift detector {name!r}: {exc}") from None
        self.name = name
        self.binary = name in BINARY_ONLY
        self._check_rise = only_increases and name == "adwin"
        self._sum, self._count = 0.0, 0  # the errors in ADWIN's window (see update)

    def update(self, error: float) -> bool:
        """Feed one error; return True when a drift is detected here.

        For ADWIN with ``only_increases`` this is river 0.26's ``ADWIN.update``
        inlined: it resets its whole window after a detection, so until the
        next detection the window holds every error since the last one, and
        the mean before this error is kept here as a running sum instead of
        read through ``estimation`` (the same detections as the public
        ``estimation``/``update``/``estimation`` calls, tested against them,
        for a third of the cost).
        """
        detector = self.detector
        if not self._check_rise:
            detector.update(error > 0 if self.binary else error)
            return detector.drift_detected
        if detector._drift_detected:
            detector._reset()
            self._sum, self._count = 0.0, 0
        total, count = self._sum, self._count
        helper = detector._helper
        detected = detector._drift_detected = helper.update(error)
        self._sum, self._count = total + error, count + 1
        if not detected:
            return False
        width = helper.get_width()
        return (helper.get_total() / width if width else 0.0) > (total / count if count else 0.0)


def parse_detector_params(text: str | None) -> dict[str, Any]:
    """Parse ``--drift-params`` JSON; bad JSON is a :class:`ConfigError`."""
    return parse_json_object(text, "drift detector parameters", '{"delta": 0.001}')
