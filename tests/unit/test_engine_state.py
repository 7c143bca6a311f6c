"""The learner step's state as data: ``from_state(step.state_dict())`` goes on exactly as the original.

Each case runs a step through boundaries, delayed labels and a schema
refusal, stores its state as a snapshot would (encoded, decoded), restores
it, and feeds both the same next events: the same predictions, records,
dead letters and counters, and the same state again afterwards.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from state_checks import assert_same_state

from stream_learner.delayed import LabelRecord
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import SnapshotError
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.state import decode, encode
from stream_learner.step.cadence import Cadence
from stream_learner.step.concepts import ConceptTracker
from stream_learner.step.resume import ResumeFilter

CASES = {
    "logreg, tasks, delayed labels": EngineConfig(learner=LearnerSpec("logreg"), detector=None, label_window=50, metrics_every=40),
    "hoeffding_tree+reset, drift, new labels, feature drift": EngineConfig(
        learner=LearnerSpec("hoeffding_tree", strategy="reset"), new_label_gap=60, metrics_every=40, feature_drift={"window": 40, "every": 20}, boundaries="both"
    ),
    "torch:mlp+ewc": EngineConfig(learner=LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=1, strategy="ewc"), metrics_every=40),
}


def _items(start: int, n: int, tasks: bool) -> list[Any]:
    """Events from offset ``start``: classes grow with the offset, every fifth label arrives late, one event has a string feature."""
    rng = random.Random(start)
    items: list[Any] = []
    for i in range(start, start + n):
        label = i // 150 * 2 + rng.randrange(2)
        x: dict[str, Any] = {f"f{j}": (label == j) + rng.gauss(0.0, 0.3) for j in range(6)}
        if i % 97 == 0:
            x["f0"] = "text"  # a schema dead letter
        late = i % 5 == 0
        items.append(Event(f"e{i}", "k", x, None if late else label, i // 150 if tasks else None, 0, i))
        if late:
            items.append(LabelRecord(f"e{i}", "k", label))
    return items


def _run(step: KeyedLearner, items: list[Any]) -> list[Any]:
    outs = []
    for start in range(0, len(items), 40):
        out = step.process(items[start : start + 40], now=1.0)
        outs.append((list(out.predictions), out.metrics, out.dead_letters))
    return outs


@pytest.mark.parametrize("case", CASES)
def test_a_restored_step_goes_on_exactly_as_the_original(case: str) -> None:
    config = CASES[case]
    tasks = case.startswith("logreg")
    step = KeyedLearner("k", config)
    _run(step, _items(0, 400, tasks))
    restored = KeyedLearner.from_state(decode(encode(step.state_dict())), config)
    assert_same_state(restored.state_dict(), step.state_dict())

    nxt = _items(400, 200, tasks)
    assert _run(restored, nxt) == _run(step, nxt)
    assert (restored.events, restored.learned, restored.concept, restored.concepts, restored.drifts, restored.failures) == (
        step.events,
        step.learned,
        step.concept,
        step.concepts,
        step.drifts,
        step.failures,
    )
    assert step.concepts > 1 and step.events > 500
    # all but a tree's model: river's Gaussian, in a tree's new leaves, draws an unseeded RNG (it predicts the same, above)
    after, expected = restored.state_dict(), step.state_dict()
    if "hoeffding" in case:
        del after["learner"], expected["learner"]
    assert_same_state(after, expected)


def test_a_restored_step_skips_what_it_learned_and_takes_this_runs_settings() -> None:
    step = KeyedLearner("k", EngineConfig(detector=None, metrics_every=1000))
    _run(step, _items(0, 100, tasks=False))
    config = EngineConfig(detector=None, metrics_every=10, new_label_gap=20, label_window=5)
    restored = KeyedLearner.restore(step.snapshot().payload, config)
    out = restored.process(_items(90, 20, tasks=False), now=2.0)  # offsets 90 to 99 were learned before
    assert [p["id"] for p in out.predictions][:1] == ["e100"] and restored.next_offsets == {0: 110}
    assert restored.cadence.metrics_every == 10 and restored.concept_tracker.new_labels is not None and restored.pending is not None


def test_a_state_of_another_model_or_a_later_layout_is_refused_in_one_line() -> None:
    state = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"))).state_dict()
    with pytest.raises(SnapshotError, match="^snapshot of key 'k' holds model 'logreg' {}, but this run asks for 'hoeffding_tree' {}$"):
        KeyedLearner.from_state(state, EngineConfig(learner=LearnerSpec("hoeffding_tree")))
    with pytest.raises(SnapshotError, match="the learner step"):
        KeyedLearner.from_state({**state, "version": 2}, EngineConfig(learner=LearnerSpec("logreg")))


def test_the_steps_parts_round_trip() -> None:
    tracker = ConceptTracker()
    tracker.task("a")
    tracker.enter(tracker.task(7) or 0)
    tracker.drift()
    again = ConceptTracker.from_state(decode(encode(tracker.state_dict())), None)
    assert (again.concept, again.concepts, again.drifts, again.tasks) == (1, 2, 1, {"a": 0, 7: 1})
    assert again.task("a") == 0 and again.task(7) is None

    resume = ResumeFilter({0: 5, 3: 2})
    assert ResumeFilter.from_state(decode(encode(resume.state_dict()))).next_offsets == {0: 5, 3: 2}

    cadence = Cadence(3, 0, 0, 30.0)
    cadence.labelled()
    cadence.counted(4)
    again_cadence = Cadence.from_state(decode(encode(cadence.state_dict())), 2, 0, 0, 30.0)
    assert (again_cadence.since_metrics, again_cadence.since_snapshot, again_cadence.snapshot_at) == (1, 4, cadence.snapshot_at)
    assert again_cadence.labelled()  # this run's setting: every 2
