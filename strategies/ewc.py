"""Elastic weight consolidation, Avalanche's ``EWCPlugin`` driven per micro-batch.

Importances are computed at each boundary on the window of the concept
that ended, in batches of the learner's micro-batch size as in Avalanche's
loop. They scale with it (squared gradients of the mean loss), so
``ewc_lambda`` must be retuned when ``batch_size`` changes.

A drift detector fires some events after the change, once the model has
already started learning the new concept. Consolidating there anchors the
parameters the new concept needs at their untrained values, with importances
inflated by the old concept's now-higher loss, and learning stalls or SGD diverges. So each boundary
first looks, within the last ``rewind`` events, for where the prequential
error rose (:class:`~strategies._changepoint.Rewinding`), and computes the
importances and the anchor on the events before it, with the parameters from
before it. At an explicit task boundary the error does not rise: nothing changes.

>>> EWC(mode="separate", max_anchors=2).max_anchors
2
>>> EWC(mode="both")
Traceback (most recent call last):
...
stream_learner.errors.ConfigError: EWC mode must be 'online' or 'separate', not 'both'
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from strategies._avalanche import AvalancheStrategy, pack, quietly, unpack
from strategies._changepoint import Rewinding
from stream_learner.errors import ConfigError


class EWC(Rewinding, AvalancheStrategy):
    """Elastic weight consolidation (Avalanche EWCPlugin): online, or separate with bounded anchors.

    Args:
        ewc_lambda: weight of the penalty pulling parameters to their anchor, by importance; raise it if old concepts are forgotten, lower it if new ones learn slowly; retune it if batch_size changes.
        mode: online keeps one anchor, its importances summed over concepts with decay_factor; separate keeps one anchor per concept, the last max_anchors (more memory and time).
        decay_factor: online mode only: share (0 to 1) of the older importances kept at each boundary; 0 keeps only the last concept's, 1 never fades; lower it to favour recent concepts.
        max_anchors: separate mode only: how many of the latest concepts keep an anchor; each adds a penalty term to every update, so more remembers longer but costs time and memory.
        rewind: events a boundary looks back for where the error rose, to consolidate on the events and parameters before the change; 0 turns it off; raise it if the detector fires late.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"mode": "separate", "max_anchors": 2}

    rewind_parameters = True

    def __init__(
        self, ewc_lambda: float = 100.0, mode: str = "online", decay_factor: float = 0.9, max_anchors: int = 5, rewind: int = 100
    ) -> None:
        if mode not in ("online", "separate"):
            raise ConfigError(f"EWC mode must be 'online' or 'separate', not {mode!r}")
        if float(ewc_lambda) < 0:
            raise ConfigError(f"ewc_lambda must not be negative, not {ewc_lambda}")
        if not 0.0 <= float(decay_factor) <= 1.0:
            raise ConfigError(f"decay_factor must be in [0, 1], not {decay_factor}")
        if int(max_anchors) < 1:
            raise ConfigError(f"max_anchors must be at least 1, not {max_anchors}")
        self.ewc_lambda = float(ewc_lambda)
        self.mode = mode
        self.decay_factor = float(decay_factor)
        self.max_anchors = int(max_anchors)
        self.rewinding(rewind)

    def make_plugins(self) -> list[Any]:
        from avalanche.training.plugins import EWCPlugin

        decay = self.decay_factor if self.mode == "online" else None
        return [quietly(lambda: EWCPlugin(self.ewc_lambda, mode=self.mode, decay_factor=decay))]

    def after_boundary(self) -> None:
        """Keep at most ``max_anchors`` (separate) or one (online) anchor, renumbered from 0."""
        plugin = self.plugins[0]
        keep = self.max_anchors if self.mode == "separate" else 1
        kept = sorted(k for k, v in plugin.saved_params.items() if v)[-keep:]
        plugin.saved_params = defaultdict(dict, {i: plugin.saved_params[k] for i, k in enumerate(kept)})
        plugin.importances = defaultdict(dict, {i: plugin.importances[k] for i, k in enumerate(kept)})
        self.template.clock.train_exp_counter = len(kept)

    @property
    def anchors(self) -> int:
        """Stored (parameters, importances) anchors."""
        return 0 if self.template is None else len([v for v in self.plugins[0].saved_params.values() if v])

    def state_dict(self) -> dict[str, Any]:
        if self.template is None:  # no model yet: nothing consolidated (the engine snapshots a learner as soon as it is built)
            return super().state_dict()
        plugin = self.plugins[0]
        return {
            **super().state_dict(),
            "saved_params": pack({k: v for k, v in plugin.saved_params.items() if v}),
            "importances": pack({k: v for k, v in plugin.importances.items() if v}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        plugin = self.plugins[0]
        device = self.template.device
        plugin.saved_params = defaultdict(dict, unpack(state["saved_params"], device))
        plugin.importances = defaultdict(dict, unpack(state["importances"], device))
