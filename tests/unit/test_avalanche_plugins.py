"""Every plugin of ``avalanche.training.plugins`` through the generic adapter: it works per micro-batch, or it is refused at start-up.

A plugin that works changes the predictions (their probabilities) against ``naive`` on a stream
whose concepts change (all classes present from the first micro-batch, so
the output layer never grows and nothing but the plugin tells the two runs
apart) and raises nowhere on a class-incremental stream (the output layer
grows at each concept). A refused one fails at start-up with its reason. A
plugin added by a later Avalanche fails :func:`test_every_plugin_has_a_verdict`
until it is classified.
"""

from __future__ import annotations

import importlib
import inspect
import io
import re
import sys
import types
from typing import Any

import pytest
import torch

from strategies._avalanche import quietly
from strategies.avalanche import REFUSED, RUNS, AvalanchePlugin
from stream_learner.errors import ConfigError, StrategyLoadError
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.torch import TorchLearner


def _plugin_names() -> list[str]:
    plugins = quietly(lambda: importlib.import_module("avalanche.training.plugins"))  # its first import warns
    from avalanche.core import BasePlugin

    return sorted(n for n, obj in vars(plugins).items() if inspect.isclass(obj) and issubclass(obj, BasePlugin))


PLUGINS = _plugin_names()

PARAMS: dict[str, dict[str, Any]] = {  # settings strong enough to show in a 90-event stream
    "AGEMPlugin": {"patterns_per_experience": 20, "sample_size": 10},
    "EWCPlugin": {"ewc_lambda": 10.0},
    "FromScratchTrainingPlugin": {},
    "GEMPlugin": {"patterns_per_experience": 20, "memory_strength": 0.5},
    "LwFPlugin": {"alpha": 10.0},
    "MASPlugin": {"lambda_reg": 10.0},
    "MIRPlugin": {"batch_size_mem": 5, "mem_size": 30, "subsample": 20},
    "RARPlugin": {"batch_size_mem": 5, "mem_size": 30},
    "RWalkPlugin": {"ewc_lambda": 10.0},
}


def _spec(strategy: str | None, params: dict[str, Any] | None = None, **learner: Any) -> LearnerSpec:
    return LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5, **learner}, seed=3, strategy=strategy, strategy_params=params or {})


def _stream(class_incremental: bool, concepts: int = 3, per_concept: int = 30) -> list[tuple[dict[str, float], int, int]]:
    """``(features, label, concept)``: class-incremental (two new classes per concept) or the same three classes whose feature moves per concept.

    The latter ends each concept with a micro-batch of one class (MIR replays the classes absent from an experience's last micro-batch).
    """
    g = torch.Generator().manual_seed(11)
    events = []
    for c in range(concepts):
        for i in range(per_concept):
            y = 2 * c + i % 2 if class_incremental else (i % 3 if i < per_concept - 5 else c % 3)
            column = y if class_incremental else (y + c) % 3
            x = 0.3 * torch.randn(2 * concepts, generator=g)
            x[column] += 2.0
            events.append(({f"f{k}": float(v) for k, v in enumerate(x)}, y, c))
    return events


def _predictions(spec: LearnerSpec, events: list[tuple[dict[str, float], int, int]]) -> list[Any]:
    """Test-then-train predictions with their probabilities (equal to the last bit where a plugin does nothing); any exception of the learner fails the test."""
    learner = build_learner(spec)
    concept, predictions = 0, []
    for x, y, c in events:
        if c != concept:
            concept = c
            learner.on_boundary(c)
        predictions.append(learner.predict(x))
        learner.learn(x, y)
    return predictions


def _register(monkeypatch: pytest.MonkeyPatch, module_name: str, cls: type) -> None:
    """Make ``cls`` importable as ``module_name.<its name>`` for the test's duration."""
    module = types.ModuleType(module_name)
    setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, module_name, module)


def test_every_plugin_has_a_verdict() -> None:
    """A plugin a later Avalanche adds fails here until it is put in RUNS or REFUSED."""
    assert not set(RUNS) & set(REFUSED)
    assert sorted([*RUNS, *REFUSED]) == PLUGINS
    assert set(PARAMS) == set(RUNS)


@pytest.mark.parametrize("name", PLUGINS)
def test_each_plugin_works_per_micro_batch_or_is_refused_at_start_up(name: str) -> None:
    target = f"avalanche.training.plugins.{name}"
    if name in REFUSED:
        with pytest.raises(StrategyLoadError, match=f"^Avalanche plugin '{re.escape(target)}' cannot run per micro-batch: {re.escape(REFUSED[name])}$"):
            build_learner(_spec(f"avalanche:{target}", PARAMS.get(name)))
        return
    domain = _stream(class_incremental=False)
    assert _predictions(_spec(f"avalanche:{target}", PARAMS[name]), domain) != _predictions(_spec(None), domain)
    classes = _stream(class_incremental=True)
    assert len(_predictions(_spec(f"avalanche:{target}", PARAMS[name]), classes)) == len(classes)


@pytest.mark.parametrize("name", RUNS)
def test_each_plugin_that_works_works_with_the_next_class_row_too(name: str) -> None:
    """The learner's next-class row changes its loss (per-sample losses included: MIR asks for them) and its head's width."""
    classes = _stream(class_incremental=True)
    spec = _spec(f"avalanche:avalanche.training.plugins.{name}", PARAMS[name], next_class_row=True)
    assert len(_predictions(spec, classes)) == len(classes)


