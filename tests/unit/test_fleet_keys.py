"""Cheap model keys (#17): a key's learner made from a prototype is the learner its spec builds.

Every new key's learner comes from ``build_learner``, which keeps one
:class:`~stream_learner.learners.factory.LearnerPrototype` per spec: a river
learner is an unpickled copy of a prototype (or, where that costs more, is
built again), a torch learner is built without re-checking its network.
Either way a key's predictions must be those of a learner built from the
spec alone, event for event; copies must not share state; and a spec
without a seed must keep drawing its own randomness per key.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import Learner, LearnerSpec
from stream_learner.learners.factory import LearnerPrototype, _build, build_learner
from stream_learner.state import decode, encode

RIVER = ["logreg", "hoeffding_tree", "naive_bayes", "arf", "hat", "linreg", "hoeffding_tree_regressor"]


def _examples(n: int, seed: int, regression: bool = False) -> list[tuple[dict[str, float], Any]]:
    """Two features; the label (or target) moves halfway, so that drift-adapting models change too."""
    rng = random.Random(seed)
    out: list[tuple[dict[str, float], Any]] = []
    for i in range(n):
        a, b = rng.random(), rng.random()
        y: Any = (a + b if i < n // 2 else a - b) if regression else (a + b > 1.0) == (i < n // 2)
        out.append(({"a": a, "b": b}, y))
    return out


def _trace(learner: Learner, examples: list[tuple[dict[str, float], Any]]) -> list[Any]:
    trace = []
    for x, y in examples:
        trace.append(learner.predict(x))
        learner.learn(x, y)
    return trace


@pytest.mark.parametrize("copy", [True, False, None], ids=["copied", "rebuilt", "cheaper"])
@pytest.mark.parametrize("model", RIVER)
def test_a_prototypes_learner_predicts_as_one_built_from_the_spec(model: str, copy: bool | None) -> None:
    spec = LearnerSpec(model)
    prototype = LearnerPrototype(spec, copy=copy)
    examples = _examples(600, seed=3, regression=model in ("linreg", "hoeffding_tree_regressor"))
    first, second = prototype.new(), prototype.new()
    expected = _trace(_build(spec), examples)
    assert _trace(first, examples) == expected
    assert _trace(second, examples) == expected  # the first learned 600 events: its copy-mate did not see them
    if copy is not None:
        assert prototype.copies is copy


def test_strategies_are_copied_fresh_with_the_model() -> None:
    spec = LearnerSpec("hoeffding_tree", strategy="reset")
    prototype = LearnerPrototype(spec, copy=True)
    examples = _examples(400, seed=4)
    used = prototype.new()
    _trace(used, examples)
    used.on_boundary(1)
    fresh = prototype.new()
    reference = _build(spec)
    for learner in (fresh, reference):
        _trace(learner, examples[:200])
        learner.on_boundary(1)
    assert _trace(fresh, examples[200:]) == _trace(reference, examples[200:])


def test_a_spec_without_a_seed_is_built_for_each_key() -> None:
    """Copies would share one random state; built ones draw their own (an unseeded forest's members differ between keys, as before)."""
    prototype = LearnerPrototype(LearnerSpec("arf", {"n_models": 3}, seed=None), copy=True)
    assert not prototype.copies
    examples = _examples(300, seed=5)
    traces = [_trace(prototype.new(), examples) for _ in range(3)]
    assert traces[0] != traces[1] or traces[1] != traces[2]


def test_equal_looking_parameters_are_different_specs() -> None:
    """``1`` and ``True`` are equal in Python: their learners are not the same one."""
    as_int = build_learner(LearnerSpec("river.linear_model.LinearRegression", {"intercept_lr": 1}))
    as_float = build_learner(LearnerSpec("river.linear_model.LinearRegression", {"intercept_lr": 1.5}))
    as_bool = build_learner(LearnerSpec("river.linear_model.LinearRegression", {"intercept_lr": True}))
    values = [learner.model.intercept_lr.learning_rate for learner in (as_int, as_float, as_bool)]  # type: ignore[attr-defined]
    assert values == [1, 1.5, True] and [type(v) for v in values] == [int, float, bool]


def _events(n: int, key: str, seed: int, start: int = 0) -> list[Event]:
    return [Event(f"{key}-{start + i}", key, x, y, None, 0, start + i) for i, (x, y) in enumerate(_examples(n, seed))]


def _published(step: KeyedLearner, events: list[Event]) -> list[Any]:
    outs = []
    for i in range(0, len(events), 25):
        out = step.process(events[i : i + 25], now=1.0)
        outs.append((list(out.predictions), [{k: v for k, v in m.items() if k != "ts"} for m in out.metrics]))
    return outs


@pytest.mark.parametrize(
    "spec",
    [LearnerSpec("logreg"), LearnerSpec("arf", {"n_models": 3}), LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 5}, seed=1, strategy="ewc")],
    ids=["logreg", "arf", "torch:mlp+ewc"],
)
def test_many_keys_publish_what_keys_built_from_the_spec_publish(spec: LearnerSpec) -> None:
    """The engine's keys (``build_learner``: the prototype) against keys whose every learner is built from the spec."""
    config = EngineConfig(learner=spec, metrics_every=50, forgetting_every=100)
    for key, seed in [("a", 1), ("b", 2), ("c", 1)]:
        events = _events(200, key, seed)
        cheap = KeyedLearner(key, config)
        built = KeyedLearner(key, config, learner_factory=lambda s: _build(s))
        assert _published(cheap, events) == _published(built, events)


