"""The strategy registry, loading errors, parameters, and what each built-in keeps."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

from strategies.registry import available, table
from stream_learner.errors import ConfigError, StrategyLoadError
from stream_learner.learners import strategy as registry
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner

BUILTINS = {"naive", "ewc", "replay", "lwf", "agem", "lamaml", "avalanche", "reset", "ensemble"}


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    real = registry._entry_points()
    fake = dict(real)
    for name, value in extra.items():
        fake[name] = metadata.EntryPoint(name, value, registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: fake)


def test_builtins_are_registered_through_the_entry_point_group() -> None:
    infos = {i.name: i for i in available()}
    assert BUILTINS <= set(infos)
    assert infos["naive"].families == ("river", "torch")
    assert infos["ewc"].families == ("torch",) and infos["reset"].families == ("river",)
    assert all(infos[n].origin == "stream-learner" and infos[n].description for n in BUILTINS)
    assert {ep.name for ep in metadata.entry_points(group="stream_learner.strategies")} >= BUILTINS
    text = table(list(infos.values()))
    assert text.splitlines()[0].split() == ["NAME", "FAMILIES", "ORIGIN", "DESCRIPTION"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no_such_module_xyz:Thing", r"strategy plug-in 'bad' \(no_such_module_xyz:Thing, .*\) failed to import: ModuleNotFoundError"),
        ("json:dumps", r"strategy plug-in 'bad' \(json:dumps.*\) is not a strategy"),
        ("collections:OrderedDict", r"is not a strategy"),
        ("strategies.river:ResetOnDrift", r"strategy plug-in 'bad' .* supports river models, not torch models"),
    ],
)
def test_a_broken_plug_in_fails_with_one_error_naming_it(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    _fake_entry_points(monkeypatch, bad=value)
    with pytest.raises(StrategyLoadError, match=message):
        registry.load_strategies("bad", {}, "torch")
    listed = {i.name: i for i in available()}
    if "supports" not in message:
        assert listed["bad"].description.startswith("(cannot load:")


def test_a_class_missing_hooks_is_not_a_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    module = types.ModuleType("fake_strategy_mod")

    class Half:
        families = frozenset({"torch"})

        def penalty(self, step):  # noqa: ANN001, ANN201
            return None

    module.Half = Half
    monkeypatch.setitem(__import__("sys").modules, "fake_strategy_mod", module)
    _fake_entry_points(monkeypatch, half="fake_strategy_mod:Half")
    with pytest.raises(StrategyLoadError, match="is not a torch strategy: it lacks setup"):
        registry.load_class("half")


def test_unknown_names_and_parameters_are_readable_errors() -> None:
    with pytest.raises(StrategyLoadError, match="unknown strategy 'ewk'; installed strategies: .*ewc"):
        registry.load_strategies("ewk", {}, "torch")
    with pytest.raises(ConfigError, match="no strategy of 'ewc' takes parameter 'mem_size'"):
        registry.load_strategies("ewc", {"mem_size": 3}, "torch")
    with pytest.raises(ConfigError, match="strategy 'replay' has no parameter 'lambda'"):
        registry.load_strategies("ewc+replay", {"replay.lambda": 3}, "torch")
    with pytest.raises(ConfigError, match="EWC mode must be"):
        registry.load_strategies("ewc", {"mode": "sometimes"}, "torch")
    with pytest.raises(ConfigError, match="names the same strategy twice"):
        registry.load_strategies("ewc+ewc", {}, "torch")
    assert len(registry.load_strategies("lamaml+naive", {}, "torch")) == 2
    with pytest.raises(ConfigError, match="without a strategy"):
        build_learner(LearnerSpec("torch:mlp", strategy_params={"ewc_lambda": 1}))


def test_two_strategies_that_own_the_update_cannot_be_combined(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, lamaml2="strategies.lamaml:LaMAML")
    with pytest.raises(ConfigError, match="lamaml and lamaml2 each perform the whole update"):
        registry.load_strategies("lamaml+lamaml2", {}, "torch")


def test_combination_routes_parameters() -> None:
    ewc, replay = registry.load_strategies("ewc+replay", {"ewc_lambda": 5, "replay.mem_size": 7, "decay_factor": 0.5}, "torch")
    assert (ewc.ewc_lambda, ewc.decay_factor, replay.mem_size) == (5.0, 0.5, 7)


def _run(spec: LearnerSpec, concepts: int, per_concept: int = 30, classes_per_concept: int = 2) -> object:
    learner = build_learner(spec)
    g = torch.Generator().manual_seed(0)
    for c in range(concepts):
        for _ in range(per_concept):
            x = torch.randn(5, generator=g)
            learner.learn({f"f{j}": float(v) for j, v in enumerate(x)}, c * classes_per_concept + int(x[0] > 0))
        learner.on_boundary(c + 1)
    return learner


def test_ewc_separate_keeps_a_bounded_number_of_anchors() -> None:
    learner = _run(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy="ewc", strategy_params={"mode": "separate", "max_anchors": 3}), concepts=6, classes_per_concept=0)
    ewc = learner.strategies[0]
    assert ewc.anchors == 3 and ewc.experiences == 3
    online = _run(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy="ewc"), concepts=4, classes_per_concept=0).strategies[0]
    assert online.anchors == 1


def test_ewc_penalty_is_zero_before_the_first_boundary_and_positive_after() -> None:
    from stream_learner.learners.strategy import TrainStep

    learner = _run(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy="ewc", strategy_params={"ewc_lambda": 10.0}), concepts=0)
    assert learner.model is None
    learner = _run(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy="ewc", strategy_params={"ewc_lambda": 10.0}), concepts=1, classes_per_concept=0)
    ewc = learner.strategies[0]
    x, y = torch.randn(4, 5), torch.zeros(4, dtype=torch.long)
    step = TrainStep(learner.model, learner.optimizer, learner.criterion, x, y, torch.zeros(4, dtype=torch.long), 4)
    step.logits = learner.model(x)
    step.loss = learner.criterion(step.logits, y)
    assert ewc.penalty(step).detach().item() == 0.0  # weights still equal the anchor
    with torch.no_grad():
        for p in learner.model.parameters():
            p.add_(0.1)
    assert ewc.penalty(step).detach().item() > 0.0


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
def test_replay_buffer_is_bounded_and_compact(policy: str) -> None:
    learner = _run(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy="replay", strategy_params={"mem_size": 20, "policy": policy}), concepts=5)
    replay = learner.strategies[0]
    assert len(replay) == 20
    x, y, _ = replay.memory
    assert x.shape == (20, 5) and set(y.tolist()) <= set(range(10))
    if policy == "class_balanced":
        counts = torch.bincount(y, minlength=10)
        assert counts.max() - counts[counts > 0].min() <= 1  # equal shares of the buffer per seen class
    buffer = replay.storage.buffer
    assert len(buffer) == 20 and len(buffer._datasets) <= 10  # no chain of parent windows


def test_agem_keeps_a_bounded_number_of_experiences_and_does_not_crash_past_sample_size() -> None:
    learner = _run(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy="agem", strategy_params={"sample_size": 3, "patterns_per_experience": 4, "max_experiences": 2}), concepts=6, per_concept=10)
    agem = learner.strategies[0]
    assert len(agem.memory) == 2 and all(len(b[1]) == 4 for b in agem.memory)


def test_lwf_keeps_a_teacher_after_a_boundary() -> None:
    learner = _run(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy="lwf"), concepts=2)
    lwf = learner.strategies[0]._lwf
    assert lwf.prev_model is not None and lwf.prev_classes_by_task[0] == {0, 1, 2, 3}


def test_lamaml_needs_forward_with_a_task_argument() -> None:
    learner = build_learner(LearnerSpec("torch:torch.nn:Linear", {"batch_size": 2}, strategy="lamaml"))
    with pytest.raises(ConfigError, match=r"La-MAML needs a network with forward\(x, t\)"):
        for i in range(2):
            learner.learn({"a": float(i)}, i)


def test_generic_avalanche_adapter() -> None:
    with pytest.raises(StrategyLoadError, match="cannot import Avalanche plugin"):
        build_learner(LearnerSpec("torch:mlp", strategy="avalanche:avalanche.training.plugins.NoSuchPlugin"))
    with pytest.raises(ConfigError, match="needs a plugin"):
        build_learner(LearnerSpec("torch:mlp", strategy="avalanche"))
    learner = _run(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, strategy="avalanche:avalanche.training.plugins.MASPlugin", strategy_params={"lambda_reg": 1.0}), concepts=2)
    mas = learner.strategies[0].plugins[0]
    assert mas.importance is not None and learner.strategies[0].experiences == 2