def test_a_bad_parameter_is_a_config_error_when_the_strategy_is_built() -> None:
    with pytest.raises(ConfigError, match=r"^bad parameters for Avalanche plugin 'avalanche.training.plugins.MASPlugin': .*'bogus'$"):
        build_learner(_spec("avalanche:avalanche.training.plugins.MASPlugin", {"bogus": 1}))
    with pytest.raises(ConfigError, match=r"^bad parameters for Avalanche plugin 'avalanche.training.plugins.MIRPlugin': .*batch_size_mem"):
        build_learner(_spec("avalanche:avalanche.training.plugins.MIRPlugin"))


def test_a_plugin_failing_to_build_is_one_error_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from avalanche.training.plugins import SupervisedPlugin

    class Unbuildable(SupervisedPlugin):
        def __init__(self) -> None:
            raise RuntimeError("no GPU here")

        def before_backward(self, strategy: Any, **kwargs: Any) -> None:
            raise AssertionError("never called")

    _register(monkeypatch, "unbuildable_plugin", Unbuildable)
    with pytest.raises(StrategyLoadError, match=r"^Avalanche plugin 'unbuildable_plugin.Unbuildable' failed to build: RuntimeError: no GPU here$"):
        build_learner(_spec("avalanche:unbuildable_plugin.Unbuildable"))


def test_a_plugin_overriding_no_hook_the_adapter_runs_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from avalanche.training.plugins import SupervisedPlugin

    class EvaluationOnly(SupervisedPlugin):
        def after_eval_iteration(self, strategy: Any, **kwargs: Any) -> None:
            raise AssertionError("never called")

    _register(monkeypatch, "evaluation_only_plugin", EvaluationOnly)
    with pytest.raises(StrategyLoadError, match="evaluation_only_plugin.EvaluationOnly' cannot run per micro-batch: it overrides none of the hooks"):
        AvalanchePlugin("evaluation_only_plugin.EvaluationOnly")


def test_the_experience_hooks_run_after_the_output_layer_grew_for_the_concepts_new_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Avalanche adapts the model, then starts the experience: a plugin's per-parameter state there has the grown shapes."""
    from avalanche.training.plugins import SupervisedPlugin

    seen: list[tuple[int, int]] = []  # (the highest class index of the experience's data, the output layer's width)

    class HeadWidth(SupervisedPlugin):
        def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
            labels = list(strategy.experience.dataset.targets)
            assert len(labels) == 5  # the concept's first micro-batch
            seen.append((max(labels), strategy.model.head.out_features))

    _register(monkeypatch, "head_width_plugin", HeadWidth)
    _predictions(_spec("avalanche:head_width_plugin.HeadWidth"), _stream(class_incremental=True))
    assert len(seen) == 3 and all(label < width for label, width in seen)


def test_a_restored_learner_starts_the_pending_experience_as_the_original_would() -> None:
    """A snapshot between a boundary and the next micro-batch keeps that the next micro-batch starts an experience."""
    spec = _spec("avalanche:avalanche.training.plugins.FromScratchTrainingPlugin")
    events = _stream(class_incremental=False)
    learner = build_learner(spec)
    for x, y, _ in events[:30]:
        learner.learn(x, y)
    learner.on_boundary(1)
    saved = io.BytesIO()
    torch.save(learner.state_dict(), saved)  # as snapshots hold it: loaded with weights_only
    restored = build_learner(spec)
    restored.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
    assert restored.strategies[0].starting and learner.strategies[0].starting
    for x, y, _ in events[30:40]:
        learner.learn(x, y)
        restored.learn(x, y)
    assert all(torch.equal(a, b) for a, b in zip(learner.model.parameters(), restored.model.parameters()))


@pytest.mark.parametrize("name", ["EWCPlugin", "MASPlugin"])
def test_a_restored_learner_runs_the_boundary_hooks_at_the_original_micro_batch_size(name: str) -> None:
    """A concept that ends before the restored learner's first full micro-batch: its boundary hooks see the learner's micro-batch size, kept in the state.

    EWC and MAS compute their importances over batches of that size.
    """
    spec = _spec(f"avalanche:avalanche.training.plugins.{name}", PARAMS[name])
    events = _stream(class_incremental=False)
    learner = build_learner(spec)
    assert isinstance(learner, TorchLearner)
    for x, y, _ in events[:30]:
        learner.learn(x, y)
    learner.on_boundary(1)
    for x, y, _ in events[30:40]:  # two full micro-batches: nothing pending
        learner.learn(x, y)
    restored = TorchLearner.from_state(learner.state_dict(), spec)
    for x, y, _ in events[40:43]:
        learner.learn(x, y)
        restored.learn(x, y)
    learner.on_boundary(2)
    restored.on_boundary(2)
    for x, y, _ in events[43:60]:
        assert restored.predict(x) == learner.predict(x)
        learner.learn(x, y)
        restored.learn(x, y)
    assert learner.model is not None and restored.model is not None
    assert all(torch.equal(a, b) for a, b in zip(learner.model.parameters(), restored.model.parameters()))
