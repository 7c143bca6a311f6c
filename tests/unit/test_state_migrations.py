"""Older layouts of the parts' states restore, upgraded once in :mod:`stream_learner.state`, as the releases that wrote them resumed; current layouts pass unchanged.

Each old layout is made from a current state by taking away what later
releases added (or marking it with the older version), and restores as the
same state with the old release's meaning written out: the learner step
without an operator's state or a concept library, a key's slot of
challengers without an operator's state or predictions awaiting labels, the
cadence without its end-of-stream mark, the drift monitor of layout 1, and the Avalanche
strategies without their micro-batch size, deferred experience or trail.
An evicted key's recovery marker has no layout version; one without
``"newest"`` names the exact version to restore.
A-GEM's own upgrade is tested in ``test_agem_state_migration.py``, format-1
snapshots in ``test_snapshot_migration.py``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import torch
from test_agem_state_migration import features, learn_concepts

from connectors.local_store import LocalSnapshotStore
from strategies._avalanche import AvalancheStrategy
from stream_learner.drift import DriftMonitor
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import SnapshotError
from stream_learner.events import Event
from stream_learner.forgetting import ForgettingTracker
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.from_state import learner_from_state
from stream_learner.learners.strategy import available, load_class
from stream_learner.learners.torch import TorchLearner
from stream_learner.residency import EvictingStore, eviction_snapshot, parse_marker
from stream_learner.slot import Slot
from stream_learner.state import avalanche_plugin_state, cadence_state, decode, drift_monitor_state, encode, forgetting_state, learner_step_state, slot_state, torch_learner_state
from stream_learner.step.cadence import Cadence


def _without(state: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in names}


# -- the drift monitor ----------------------------------------------------------


def _errors() -> list[float]:
    rng = random.Random(3)
    return [float(rng.random() < (0.1 if i < 1500 else 0.6 if i < 3000 else 0.05)) for i in range(4500)]


def test_a_version_1_monitor_state_between_detections_keeps_its_running_sum() -> None:
    errors = _errors()
    monitor = DriftMonitor("adwin")
    for e in errors[:1000]:
        monitor.update(e)
    state = monitor.state_dict()
    assert not monitor.detector.drift_detected and state["count"] == 1000 and state["version"] == 2
    old = {**state, "version": 1}
    assert drift_monitor_state(old) == state
    restored = DriftMonitor.from_state(decode(encode(old)))
    later = [i for i, e in enumerate(errors[1000:]) if restored.update(e)]
    assert later and later == [i for i, e in enumerate(errors[1000:]) if monitor.update(e)]


def test_a_current_monitor_state_passes_unchanged() -> None:
    monitor = DriftMonitor("adwin")
    for e in _errors()[:2000]:
        monitor.update(e)
    state = monitor.state_dict()
    assert drift_monitor_state(state) is state


@pytest.mark.parametrize("version", [None, 0, 3])
def test_a_monitor_state_of_a_layout_not_read_is_refused_in_one_line(version: int | None) -> None:
    state = {**DriftMonitor("adwin").state_dict(), "version": version}
    with pytest.raises(SnapshotError, match=rf"^the drift monitor' state has version {version}; this release reads version 2 \(a snapshot of a newer release\?\)$"):
        DriftMonitor.from_state(state)


# -- the learner step ------------------------------------------------------------

CONFIG = EngineConfig(learner=LearnerSpec("logreg"), metrics_every=40)


def _events(start: int, n: int) -> list[Event]:
    rng = random.Random(start)
    events = []
    for i in range(start, start + n):
        label = rng.randrange(2)
        events.append(Event(f"e{i}", "k", {f"f{j}": (label == j) + rng.gauss(0.0, 0.5) for j in range(3)}, label, None, 0, i))
    return events


def _step() -> KeyedLearner:
    step = KeyedLearner("k", CONFIG)
    step.process(_events(0, 200), now=1.0)
    return step


def _predictions(step: KeyedLearner, events: list[Event]) -> list[Any]:
    return [(p["id"], p["prediction"], p.get("proba")) for start in range(0, len(events), 50) for p in step.process(events[start : start + 50], now=1.0).predictions]


def test_a_step_state_from_before_operators_commands_learns_with_none_applied() -> None:
    state = decode(encode(_step().state_dict()))
    old = _without(state, "operator", "concept_reuse")
    restored = KeyedLearner.from_state(old, CONFIG)
    assert not restored.operator.paused and restored.operator.first_time("c-1")
    later = _events(200, 300)
    assert _predictions(restored, later) == _predictions(KeyedLearner.from_state(state, CONFIG), later)
    assert restored.learned == 500


def test_a_current_step_state_passes_unchanged_with_its_operators_state() -> None:
    step = _step()
    step.operator.paused = True
    step.operator.first_time("c-1")
    state = step.state_dict()
    assert learner_step_state(state) is state
    restored = KeyedLearner.from_state(state, CONFIG)
    assert restored.operator.paused and not restored.operator.first_time("c-1")


def test_a_step_state_from_before_concept_reuse_keeps_no_library() -> None:
    state = _step().state_dict()
    assert learner_step_state(_without(state, "concept_reuse")) == {**state, "concept_reuse": None}


def test_a_learner_state_of_a_family_not_known_is_refused_in_one_line() -> None:
    """Not read as a river learner's, which this state would pass for."""
    state = _step().state_dict()["learner"]
    assert state["family"] == "river"
    with pytest.raises(SnapshotError, match=r"^the learner's state is of the family 'sklearn'; this release reads river and torch learners \(a snapshot of a newer release\?\)$"):
        learner_from_state({**state, "family": "sklearn"}, CONFIG.learner)