def test_a_restored_key_builds_no_learner_to_throw_away() -> None:
    config = EngineConfig(learner=LearnerSpec("logreg"))
    step = KeyedLearner("k", config)
    step.process(_events(30, "k", 1), now=1.0)
    built: list[LearnerSpec] = []

    def factory(spec: LearnerSpec) -> Learner:
        built.append(spec)
        return build_learner(spec)

    restored = KeyedLearner.from_state(decode(encode(step.state_dict())), config, factory)
    assert built == []
    more = _events(30, "k", 2, start=30)
    assert _published(restored, more) == _published(step, more)


def test_forgetting_off_keeps_nothing_and_changes_no_prediction() -> None:
    on = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"), forgetting_every=50, metrics_every=50))
    off = KeyedLearner("k", EngineConfig(learner=LearnerSpec("logreg"), forgetting_every=50, metrics_every=50, forgetting_sample=0))
    events = _events(300, "k", 6)
    out_on, out_off = _published(on, events), _published(off, events)
    assert [p for p, _ in out_on] == [p for p, _ in out_off]
    assert [(m["type"], m.get("accuracy")) for _, ms in out_on for m in ms] == [(m["type"], m.get("accuracy")) for _, ms in out_off for m in ms]
    forgetting = off.finish(1.0).metrics[0]["forgetting"]
    assert forgetting["matrix"] == [] and forgetting["average_accuracy"] is None and forgetting["concepts"] == 0
    assert on.finish(1.0).metrics[0]["forgetting"]["matrix"]
    state = decode(encode(off.state_dict()))
    assert state["forgetting"]["samples"] == [] and state["forgetting"]["rows"] == []


def test_a_key_restored_from_its_final_snapshot_and_given_nothing_finishes_without_writing() -> None:
    """The end of a resumed fleet writes only the keys that moved; a key restored mid-stream (an eviction) finishes as if it never left."""
    config = EngineConfig(learner=LearnerSpec("logreg"), forgetting_every=0)
    step = KeyedLearner("k", config)
    step.process(_events(40, "k", 1), now=1.0)
    middle = decode(step.snapshot().payload)
    final_out = step.finish(1.0)
    assert final_out.snapshot is not None
    final = decode(final_out.snapshot.payload)

    idle = KeyedLearner.from_state(final, config)
    out = idle.finish(2.0)
    assert out.snapshot is None and [m["type"] for m in out.metrics] == ["metrics"]
    assert idle.state_dict()["forgetting"] == final["forgetting"]  # no evaluation row added

    moved = KeyedLearner.from_state(final, config)
    moved.process(_events(1, "k", 2, start=40), now=2.0)
    assert moved.finish(2.0).snapshot is not None

    left = KeyedLearner.from_state(middle, config)
    ended = left.finish(1.0)
    assert ended.snapshot is not None and decode(ended.snapshot.payload)["forgetting"] == final["forgetting"]


def test_with_forgetting_off_no_report_shows_forgetting_figures(tmp_path: Any) -> None:
    """``--forgetting-sample 0``: the metrics records, the run's summary and its console line carry no forgetting figure (none, not a 1.0 of nothing)."""
    import orjson

    from stream_learner.app.cli import _describe_forgetting
    from stream_learner.app.runner import RunOptions, run

    config = EngineConfig(learner=LearnerSpec("logreg"), forgetting_sample=0, forgetting_every=100, metrics_every=200)
    summary = run(RunOptions(source="synthetic:sea?every=500", engine=config, out=tmp_path, max_events=1500, progress=False, console=False))
    assert summary["forgetting"] == {"average_accuracy": None, "average_mae": None, "average_forgetting": None, "bwt": None, "concepts": 0}
    assert _describe_forgetting(summary["forgetting"]) == ""
    records = [orjson.loads(line) for line in (tmp_path / "metrics.jsonl").read_bytes().splitlines()]
    forgetting = [r["forgetting"] for r in records if r["type"] == "metrics"]
    assert forgetting and all(f["matrix"] == [] and f["average"] is None and f["bwt"] is None and f["average_accuracy"] is None for f in forgetting)


