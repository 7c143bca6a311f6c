"""Recurring concepts (:mod:`stream_learner.step.recurring`): a stored concept's model comes back when its concept does, and only then.

The streams are built so the answer is known: concept A labels ``a > b``,
B the opposite (so a model of B is wrong on A almost always), and the
"never recurring" streams label each concept by a feature of its own (so
every stored model is at chance on a later concept).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from state_checks import assert_same_state

from stream_learner.app.runner import RunOptions, run
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError
from stream_learner.events import DriftRecord, Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.from_state import learner_from_state
from stream_learner.state import decode, encode
from stream_learner.step.recurring import ConceptLibrary, ConceptReuse, RecurringConcepts

SEGMENT = 1000
TORCH = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 8, "max_classes": 2}, seed=1)


def _abab(seed: int, concepts: str, n: int = SEGMENT) -> list[Event]:
    """Segments of ``n`` events each: A labels ``a > b``, B labels ``a <= b``."""
    rng = random.Random(seed)
    events = []
    for k in range(len(concepts) * n):
        a, b = rng.random(), rng.random()
        events.append(Event(str(k), "k", {"a": a, "b": b}, (a > b) == (concepts[k // n] == "A"), None, 0, k))
    return events


def _run(config: EngineConfig, events: list[Event]) -> tuple[list[Any], list[Any]]:
    step = KeyedLearner("k", config)
    out = step.process(events, now=0.0)
    return [row["prediction"] for row in out.predictions], [r for r in out.metrics if r["type"] == "drift"]


def _config(spec: LearnerSpec, reuse: ConceptReuse | None) -> EngineConfig:
    return EngineConfig(learner=spec, metrics_every=10**9, forgetting_every=0, concept_reuse=reuse)


@pytest.mark.parametrize("spec", [LearnerSpec("logreg"), TORCH], ids=["logreg", "torch:mlp"])
def test_a_returning_concept_gets_its_model_back(spec: LearnerSpec) -> None:
    events = _abab(0, "ABA")
    third = slice(2 * SEGMENT, 2 * SEGMENT + 300)
    labels = [e.label for e in events[third]]
    accuracy = {}
    for reuse in (None, ConceptReuse()):
        predictions, drifts = _run(_config(spec, reuse), events)
        accuracy[reuse is not None] = sum(p == y for p, y in zip(predictions[third], labels)) / len(labels)
    back = [d for d in drifts if d["detector"] == "recurring"]
    assert accuracy[True] > accuracy[False] + 0.3, accuracy
    assert len(back) == 1 and back[0]["reused_concept"] == 0 and back[0]["concept"] == 2, drifts
    evidence = DriftRecord.model_validate(back[0]).evidence
    assert evidence is not None and evidence.stored_error < evidence.live_error and evidence.p_value < evidence.alpha
    assert 2 * SEGMENT < back[0]["at_event"] <= 2 * SEGMENT + 300  # within the window after the return was detected


@pytest.mark.parametrize("seed", range(5))
def test_concepts_that_never_recur_never_bring_a_stored_model_back(seed: int) -> None:
    rng = random.Random(seed)
    events = []
    for k in range(6 * 600):
        x = {f"f{j}": rng.random() for j in range(6)}
        events.append(Event(str(k), "k", x, x[f"f{k // 600}"] > 0.5, k // 600, 0, k))  # task j: the label is feature j's
    _, drifts = _run(_config(LearnerSpec("logreg"), ConceptReuse()), events)
    assert sum(d["detector"] == "task" for d in drifts) == 5  # each new task's first events tried every stored model
    assert not [d for d in drifts if d["detector"] == "recurring"]


def test_the_library_keeps_at_most_size_models_and_its_state_stops_growing() -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"), detector=None, forgetting_every=0, concept_reuse=ConceptReuse(size=3, window=20, checkpoint_every=100)))
    sizes = []
    rng = random.Random(1)
    for task in range(12):
        step.process([Event(f"{task}.{i}", "k", {"a": rng.random()}, rng.random() > 0.5, task, 0, task * 50 + i) for i in range(50)], now=0.0)
        assert step.reuse is not None and len(step.reuse.library.entries) <= 3
        sizes.append(len(encode(step.reuse.state_dict())))  # the library's part of the snapshot (the forgetting samples grow per concept)
    assert list(step.reuse.library.entries) == [8, 9, 10]  # the least recently used went
    assert max(sizes[4:]) < 1.05 * max(sizes[4:6]) and min(sizes[4:]) > 2 * sizes[0]  # (a checkpoint of the live model comes and goes: at most two)


def test_the_least_recently_used_model_goes_first_and_a_reinstated_one_counts_as_used() -> None:
    library = ConceptLibrary(2)
    library.store(0, {"version": 1})
    library.store(1, {"version": 1})
    library.use(0)
    library.store(2, {"version": 1})
    assert list(library.entries) == [0, 2]
    assert list(ConceptLibrary.from_state(decode(encode(library.state_dict())), size=1).entries) == [2]


@pytest.mark.parametrize("spec", [LearnerSpec("logreg"), TORCH], ids=["logreg", "torch:mlp"])
def test_a_step_restored_mid_trial_goes_on_exactly_as_the_original(spec: LearnerSpec) -> None:
    config = _config(spec, ConceptReuse(checkpoint_every=100))
    events = _abab(2, "ABA")
    step = KeyedLearner("k", config)
    step.process(events[: 2 * SEGMENT + 40], now=0.0)  # the return to A was detected; its trial is under way
    assert step.reuse is not None and step.reuse.trial is not None and len(step.reuse.library.entries) == 2
    restored = KeyedLearner.from_state(decode(encode(step.state_dict())), config)
    assert_same_state(restored.state_dict(), step.state_dict())
    rest = events[2 * SEGMENT + 40 :]
    original, again = step.process(rest, now=1.0), restored.process(rest, now=1.0)
    assert list(again.predictions) == list(original.predictions) and again.metrics == original.metrics
    assert any(r["type"] == "drift" and r["detector"] == "recurring" for r in original.metrics)


def test_reuse_is_off_by_default_and_a_state_without_a_library_starts_an_empty_one() -> None:
    events = _abab(3, "AB", n=300)
    plain = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg")))
    plain.process(events, now=0.0)
    assert plain.reuse is None and plain.state_dict()["concept_reuse"] is None
    state = plain.state_dict()
    del state["concept_reuse"]  # a state written before concept reuse existed
    restored = KeyedLearner.from_state(state, _config(LearnerSpec("logreg"), ConceptReuse()))
    assert restored.reuse is not None and not restored.reuse.library.entries and restored.reuse.trial is None


def test_a_torch_models_strategy_state_comes_back_with_it() -> None:
    spec = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 4, "max_classes": 2}, seed=1, strategy="ewc")
    reuse = RecurringConcepts(ConceptReuse(size=2, window=8, looks=1), spec, "classification")
    learner = build_learner(spec)
    for event in _abab(4, "A", n=64):
        learner.learn(event.features, event.label)
    learner.on_boundary(1)  # EWC computes its importances on concept 0
    left = copy.deepcopy(learner.state_dict())  # a torch state_dict shares the live tensors
    reuse.leave(learner)
    reuse.enter(2)
    for event in _abab(5, "B", n=16):
        learner.learn(event.features, event.label)  # the live model goes on learning: the stored copy does not change
    assert reuse.trial is not None
    assert_same_state(reuse.trial.candidates[0].state_dict(), left)  # weights, optimizer and EWC's importances as they left
    assert left["strategies"][0]  # EWC had something to carry


@pytest.mark.parametrize(
    ("params", "message"), [({"size": 0}, "at least 1"), ({"looks": 0}, "looks"), ({"window": 3, "looks": 4}, "looks"), ({"alpha": 1.0}, "alpha"), ({"checkpoint_every": -1}, "checkpoint_every")]
)
def test_bad_settings_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ConceptReuse(**params)


def test_an_operator_rolls_a_key_back_to_a_stored_concepts_model_or_an_earlier_state() -> None:
    config = _config(LearnerSpec("logreg"), ConceptReuse())
    events = _abab(6, "ABA")
    step = KeyedLearner("k", config)
    step.process(events[:1500], now=0.0)  # A, then B since its boundary
    assert step.reuse is not None and 0 in step.reuse.library.entries
    stored = copy.deepcopy(step.reuse.library.entries[0])
    earlier = decode(encode(step.state_dict()))

    step.install(step.reuse.reinstate(0, step.learner))  # back to the model that served concept 0
    twin = KeyedLearner.from_state({**earlier, "learner": stored}, _config(LearnerSpec("logreg"), None))
    rest = [dataclasses.replace(event, offset=1500 + event.offset) for event in _abab(13, "A", n=200)]  # A is back
    assert [r["prediction"] for r in step.process(rest, now=1.0).predictions] == [r["prediction"] for r in twin.process(rest, now=1.0).predictions]
    assert step.reuse.origin == 0 and 1 in step.reuse.library.entries  # the replaced model is kept as concept 1's

    step.install(learner_from_state(earlier["learner"], config.learner))  # an earlier snapshot's model
    again = KeyedLearner.from_state(earlier, config)
    rest = events[1700:1900]  # an earlier snapshot's model on what followed it
    assert [r["prediction"] for r in step.process(rest, now=2.0).predictions] == [r["prediction"] for r in again.process(rest, now=2.0).predictions]
    with pytest.raises(KeyError):
        step.reuse.reinstate(7, step.learner)


def test_a_full_library_keeps_the_reinstated_model_and_drops_the_least_recently_used() -> None:
    spec = LearnerSpec("logreg")
    reuse = RecurringConcepts(ConceptReuse(size=2, window=40, looks=1), spec, "classification")
    for concept, events in enumerate([_abab(7, "A", n=300), _abab(8, "B", n=300)]):
        learner = build_learner(spec)
        for event in events:
            learner.learn(event.features, event.label)
        reuse.leave(learner)
        reuse.enter(concept + 1)
    assert list(reuse.library.entries) == [0, 1]  # full
    live, back = build_learner(spec), None
    for event in _abab(9, "A", n=40):
        back = reuse.score(event.features, float(live.predict(event.features)[0] != event.label), lambda y, e=event: float(y != e.label), live)
    assert back is not None and back.concept == 0
    assert list(reuse.library.entries) == [0, 2] and reuse.origin == 0  # concept 1's model went, the replaced live one is concept 2's


def test_a_detected_drift_stores_the_model_as_it_was_before_the_detectors_delay() -> None:
    spec = LearnerSpec("logreg")
    reuse = RecurringConcepts(ConceptReuse(checkpoint_every=100), spec, "classification")
    learner = build_learner(spec)
    for i, event in enumerate(_abab(10, "A", n=250)):
        learner.learn(event.features, event.label)
        reuse.learned(learner)
        if i == 99:
            at_100 = copy.deepcopy(learner.state_dict())
    reuse.leave(learner, detected=True)  # the checkpoint of event 100 (the one of event 200 may hold the drift's first events)
    assert_same_state(reuse.library.entries[0], at_100)
    reuse.enter(1)
    for event in _abab(11, "B", n=250):
        learner.learn(event.features, event.label)
        reuse.learned(learner)
    again = RecurringConcepts.from_state(decode(encode(reuse.state_dict())), reuse.settings, spec, "classification")
    assert [at for at, _ in again.checkpoints] == [400, 500]
    assert_same_state(again.state_dict(), reuse.state_dict())
    reuse.leave(learner, detected=False)  # an explicit task: no delay
    assert_same_state(reuse.library.entries[1], learner.state_dict())
    reuse.enter(2)
    for event in _abab(12, "A", n=150):
        learner.learn(event.features, event.label)
        reuse.learned(learner)
    reuse.leave(learner, detected=True)  # one checkpoint only since the concept began: the model as it is
    assert_same_state(reuse.library.entries[2], learner.state_dict())


def test_an_embedded_run_publishes_the_return_of_a_stored_concept(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"features": e.features, "label": e.label}) + "\n" for e in _abab(0, "ABA")))
    engine = EngineConfig(learner=LearnerSpec("logreg"), concept_reuse=ConceptReuse())
    run(RunOptions(source=f"file:{path}", engine=engine, out=tmp_path / "out", progress=False, console=False))
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    back = [DriftRecord.model_validate(r) for r in records if r["type"] == "drift" and r["detector"] == "recurring"]
    assert [(r.reused_concept, r.concept) for r in back] == [(0, 2)] and back[0].evidence is not None


def test_a_regressor_gets_its_model_back_by_wilcoxon_as_it_was_before_the_detectors_delay() -> None:
    rng = random.Random(0)
    events = []
    for k in range(3 * SEGMENT):
        a = rng.random()
        events.append(Event(str(k), "k", {"a": a}, (3 * a if k // SEGMENT != 1 else -3 * a) + rng.gauss(0, 0.1), None, 0, k))  # A, B, A
    third = slice(2 * SEGMENT, 2 * SEGMENT + 300)
    mae = {}
    for reuse in (None, ConceptReuse(checkpoint_every=100)):
        predictions, drifts = _run(_config(LearnerSpec("linreg"), reuse), events)
        mae[reuse is not None] = sum(abs(p - e.label) for p, e in zip(predictions[third], events[third])) / 300
    back = [DriftRecord.model_validate(d) for d in drifts if d["detector"] == "recurring"]
    assert [d.reused_concept for d in back] == [0] and back[0].evidence is not None and back[0].evidence.test == "wilcoxon"
    assert back[0].evidence.stored_error < 0.2  # the model of A before B's first events taught it otherwise
    assert mae[True] < 0.8 * mae[False], mae