# -- a key's slot of challengers ---------------------------------------------------------

SLOT_CONFIG = EngineConfig(learner=LearnerSpec("logreg"), challengers=(LearnerSpec("hoeffding_tree"),), detector=None, metrics_every=40, promotion_window=100, min_champion_events=100)


def _slot() -> Slot:
    slot = Slot("k", SLOT_CONFIG)
    slot.process(_events(0, 250), now=1.0)
    return slot


def _slot_goes_on(slot: Slot, events: list[Event]) -> list[Any]:
    """The predictions and metrics-topic records of ``events``, fed 50 at a time."""
    outputs = [slot.process(events[start : start + 50], now=1.0) for start in range(0, len(events), 50)]
    return [([(p["id"], p["prediction"], p.get("proba")) for p in out.predictions], out.metrics) for out in outputs]


@pytest.mark.parametrize("added", [("operator",), ("waiting", "operator")], ids=["before-commands", "before-delayed-evidence"])
def test_a_slot_state_from_before_operators_commands_goes_on_with_none_applied_and_none_waiting(added: tuple[str, ...]) -> None:
    state = decode(encode(_slot().state_dict()))
    assert state["waiting"] == [] and state["operator"] == {"version": 1, "paused": False, "applied": []}
    restored, explicit = Slot.from_state(_without(state, *added), SLOT_CONFIG), Slot.from_state(state, SLOT_CONFIG)
    assert restored.state_dict() == explicit.state_dict()
    later = _events(250, 300)
    assert _slot_goes_on(restored, later) == _slot_goes_on(explicit, later)
    assert restored.state_dict() == explicit.state_dict()


def test_a_current_slot_state_passes_unchanged_with_its_operators_state() -> None:
    slot = _slot()
    slot.operator.first_time("c-1")
    state = slot.state_dict()
    assert slot_state(state) is state
    assert not Slot.from_state(state, SLOT_CONFIG).operator.first_time("c-1")


def test_a_slot_state_of_a_later_layout_is_refused_in_one_line() -> None:
    state = {**_slot().state_dict(), "version": 2}
    with pytest.raises(SnapshotError, match=r"^the challengers' slot' state has version 2; this release reads version 1 \(a snapshot of a newer release\?\)$"):
        Slot.from_state(state, SLOT_CONFIG)


# -- an evicted key's recovery marker --------------------------------------------------------


def test_a_recovery_marker_from_before_final_snapshots_out_of_memory_restores_the_version_it_names(tmp_path: Path) -> None:
    """Such a marker has no ``"newest"``: its key is restored from the version it names, not from a newer one."""
    store = EvictingStore(LocalSnapshotStore(str(tmp_path)), b"key", CONFIG)
    step = KeyedLearner("k", CONFIG)
    step.process(_events(0, 100), now=1.0)
    [named] = store.evict([eviction_snapshot(step)])
    step.process(_events(100, 100), now=1.0)
    [newer] = store.evict([eviction_snapshot(step)])
    marker = parse_marker(b"SLEVICTED\n" + orjson.dumps({"key": "k", "version": named}))
    assert marker == ("k", named, False) and newer > named
    assert store.restore(*marker).events == 100
    assert store.restore("k", named, newest=True).events == 200


# -- the cadence -------------------------------------------------------------------


@pytest.mark.parametrize("finished", [False, True])
def test_a_cadence_state_from_before_the_end_mark_is_not_known_to_have_finished(finished: bool) -> None:
    cadence = Cadence(3, 0, 10, 0.0)
    cadence.counted(4)
    cadence.finished = finished
    state = cadence.state_dict()
    assert cadence_state(state) is state and Cadence.from_state(state, 3, 0, 10, 0.0).finished is finished
    restored = Cadence.from_state(_without(state, "finished"), 3, 0, 10, 0.0)
    assert (restored.finished, restored.since_snapshot, restored.snapshot_at) == (False, 4, cadence.snapshot_at)


