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

    def update(self, error: float) -> bool:
        """Feed one error; return True when a drift is detected here."""
        detector = self.detector
        if self.binary:
            detector.update(error > 0)
            return detector.drift_detected
        if self._check_rise:
            before = detector.estimation
            detector.update(error)
            return detector.drift_detected and detector.estimation > before
        detector.update(error)
        return detector.drift_detected


def parse_detector_params(text: str | None) -> dict[str, Any]:
    """Parse ``--drift-params`` JSON; bad JSON is a :class:`ConfigError`."""
    return parse_json_object(text, "drift detector parameters", '{"delta": 0.001}')
