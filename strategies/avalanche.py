"""Any Avalanche plugin by dotted path, driven per micro-batch.

``--strategy avalanche:avalanche.training.plugins.SynapticIntelligencePlugin
--strategy-param si_lambda=1`` runs that plugin's hooks inside the learner's
update step (see :mod:`strategies._avalanche`), its before-training-experience
hooks once at start and after each boundary. Its snapshot keeps the
plugin's tensors, ``ParamData`` and plain values (containers of them
included); other attributes start afresh on restore.

>>> AvalanchePlugin("avalanche.training.plugins.MASPlugin", lambda_reg=1.0).target
'avalanche.training.plugins.MASPlugin'
>>> AvalanchePlugin("os.path")
Traceback (most recent call last):
...
stream_learner.errors.StrategyLoadError: Avalanche plugin 'os.path' is not a class deriving from avalanche's SupervisedPlugin
"""

from __future__ import annotations

import importlib
from typing import Any

from strategies._avalanche import AvalancheStrategy, _template_module, pack, quietly, unpack
from stream_learner.errors import ConfigError, StrategyLoadError

_PLAIN = (int, float, str, bool, type(None))


class AvalanchePlugin(AvalancheStrategy):
    """Any Avalanche plugin by dotted path: avalanche:avalanche.training.plugins.NAME (parameters as strategy params)."""

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"target": "avalanche.training.plugins.MASPlugin", "lambda_reg": 1.0}

    def __init__(self, target: str = "", **params: Any) -> None:
        if not target:
            raise ConfigError("the avalanche strategy needs a plugin: --strategy avalanche:package.module.PluginClass")
        self.target = target
        self.params = params
        self.cls = self._import(target)

    @staticmethod
    def _import(target: str) -> type:
        _template_module()
        from avalanche.core import BasePlugin

        module_name, _, attr = target.replace(":", ".").rpartition(".")
        try:
            module = quietly(lambda: importlib.import_module(module_name))
            cls = getattr(module, attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise StrategyLoadError(f"cannot import Avalanche plugin {target!r}: {exc}") from None
        if not isinstance(cls, type) or not issubclass(cls, BasePlugin):
            raise StrategyLoadError(f"Avalanche plugin {target!r} is not a class deriving from avalanche's SupervisedPlugin")
        return cls

    def make_plugins(self) -> list[Any]:
        try:
            return [quietly(lambda: self.cls(**self.params))]
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"bad parameters for Avalanche plugin {self.target!r}: {exc}") from None

    def setup(self, model: Any, optimizer: Any, criterion: Any, device: Any) -> None:
        first = self.template is None
        super().setup(model, optimizer, criterion, device)
        if first:
            self._run("before_training_exp")

    def after_boundary(self) -> None:
        self._run("before_training_exp")

    def _attributes(self) -> dict[str, Any]:
        plugin = self.plugins[0]
        return {k: v for k, v in vars(plugin).items() if _storable(v)}

    def state_dict(self) -> dict[str, Any]:
        if self.template is None:
            return {}
        return {"experiences": self.experiences, "plugin": pack(self._attributes())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        super().load_state_dict(state)
        plugin = self.plugins[0]
        for k, v in unpack(state["plugin"], self.template.device).items():
            current = getattr(plugin, k, None)
            if isinstance(current, tuple) and isinstance(v, list):
                v = tuple(v)
            elif isinstance(current, dict) and type(current) is not dict:
                v = type(current)(current.default_factory, v) if hasattr(current, "default_factory") else v
            setattr(plugin, k, v)


def _storable(value: Any) -> bool:
    import torch
    from avalanche.training.utils import ParamData

    if isinstance(value, (*_PLAIN, ParamData)) or torch.is_tensor(value):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, (int, str)) and _storable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_storable(v) for v in value)
    return False