def test_a_cadence_state_of_a_later_layout_is_refused_in_one_line() -> None:
    state = {**Cadence(3, 0, 10, 0.0).state_dict(), "version": 2}
    with pytest.raises(SnapshotError, match=r"^the cadence' state has version 2; this release reads version 1 \(a snapshot of a newer release\?\)$"):
        Cadence.from_state(state, 3, 0, 10, 0.0)


# -- the forgetting tracker ---------------------------------------------------------


def _sampled(tracker: ForgettingTracker, start: int, stop: int) -> ForgettingTracker:
    for i in range(start, stop):
        tracker.observe(i // 40, {"x": float(i)}, i % 2)
    return tracker


def _samples(tracker: ForgettingTracker) -> list[Any]:
    return tracker.state_dict()["samples"]


@pytest.mark.parametrize("seed", [42, 7])
def test_a_tracker_that_drew_nothing_keeps_no_rng_and_restored_samples_as_the_original(seed: int) -> None:
    tracker = _sampled(ForgettingTracker(sample_size=5, seed=seed), 0, 3)  # no sample full yet: nothing drawn
    state = tracker.state_dict()
    assert (state["version"], state["seed"], state["rng"]) == (2, seed, None)
    restored = ForgettingTracker.from_state(state)
    assert _samples(_sampled(restored, 3, 200)) == _samples(_sampled(tracker, 3, 200))
    assert _samples(tracker) != _samples(_sampled(ForgettingTracker(sample_size=5, seed=seed + 1), 0, 200))  # the seed decides


def test_a_version_1_tracker_state_goes_on_with_the_rng_it_holds() -> None:
    tracker = _sampled(ForgettingTracker(sample_size=5, seed=3), 0, 60)  # two samples full: the RNG has drawn
    state = tracker.state_dict()
    assert forgetting_state(state) is state and state["rng"] is not None
    old = {**_without(state, "seed"), "version": 1}
    restored = ForgettingTracker.from_state(old)
    assert _samples(_sampled(restored, 60, 300)) == _samples(_sampled(tracker, 60, 300))


def test_a_tracker_state_of_a_later_layout_is_refused_in_one_line() -> None:
    state = {**ForgettingTracker().state_dict(), "version": 3}
    with pytest.raises(SnapshotError, match=r"^the forgetting tracker' state has version 3; this release reads version 2 \(a snapshot of a newer release\?\)$"):
        ForgettingTracker.from_state(state)


# -- the strategies' states in a torch learner -------------------------------------


def _spec(strategy: str, **params: Any) -> LearnerSpec:
    return LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=2, strategy=strategy, strategy_params=params)


def _learn(learner: Any, concepts: range, per_concept: int, seed: int, extra: int = 0) -> list[Any]:
    """Predict then learn ``per_concept`` events of each concept, a boundary after each, then ``extra`` events; the predictions."""
    g = torch.Generator().manual_seed(seed)
    predictions = learn_concepts(learner, concepts, per_concept, g)
    for _ in range(extra):
        x = features(g)
        predictions.append(learner.predict(x))
        learner.learn(x, int(x["f0"] > 0))
    return predictions


def _trained(spec: LearnerSpec) -> TorchLearner:
    learner = build_learner(spec)
    assert isinstance(learner, TorchLearner)
    _learn(learner, range(2), 25, seed=0, extra=12)
    return learner


def _with_strategy_state(state: dict[str, Any], strategy: dict[str, Any]) -> dict[str, Any]:
    return {**state, "strategies": [strategy]}


