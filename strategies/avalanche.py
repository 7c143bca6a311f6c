"""Any Avalanche plugin by dotted path, driven per micro-batch.

``--strategy avalanche:avalanche.training.plugins.MIRPlugin
--strategy-param batch_size_mem=10`` runs that plugin's hooks inside the learner's
update step (see :mod:`strategies._avalanche`) in Avalanche's order: its
before-training hooks once, when the network is built; its
before-training-experience hooks at the first micro-batch of each concept
(after the output layer grew for that micro-batch's new classes, as
Avalanche adapts the model before an experience starts), with that
micro-batch as the experience's data; its iteration, forward, backward and
update hooks at every micro-batch; its after-training-experience hooks at a
boundary, on the window of the concept that ended, with the window's last
micro-batch as the template's current one. Its snapshot keeps the plugin's
tensors, ``ParamData`` and plain values (containers of them included);
other attributes (a buffer object, a data loader) start afresh on restore.
A plugin keeps what it keeps: some keep state per experience for good
(``EWCPlugin``, ``AGEMPlugin``, ``GEMPlugin``), which the built-in ``ewc``,
``agem`` and ``gem`` bound on an unbounded stream.

The plugin is built when the strategy is, so a bad parameter is a
:class:`~stream_learner.errors.ConfigError` at start-up. A plugin of
``avalanche.training.plugins`` that cannot work per micro-batch is refused
at start-up with the reason (:data:`REFUSED`); so is any plugin overriding
none of the hooks the adapter drives, which would do nothing.

>>> AvalanchePlugin("avalanche.training.plugins.MASPlugin", lambda_reg=1.0).target
'avalanche.training.plugins.MASPlugin'
>>> AvalanchePlugin("os.path")
Traceback (most recent call last):
...
stream_learner.errors.StrategyLoadError: Avalanche plugin 'os.path' is not a class deriving from avalanche's SupervisedPlugin
>>> AvalanchePlugin("avalanche.training.plugins.MASPlugin", bogus=1)
Traceback (most recent call last):
...
stream_learner.errors.ConfigError: bad parameters for Avalanche plugin 'avalanche.training.plugins.MASPlugin': MASPlugin.__init__() got an unexpected keyword argument 'bogus'
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from typing import Any

import torch

from strategies._avalanche import HOOKS, AvalancheStrategy, _template_module, overrides_hook, pack, point_at_window, quietly, unpack
from stream_learner.errors import ConfigError, StrategyLoadError
from stream_learner.learners.strategy import TrainStep

_PLAIN = (int, float, str, bool, type(None))

RUNS = (
    "AGEMPlugin",
    "EWCPlugin",
    "FromScratchTrainingPlugin",
    "GEMPlugin",
    "LwFPlugin",
    "MASPlugin",
    "MIRPlugin",
    "RARPlugin",
    "RWalkPlugin",
)
"""The plugins of ``avalanche.training.plugins`` (avalanche-lib 0.6.0) that work per micro-batch."""

_NCM = "it updates a nearest-class-mean head: it needs a model whose eval_classifier is Avalanche's NCMClassifier (a TrainEvalModel)"
_FECAM = "it updates a FeCAM head: it needs a model whose eval_classifier is Avalanche's FeCAMClassifier (a TrainEvalModel)"
_LOADER = "it replays its memory only through the experience's data loader, which a micro-batch stream has none of"

REFUSED: dict[str, str] = {
    "BiCPlugin": "it trains a bias-correction layer for stage_2_epochs epochs on a validation split held out of each whole experience",
    "CWRStarPlugin": "it needs the network at construction and freezes every layer but a named output layer (a pre-trained network); the learner builds its network at the first event",
    "CoPEPlugin": "it classifies by nearest prototype in evaluation hooks, which the learner's predictions do not go through, and needs a network that outputs a p_size embedding",
    "CurrentDataFeCAMUpdate": _FECAM,
    "CurrentDataNCMUpdate": _NCM,
    "EarlyStoppingPlugin": "it stops training on a validation stream's metric between epochs; a stream has neither",
    "FeCAMOracle": _FECAM,
    "FeatureDistillationPlugin": "it needs a network that keeps its features in model.features (Avalanche's FeatureExtractorModel); the learner's networks do not",
    "GDumbPlugin": "it works only in dataset-adaptation hooks (it retrains on its class-balanced memory in place of each whole experience): it would do nothing; --strategy gdumb is GDumb per micro-batch",
    "GSS_greedyPlugin": f"{_LOADER}: it would only choose samples, never replay them",
    "GenerativeReplayPlugin": "it needs a generator strategy (generator_strategy) trained on whole experiences beside the model",
    "LFLPlugin": "it needs a network with get_features() (Avalanche's BaseModel); the learner's networks have none",
    "LRSchedulerPlugin": "it needs a torch scheduler built on the strategy's optimizer, which the learner builds (and rebuilds when a class is added); set the learner's lr",
    "MemoryFeCAMUpdate": _FECAM,
    "MemoryNCMUpdate": _NCM,
    "NCMOracle": _NCM,
    "ReplayPlugin": f"{_LOADER}: it would do nothing; --strategy replay drives Avalanche's replay buffer per micro-batch",
    "SupervisedPlugin": "it is the plugins' base class and does nothing",
    "SynapticIntelligencePlugin": "its importances stay zero on the CPU (it keeps views of the parameters, not copies, so no update moves them): it would do nothing",
    "TrainGeneratorAfterExpPlugin": "it trains the generator of GenerativeReplayPlugin's generator strategy, which it needs, after each whole experience",
}
"""The other plugins of ``avalanche.training.plugins`` (avalanche-lib 0.6.0), each with why it cannot work per micro-batch."""


class AvalanchePlugin(AvalancheStrategy):
    """Any Avalanche plugin by dotted path: avalanche:avalanche.training.plugins.NAME (parameters as strategy params).

    Args:
        target: the plugin class's dotted path (the part after ``avalanche:``).
        **params: the plugin's own constructor parameters (``--strategy-param NAME=VALUE``).
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"target": "avalanche.training.plugins.MASPlugin", "lambda_reg": 1.0}

    def __init__(self, target: str = "", **params: Any) -> None:
        if not target:
            raise ConfigError("the avalanche strategy needs a plugin: --strategy avalanche:package.module.PluginClass")
        self.target = target
        self.cls = self._import(target)
        refused = refusal(self.cls)
        if refused:
            raise StrategyLoadError(f"Avalanche plugin {target!r} cannot run per micro-batch: {refused}")
        try:
            self.plugin = quietly(lambda: self.cls(**params))
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"bad parameters for Avalanche plugin {target!r}: {exc}") from None
        except Exception as exc:  # any other failure of third-party code building itself: still one line at start-up
            raise StrategyLoadError(f"Avalanche plugin {target!r} failed to build: {type(exc).__name__}: {exc}") from None
        self.starting = False  # the next micro-batch starts an experience: its before-training-experience hooks run first

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
        return [self.plugin]

    def setup(self, model: Any, optimizer: Any, criterion: Any, device: Any) -> None:
        first = self.template is None
        super().setup(model, optimizer, criterion, device)
        if first:
            self._run("before_training")
            self.starting = True

    def before_step(self, step: TrainStep) -> None:
        if self.starting:
            self._begin_experience(step)
        super().before_step(step)

    def _begin_experience(self, step: TrainStep) -> None:
        """The before-training-experience hooks, with the concept's first micro-batch as the experience's data."""
        template = self.template
        point_at_window(template, step.x[: step.new], step.y[: step.new], step.task[: step.new])
        try:
            quietly(lambda: self._run("before_training_exp"))
        finally:
            template.experience = None
            template.adapted_dataset = None
        self.starting = False

    def on_boundary(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> None:
        template = self.template
        if template is None:
            return
        last = max(1, template.train_mb_size)  # as after Avalanche's loop, the experience's last micro-batch is the current one (MIR reads its labels)
        template.mbatch = [x[-last:], y[-last:], task[-last:]]
        try:
            super().on_boundary(x, y, task)
        finally:
            template.mbatch = None

    def after_boundary(self) -> None:
        self.starting = True

    def _attributes(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self.plugin).items() if _storable(v)}

    def state_dict(self) -> dict[str, Any]:
        if self.template is None:
            return {}
        return {**super().state_dict(), "starting": self.starting, "plugin": pack(self._attributes())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (older layouts are upgraded by :func:`~stream_learner.state.avalanche_plugin_state`)."""
        if not state:
            return
        super().load_state_dict(state)
        self.starting = state["starting"]
        plugin = self.plugin
        for k, v in unpack(state["plugin"], self.template.device).items():
            current = getattr(plugin, k, None)
            if isinstance(current, tuple) and isinstance(v, list):
                v = tuple(v)
            elif isinstance(current, defaultdict):
                v = defaultdict(current.default_factory, v)
            elif isinstance(current, dict) and type(current) is not dict:  # an OrderedDict (a state_dict the plugin copied)
                v = type(current)(v)
            setattr(plugin, k, v)


def refusal(cls: type) -> str:
    """Why the plugin class ``cls`` cannot work per micro-batch, or ``""`` when it can (as far as its hooks tell).

    >>> from avalanche.training.plugins import EWCPlugin, GDumbPlugin, SupervisedPlugin
    >>> refusal(EWCPlugin)
    ''
    >>> refusal(GDumbPlugin).startswith("it works only in dataset-adaptation hooks")
    True
    >>> class Quiet(SupervisedPlugin):
    ...     def after_eval_iteration(self, strategy, **kwargs): pass
    >>> refusal(Quiet)
    'it overrides none of the hooks run per micro-batch or at a boundary (training iteration, forward, backward, update, experience): it would do nothing'
    """
    from avalanche.training import plugins

    name = cls.__name__
    if getattr(plugins, name, None) is cls and name in REFUSED:
        return REFUSED[name]
    if not any(overrides_hook(cls, hook) for hook in HOOKS):
        return "it overrides none of the hooks run per micro-batch or at a boundary (training iteration, forward, backward, update, experience): it would do nothing"
    return ""


def _storable(value: Any) -> bool:
    from avalanche.training.utils import ParamData

    if isinstance(value, (*_PLAIN, ParamData)) or torch.is_tensor(value):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, (int, str)) and _storable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_storable(v) for v in value)
    return False