def test_in_snapshot_rounds_a_due_step_only_says_so() -> None:
    """The caller takes the due keys' snapshots together (one fork for many keys), each as the key is when the round is taken."""
    from stream_learner.snapshot import Snapshot

    config = EngineConfig(learner=LearnerSpec("logreg"), snapshot_every=10, snapshot_seconds=0, snapshot_rounds=True)
    steps = [KeyedLearner(key, config) for key in "ab"]
    outs = [step.process(_events(12, step.key, 1), now=1.0) for step in steps]
    assert all(out.snapshot_due and out.snapshot is None for out in outs)
    snapshots = Snapshot.round([step.snapshot_part() for step in steps], background=True)
    for step, snapshot in zip(steps, snapshots):
        assert decode(snapshot.payload) == decode(encode(step.state_dict())) and snapshot.events_seen == 12
        assert step.cadence.since_snapshot == 0
    assert not steps[0].process(_events(3, "a", 2, start=12), now=1.0).snapshot_due
    unrounded = KeyedLearner("c", EngineConfig(learner=LearnerSpec("logreg"), snapshot_every=10, snapshot_seconds=0))
    out = unrounded.process(_events(12, "c", 1), now=1.0)
    assert out.snapshot is not None and not out.snapshot_due


def test_with_forgetting_off_a_key_snapshotted_after_its_last_event_ends_without_writing() -> None:
    config = EngineConfig(learner=LearnerSpec("logreg"), forgetting_sample=0, snapshot_every=10, snapshot_seconds=0)
    still = KeyedLearner("k", config)
    assert still.process(_events(10, "k", 1), now=1.0).snapshot is not None
    assert still.finish(1.0).snapshot is None
    moved = KeyedLearner("k", config)
    moved.process(_events(10, "k", 1), now=1.0)
    assert moved.process(_events(1, "k", 1, start=10), now=1.0).snapshot is None
    assert moved.finish(1.0).snapshot is not None


def test_a_keys_undo_journal_starts_again_at_each_snapshot() -> None:
    """A fleet's key would otherwise keep every example it learned (until Journal.MIN_LOG of them) to undo a failed learn."""
    config = EngineConfig(learner=LearnerSpec("logreg"), snapshot_every=10, snapshot_seconds=0)
    step = KeyedLearner("k", config)
    for i in range(10):
        out = step.process(_events(10, "k", i, start=10 * i), now=1.0)
        assert out.snapshot is not None
        assert out.snapshot.payload  # the writer takes it
        assert len(step.guard.journal.xs) <= 20  # the steps since the snapshot before the last
    assert step.guard.journal.rollback().predict({"a": 0.3, "b": 0.9}) == step.learner.predict({"a": 0.3, "b": 0.9})


@pytest.mark.parametrize("discarded", [False, True], ids=["written", "discarded"])
def test_a_learn_that_raises_after_snapshots_is_undone_exactly(discarded: bool) -> None:
    """Undone from the last snapshot (or, where its bytes never came, from the journal's own checkpoint): as if the event never came."""
    from test_model_errors import Tally, _pairs

    from stream_learner.learners.river import RiverLearner

    def step() -> KeyedLearner:
        return KeyedLearner("default", EngineConfig(detector=None, snapshot_every=7, snapshot_seconds=0), learner_factory=lambda spec: RiverLearner(Tally()))

    pairs = _pairs(60)
    boom = ({"x": 1000.0, "boom": 1.0, "bad": 0.0}, "b")
    events = [Event(f"e{i}", "default", x, y, None, 0, i) for i, (x, y) in enumerate(pairs[:33] + [boom] + pairs[33:])]
    failing, clean = step(), step()
    dead = []
    for i in range(0, len(events), 5):
        out = failing.process(events[i : i + 5], now=0.0)
        dead += out.dead_letters
        if out.snapshot is not None:
            if discarded:
                out.snapshot.discard()
            else:
                assert out.snapshot.payload
    assert [d["origin"]["offset"] for d in dead] == [33]
    clean_events = [Event(f"e{i}", "default", x, y, None, 0, i) for i, (x, y) in enumerate(pairs)]
    for i in range(0, len(clean_events), 5):
        clean.process(clean_events[i : i + 5], now=0.0)
    model, clean_model = failing.learner.model, clean.learner.model  # type: ignore[attr-defined]
    assert (model.counts, model.seen) == (clean_model.counts, clean_model.seen)