def _goes_on_alike(a: TorchLearner, b: TorchLearner) -> None:
    """Both learners predict alike through three more concepts (boundaries included) and end with the same network."""
    more_a, more_b = _learn(a, range(2, 5), 20, seed=5), _learn(b, range(2, 5), 20, seed=5)
    assert len(more_a) == 60 and more_a == more_b
    assert a.model is not None and b.model is not None
    assert all(torch.equal(u, v) for u, v in zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_an_ewc_state_from_before_its_batch_and_trail_goes_on_with_both_as_a_template_starts() -> None:
    spec = _spec("ewc")
    learner = _trained(spec)
    state = decode(encode(learner.state_dict()))
    (ewc,) = state["strategies"]
    assert ewc["batch"] == 5 and ewc["trail"]
    old = _with_strategy_state(state, _without(ewc, "batch", "trail"))
    restored = TorchLearner.from_state(old, spec)
    strategy = restored.strategies[0]
    assert strategy.template.train_mb_size == 1 and not strategy.trail.batches
    explicit = TorchLearner.from_state(_with_strategy_state(state, {**_without(ewc, "batch", "trail"), "batch": 1, "trail": []}), spec)
    _goes_on_alike(restored, explicit)


def test_an_avalanche_plugin_state_from_before_deferred_experiences_starts_none() -> None:
    spec = _spec("avalanche:avalanche.training.plugins.MASPlugin", lambda_reg=10.0)
    learner = build_learner(spec)
    assert isinstance(learner, TorchLearner)
    _learn(learner, range(2), 25, seed=0)  # ends at a boundary: the next micro-batch starts an experience
    state = decode(encode(learner.state_dict()))
    (plugin,) = state["strategies"]
    assert plugin["starting"]
    assert TorchLearner.from_state(state, spec).strategies[0].starting
    old = _with_strategy_state(state, _without(plugin, "starting"))
    restored = TorchLearner.from_state(old, spec)
    assert not restored.strategies[0].starting
    explicit = TorchLearner.from_state(_with_strategy_state(state, {**plugin, "starting": False}), spec)
    _goes_on_alike(restored, explicit)


def test_a_plugin_state_before_its_model_existed_holds_nothing_to_upgrade() -> None:
    assert avalanche_plugin_state({}) == {}
    learner = build_learner(_spec("avalanche:avalanche.training.plugins.MASPlugin", lambda_reg=10.0))
    assert isinstance(learner, TorchLearner)
    state = learner.state_dict()
    assert state["strategies"] == [{}] and torch_learner_state(state, [type(s) for s in learner.strategies])["strategies"] == [{}]


def test_a_state_for_another_number_of_strategies_is_refused_not_cut_to_fit() -> None:
    spec = _spec("agem", sample_size=6, patterns_per_experience=10)
    state = _trained(spec).state_dict()
    with pytest.raises(SnapshotError, match="different set of strategies"):
        TorchLearner.from_state({**state, "strategies": state["strategies"] * 2}, spec)


def _avalanche_strategies() -> list[str]:
    """Every installed strategy made of Avalanche plugins (whose base state holds the learner's micro-batch size)."""
    return [info.name for info in available() if "torch" in info.families and issubclass(load_class(info.name), AvalancheStrategy)]


def _test_params(name: str) -> dict[str, Any]:
    hook = getattr(load_class(name), "unit_test_params", None)
    return dict(hook()) if hook is not None else {}


def test_every_avalanche_strategy_is_found() -> None:
    assert {"agem", "avalanche", "ewc", "gem", "lwf", "replay"} <= set(_avalanche_strategies())


@pytest.mark.parametrize("name", _avalanche_strategies())
def test_an_avalanche_strategys_state_keeps_the_micro_batch_size_and_needs_no_upgrade(name: str) -> None:
    spec = _spec(name, **_test_params(name))
    learner = _trained(spec)
    state = decode(encode(learner.state_dict()))
    (strategy,) = state["strategies"]
    assert strategy["batch"] == 5
    assert torch_learner_state(state, [type(s) for s in learner.strategies])["strategies"][0] is strategy
    assert TorchLearner.from_state(state, spec).strategies[0].template.train_mb_size == 5


@pytest.mark.parametrize(("name", "params"), [("gem", {"patterns_per_experience": 7}), ("lwf", {"alpha": 10.0}), ("replay", {"mem_size": 20})])
def test_a_gem_lwf_or_replay_state_without_its_batch_goes_on_as_the_original(name: str, params: dict[str, Any]) -> None:
    """Their states were written without the micro-batch size, upgraded to 1: their boundary hooks give the same result at any size.

    Restored 3 events before a boundary, which runs before the restored
    learner's first full micro-batch.
    """
    spec = _spec(name, **params)
    learner = build_learner(spec)
    assert isinstance(learner, TorchLearner)
    _learn(learner, range(1), 25, seed=0, extra=10)  # two full micro-batches after the boundary: nothing pending
    state = decode(encode(learner.state_dict()))
    (strategy,) = state["strategies"]
    restored = TorchLearner.from_state(_with_strategy_state(state, _without(strategy, "batch")), spec)
    assert restored.strategies[0].template.train_mb_size == 1
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        x = features(g)
        learner.learn(x, int(x["f0"] > 0))
        restored.learn(x, int(x["f0"] > 0))
    assert (learner.strategies[0].template.train_mb_size, restored.strategies[0].template.train_mb_size) == (5, 1)
    learner.on_boundary(2)
    restored.on_boundary(2)
    _goes_on_alike(learner, restored)
