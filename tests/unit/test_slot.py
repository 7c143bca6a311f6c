"""Challengers in shadow and promotion on evidence (stream_learner.slot), on seeded streams whose answer is known.

The concept is a band, ``0.3 < x1 < 0.7``: a tree learns it, a logistic
regression cannot (about 60% accuracy, the majority class), so a tree
challenging a logistic champion is truly better and the reverse truly worse.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from stream_learner.control import Command
from stream_learner.delayed import LabelRecord
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.events import Event, EventBatch, PromotionRecord, ShadowPrediction
from stream_learner.evidence import mcnemar
from stream_learner.learners.base import LearnerSpec
from stream_learner.slot import Slot, champion_state, new_step, restore_step, step_from_state
from stream_learner.snapshot import Snapshot
from stream_learner.state import decode, encode
from stream_learner.step.recurring import ConceptReuse

LOGREG, TREE = LearnerSpec("logreg"), LearnerSpec("hoeffding_tree")


def band(seed: int, n: int, start: int = 0) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for i in range(start, start + n):
        x1, x2 = rng.random(), rng.random()
        events.append(Event(f"e{i}", "k", {"x1": x1, "x2": x2}, 0.3 < x1 < 0.7, None, 0, i))
    return events


def config(champion: LearnerSpec = LOGREG, *challengers: LearnerSpec, **options: Any) -> EngineConfig:
    settings: dict[str, Any] = {"detector": None, "metrics_every": 500, "promotion_window": 200, "min_champion_events": 200, "promotion_alpha": 0.01}
    settings.update(options)
    settings.setdefault("challengers", challengers or (TREE,))
    return EngineConfig(learner=champion, **settings)


def run(step: Any, events: list[Any], batch: int = 100) -> tuple[list[Any], list[dict[str, Any]]]:
    """The published predictions and metrics-topic records of ``events`` fed ``batch`` at a time."""
    predictions: list[Any] = []
    records: list[dict[str, Any]] = []
    for i in range(0, len(events), batch):
        out = step.process(events[i : i + batch], 0.0)
        predictions.extend(row[:2] for row in out.predictions.rows)
        records.extend(out.metrics)
    return predictions, records


def promotions(records: list[Any]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "promotion"]


@pytest.mark.parametrize("seed", range(4))
def test_a_truly_better_challenger_is_promoted_within_the_window(seed: int) -> None:
    slot = new_step("k", config())
    _, records = run(slot, band(seed, 1500))
    [promotion] = promotions(records)
    assert (promotion["champion"], promotion["challenger"], promotion["applied"]) == ("logreg", "hoeffding_tree", True)
    assert promotion["at_event"] in (200, 400)  # tested at the end of each window of 200 pairs, once min_champion_events are held
    assert isinstance(slot, Slot) and slot.champion_name == "hoeffding_tree"
    assert slot.names == ["logreg", "hoeffding_tree"]  # the outgoing champion stays, as a challenger
    evidence = promotion["evidence"]
    assert evidence["window"] == 200 and evidence["challenger_error"] < evidence["champion_error"] and evidence["p_value"] < 0.01
    PromotionRecord.model_validate(promotion)


@pytest.mark.parametrize("seed", range(4))
def test_a_worse_or_equal_challenger_is_never_promoted(seed: int) -> None:
    worse = new_step("k", config(TREE, LOGREG))
    same = new_step("k", config(LOGREG, LOGREG))  # an A/A test: identical predictions, no discordant pair
    assert not promotions(run(worse, band(seed, 3000))[1]) and not promotions(run(same, band(seed, 1500))[1])
    assert worse.champion_name == "hoeffding_tree" and same.names == ["logreg", "logreg#2"]


def test_the_evidence_is_the_paired_test_on_the_last_window_of_both_candidates_errors() -> None:
    """Recomputed from two standalone learner steps on the same events: the record's figures are McNemar's on their last 200 pairs."""
    events = band(7, 1000)
    _, records = run(new_step("k", config()), events)
    [promotion] = promotions(records)
    at = promotion["at_event"]
    champion, challenger = KeyedLearner("k", config(challengers=())), KeyedLearner("k", EngineConfig(learner=TREE, detector=None))
    first, second = run(champion, events[:at])[0], run(challenger, events[:at])[0]
    pairs = [(int(p != e.label), int(q != e.label)) for (_, p), (_, q), e in zip(first, second, events[:at])][-200:]
    expected = mcnemar(sum(1 for f, s in pairs if f and not s), sum(1 for f, s in pairs if s and not f))
    evidence = promotion["evidence"]
    assert (evidence["test"], evidence["statistic"], evidence["p_value"]) == (expected.test, expected.statistic, expected.p_value)
    assert evidence["champion_error"] == sum(f for f, _ in pairs) / 200 and evidence["challenger_error"] == sum(s for _, s in pairs) / 200


BATCHES = (1, 250, 1000, 10_000)
"""Events per call in the batching tests: one at a time, batches that end within a promotion window, and a whole stream in one batch."""


def published(step: Any, items: list[Any], batch: int) -> dict[str, list[Any]]:
    """Everything published for ``items`` fed ``batch`` at a time (an operator's command applied alone, where the stream has it, as the dataflow does).

    The predictions and shadow predictions in order; the metrics-topic
    records in order per candidate (a batch lists one candidate's records
    before the next one's) and the promotions and control answers in order.
    """
    out: dict[str, list[Any]] = {"predictions": [], "shadow": []}
    start = 0
    while start < len(items):
        if type(items[start]) is Command:
            outputs, start = step.apply(items[start], 0.0), start + 1
        else:
            end = next((i for i in range(start, min(start + batch, len(items))) if type(items[i]) is Command), min(start + batch, len(items)))
            outputs, start = step.process(items[start:end], 0.0), end
            out["predictions"] += [row[:2] for row in outputs.predictions.rows]
            out["shadow"] += [(r["id"], r["candidate"], r["prediction"]) for r in outputs.shadow_predictions]
        for record in outputs.metrics:
            out.setdefault(record.get("candidate", record["type"]), []).append(record)
    return out


@pytest.mark.parametrize("batch", BATCHES)
def test_only_the_champions_predictions_are_published_from_the_event_after_a_promotion_on(batch: int) -> None:
    events = band(3, 1000)
    predictions, records = run(new_step("k", config(metrics_every=100)), events, batch)
    [promotion] = promotions(records)
    at = promotion["at_event"]
    alone = {spec.model: run(KeyedLearner("k", EngineConfig(learner=spec, detector=None)), events)[0] for spec in (LOGREG, TREE)}
    assert predictions == alone["logreg"][:at] + alone["hoeffding_tree"][at:]  # the decision's event (number ``at``) is the old champion's, the next one the new one's
    metrics = [r for r in records if r["type"] == "metrics"]
    for name in ("logreg", "hoeffding_tree"):
        assert [m["labelled"] for m in metrics if m["candidate"] == name] == list(range(100, 1001, 100))
    assert all(m["champion"] == ((m["candidate"] == "logreg") == (m["labelled"] <= at)) for m in metrics)  # each record names the champion of its event


def test_the_outcome_does_not_depend_on_batching() -> None:
    """The same predictions event for event, the same records and the same slot, in batches of any size."""
    events = band(5, 1500)
    steps = {batch: new_step("k", config(metrics_every=100, shadow_predictions=True)) for batch in BATCHES}
    outcomes = {batch: published(step, events, batch) for batch, step in steps.items()}
    assert len(outcomes[1]["promotion"]) == 1 and len(outcomes[1]["predictions"]) == len(outcomes[1]["shadow"]) == 1500
    assert all(outcome == outcomes[1] for outcome in outcomes.values())
    evidence = [{part: step.state_dict()[part] for part in ("champion", "held", "windows")} for step in steps.values()]
    assert all(e == evidence[0] for e in evidence)
    later = band(9, 50, 1500)
    continued = [run(step, later)[0] for step in steps.values()]
    assert all(c == continued[0] for c in continued)


def test_an_event_batch_gives_what_its_events_give() -> None:
    events = band(2, 600)
    slot = new_step("k", config())
    out = slot.process(EventBatch("t", "k", 0, 0, [(e.features, e.label) for e in events]), 0.0)
    listed = [Event(f"t:0:{i}", "k", e.features, e.label, None, 0, i) for i, e in enumerate(events)]
    predictions, records = run(new_step("k", config()), listed, batch=1)
    assert promotions(out.metrics) == promotions(records) and promotions(records)
    assert [row[:2] for row in out.predictions.rows] == predictions  # type: ignore[union-attr]


def test_delayed_labels_promote_at_the_same_event_however_batched() -> None:
    """A delayed label may bring the test of the evidence: the part of a batch ends there too."""
    stream = delayed(band(16, 1500), 30)
    outcomes = [published(new_step("k", config(label_window=50)), stream, batch) for batch in BATCHES]
    assert outcomes[0]["promotion"] and all(outcome == outcomes[0] for outcome in outcomes)


def test_an_operators_promotion_mid_stream_starts_the_evidence_afresh_however_batched() -> None:
    """The tree promoted by hand at event 100 (before any test): the logistic challenger is tested from its 200th pair on, never promoted."""
    events: list[Any] = band(31, 1200)
    stream = events[:100] + [command("promote", "hoeffding_tree")] + events[100:]
    outcomes = [published(new_step("k", config(metrics_every=100)), stream, batch) for batch in BATCHES]
    assert all(outcome == outcomes[0] for outcome in outcomes)
    tree = run(KeyedLearner("k", EngineConfig(learner=TREE, detector=None)), events)[0]
    assert outcomes[0]["control"][0]["status"] == "applied" and outcomes[0]["predictions"][100:] == tree[100:]
    assert "promotion" not in outcomes[0]


def seasons(seed: int, concepts: str, n: int = 1000) -> list[Event]:
    """Segments of ``n`` events: concept A is the band, B its complement."""
    return [Event(e.id, e.key, e.features, e.label == (concepts[i // n] == "A"), None, 0, i) for i, e in enumerate(band(seed, len(concepts) * n))]


def test_with_concept_reuse_promotions_and_returns_take_effect_at_their_event_however_batched() -> None:
    """Each candidate keeps its own earlier concepts' models: a stored model's return and a promotion, both decided mid-batch, publish from the next event on."""
    outcomes = [published(new_step("k", config(detector="adwin", concept_reuse=ConceptReuse(), forgetting_every=0)), seasons(0, "ABAB"), batch) for batch in BATCHES]
    returns = [r for r in outcomes[0]["hoeffding_tree"] if r["type"] == "drift" and r["detector"] == "recurring"]
    assert len(outcomes[0]["promotion"]) >= 2 and returns  # the champion changed more than once, a stored concept came back
    assert all(outcome == outcomes[0] for outcome in outcomes)


def test_the_champions_boundaries_are_the_keys_boundary_versions_however_batched() -> None:
    """With boundary versions, each boundary of the candidate that is champion at its event is kept (its model as it leaves); a challenger's are not."""
    for batch in BATCHES:
        slot = new_step("k", config(LOGREG, TREE, LearnerSpec("naive_bayes"), detector="adwin", concept_reuse=ConceptReuse(), forgetting_every=0, boundary_versions=True))
        events = seasons(0, "ABAB")
        kept, boundaries, challengers = [], [], 0
        for i in range(0, len(events), batch):
            out = slot.process(events[i : i + batch], 0.0)
            kept += [(s.kind, s.events_seen, decode(s.payload)["spec"]["model"]) for s in out.boundary_snapshots]
            drifts = [r for r in out.metrics if r["type"] == "drift"]
            boundaries += [("boundary", r["at_event"], r["candidate"]) for r in drifts if r["champion"]]
            challengers += sum(not r["champion"] for r in drifts)
        assert kept == boundaries and {model for _, _, model in kept} == {"logreg", "hoeffding_tree"} and challengers, batch


def test_recommend_only_publishes_and_changes_nothing() -> None:
    events = band(1, 1500)
    slot = new_step("k", config(auto_promote=False))
    predictions, records = run(slot, events)
    recommended = promotions(records)
    assert recommended and all(not r["applied"] and r["challenger"] == "hoeffding_tree" for r in recommended)
    assert all(b["at_event"] - a["at_event"] >= 200 for a, b in zip(recommended, recommended[1:]))  # repeated only on a new window
    assert slot.champion_name == "logreg"
    assert predictions == run(KeyedLearner("k", EngineConfig(learner=LOGREG, detector=None)), events)[0]


def test_a_promotion_takes_a_snapshot_of_the_slot_holding_the_outgoing_champion() -> None:
    slot = new_step("k", config(snapshot_seconds=0.0))
    snapshots = [slot.process(chunk, 0.0).snapshot for chunk in (band(4, 1000)[i : i + 100] for i in range(0, 1000, 100))]
    taken = [s for s in snapshots if s is not None]
    assert len(taken) == 1
    restored = restore_step(taken[0].payload, config())
    assert isinstance(restored, Slot) and restored.champion_name == "hoeffding_tree" and restored.names == ["logreg", "hoeffding_tree"]


def test_in_snapshot_rounds_the_slot_says_a_snapshot_is_due_and_gives_its_part() -> None:
    """As the dataflow takes them: no snapshot encoded in the step; a due one taken as a part of a round, every 300 events and at the promotion."""
    slot = new_step("k", config(snapshot_seconds=0.0, snapshot_every=300, snapshot_rounds=True))
    assert isinstance(slot, Slot)
    due, snapshots = [], []
    for i, chunk in enumerate(band(4, 1000)[j : j + 100] for j in range(0, 1000, 100)):
        out = slot.process(chunk, 0.0)
        assert out.snapshot is None
        if out.snapshot_due:
            due.append(i)
            snapshots += Snapshot.round([slot.snapshot_part()], background=True)  # at the batch's end, as the dataflow's round
        promoted = promotions(out.metrics)
        assert not promoted or out.snapshot_due
    assert due == [1, 4, 7]  # the promotion's batch (at event 200), then every 300 events since the last snapshot
    restored = restore_step(snapshots[-1].payload, config())
    assert isinstance(restored, Slot) and restored.events == (due[-1] + 1) * 100 and restored.champion_name == "hoeffding_tree"


def test_a_restored_slot_goes_on_exactly_as_the_original() -> None:
    """Mid-window (the evidence gathered so far counts) and after a promotion alike."""
    for cut in (300, 900):
        events, later = band(8, cut), band(11, 700, cut)
        original = new_step("k", config())
        run(original, events)
        copy = restore_step(encode(original.state_dict()), config())
        assert run(copy, later) == run(original, later)
        assert copy.state_dict()["held"] == original.state_dict()["held"]


def test_states_cross_between_runs_with_and_without_challengers() -> None:
    events = band(12, 900)
    plain = KeyedLearner("k", config(challengers=()))
    run(plain, events)
    slot = step_from_state(plain.state_dict(), config())  # challengers added to a running key: they start afresh
    assert isinstance(slot, Slot) and slot.candidates[0].events == 900 and slot.candidates[1].events == 0
    promoted = new_step("k", config())
    run(promoted, events)
    assert isinstance(promoted, Slot) and promoted.champion_name == "hoeffding_tree"
    alone = step_from_state(promoted.state_dict(), EngineConfig(learner=TREE, detector=None))  # challengers dropped: the champion goes on alone
    assert type(alone) is KeyedLearner and alone.events == 900
    later = band(13, 50, 900)
    assert run(alone, later)[0] == run(promoted, later)[0]
    assert champion_state(promoted.state_dict())["spec"]["model"] == "hoeffding_tree" and champion_state(plain.state_dict()) == plain.state_dict()
    with pytest.raises(SnapshotError, match="hoeffding_tree"):
        step_from_state(promoted.state_dict(), config(LOGREG, LearnerSpec("naive_bayes")))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="promotion_alpha"):
        new_step("k", config(promotion_alpha=1.5))
    with pytest.raises(ConfigError, match="promotion_window"):
        new_step("k", config(promotion_window=0))
    with pytest.raises(ConfigError, match="classifiers or all regressors"):
        new_step("k", config(LOGREG, LearnerSpec("linreg")))


def test_regression_candidates_are_compared_on_absolute_errors() -> None:
    rng = random.Random(0)
    events = []
    for i in range(1500):
        x = rng.random()
        events.append(Event(str(i), "k", {"x": x}, 10.0 * (0.3 < x < 0.7), None, 0, i))
    slot = new_step("k", EngineConfig(learner=LearnerSpec("linreg"), challengers=(LearnerSpec("hoeffding_tree_regressor"),), detector=None, promotion_window=200, min_champion_events=200))
    [promotion] = promotions(run(slot, events)[1])
    assert promotion["evidence"]["test"] == "wilcoxon" and promotion["challenger"] == "hoeffding_tree_regressor"


def test_an_operator_promotes_a_candidate_by_hand() -> None:
    slot = new_step("k", config(LOGREG, TREE, LearnerSpec("naive_bayes")))
    assert isinstance(slot, Slot)
    run(slot, band(14, 150))
    assert slot.promote("arf") == "model key 'k' has no candidate 'arf'; its candidates: logreg, hoeffding_tree, naive_bayes"
    assert slot.promote("logreg") == "'logreg' is already the champion of model key 'k'"
    assert slot.promote("naive_bayes") is None and slot.champion_name == "naive_bayes" and slot.held == 0
    assert sorted(slot.windows) == [0, 1] and all(w.n == 0 for w in slot.windows.values())
    copy = restore_step(encode(slot.state_dict()), config(LOGREG, TREE, LearnerSpec("naive_bayes")))
    assert isinstance(copy, Slot) and copy.champion_name == "naive_bayes"
    events, later = band(14, 150), band(15, 100, 150)
    bayes = KeyedLearner("k", EngineConfig(learner=LearnerSpec("naive_bayes"), detector=None))
    assert run(slot, later)[0] == run(copy, later)[0] == run(bayes, events + later)[0][150:]  # the new champion's predictions are published from the next event on


def delayed(events: list[Event], late: int) -> list[Event | LabelRecord]:
    """The events without their labels, each label ``late`` events after its event."""
    out: list[Event | LabelRecord] = []
    for i, e in enumerate(events):
        out.append(Event(e.id, e.key, e.features, None, None, e.partition, e.offset))
        if i >= late:
            before = events[i - late]
            out.append(LabelRecord(before.id, before.key, before.label))
    return out


def test_delayed_labels_are_evidence_too() -> None:
    """Labels arriving right after their events give the very promotion immediate labels give; later ones promote too."""
    events = band(16, 1000)
    immediate = promotions(run(new_step("k", config()), events)[1])
    at_once = promotions(run(new_step("k", config(label_window=50)), delayed(events, 0))[1])
    assert immediate and at_once == immediate
    [late] = promotions(run(new_step("k", config(label_window=50)), delayed(events, 30))[1])
    assert late["challenger"] == "hoeffding_tree" and late["applied"]


def test_predictions_awaiting_labels_survive_a_restore() -> None:
    stream = delayed(band(17, 1000), 30)
    original = new_step("k", config(label_window=50))
    run(original, stream[:700])
    assert len(original.state_dict()["waiting"]) == 30
    copy = restore_step(encode(original.state_dict()), config(label_window=50))
    assert run(copy, stream[700:]) == run(original, stream[700:])
    assert isinstance(copy, Slot) and isinstance(original, Slot) and copy.held == original.held
    assert copy.state_dict()["windows"] == original.state_dict()["windows"]


def command(action: str, arg: str | int | None = None, id_: str = "c-1") -> Command:
    return Command(id_, "k", action, arg, 0.0)  # type: ignore[arg-type]


def answers(out: Any) -> list[tuple[str, str, str | None]]:
    return [(r["action"], r["status"], r.get("reason")) for r in out.metrics if r["type"] == "control"]


def test_an_operator_promotes_pauses_and_snapshots_through_commands_each_once() -> None:
    slot = new_step("k", config())
    assert isinstance(slot, Slot)
    run(slot, band(18, 100))
    assert answers(slot.apply(command("promote", "hoeffding_tree"), 0.0)) == [("promote", "applied", None)]
    assert slot.champion_name == "hoeffding_tree"
    assert answers(slot.apply(command("promote", "logreg"), 0.0)) == [("promote", "duplicate", None)]  # the same id: nothing happens
    assert slot.champion_name == "hoeffding_tree"
    assert answers(slot.apply(command("promote", "arf", "c-2"), 0.0))[0][1] == "refused"
    assert answers(slot.apply(command("pause-learning", id_="c-3"), 0.0)) == [("pause-learning", "applied", None)]
    frozen = restore_step(encode(slot.state_dict()), config())
    assert isinstance(frozen, Slot) and all(c.operator.paused for c in slot.candidates)
    run(slot, band(19, 50, 100))
    probe = [e.features for e in band(26, 30)]
    assert slot.events == 150  # predicted, and learned by no candidate:
    assert [[c.learner.predict(x) for x in probe] for c in slot.candidates] == [[c.learner.predict(x) for x in probe] for c in frozen.candidates]
    copy = restore_step(encode(slot.state_dict()), config())
    assert isinstance(copy, Slot) and answers(copy.apply(command("promote", "logreg", "c-3"), 0.0))[0][1] == "duplicate"
    slot.apply(command("resume-learning", id_="c-4"), 0.0)
    run(slot, band(20, 50, 150))
    assert [[c.learner.predict(x) for x in probe] for c in slot.candidates] != [[c.learner.predict(x) for x in probe] for c in frozen.candidates]
    snapshot = slot.apply(command("snapshot", id_="c-5"), 0.0).snapshot
    assert snapshot is not None
    restored = restore_step(snapshot.payload, config())
    assert isinstance(restored, Slot) and restored.champion_name == "hoeffding_tree" and restored.events == 200


def test_a_rollback_brings_back_an_earlier_versions_models_and_champion() -> None:
    slot = new_step("k", config())
    assert isinstance(slot, Slot)
    run(slot, band(21, 150))
    earlier = slot.state_dict()  # before any promotion: logreg is champion
    run(slot, band(22, 850, 150))
    assert slot.champion_name == "hoeffding_tree"
    assert answers(slot.apply(command("rollback", 1), 0.0, earlier)) == [("rollback", "applied", None)]
    assert slot.champion_name == "logreg" and slot.events == 1000  # the stream's position goes on
    then = restore_step(encode(earlier), config())
    later = band(23, 40, 1000)
    assert run(slot, later)[0] == run(then, later)[0]  # the same next predictions as the version itself
    alone = KeyedLearner("k", EngineConfig(learner=TREE, detector=None))
    run(alone, band(24, 100))
    assert answers(slot.apply(command("rollback", 2, "c-2"), 0.0, alone.state_dict()))[0][1] == "applied"  # a single learner's version
    assert slot.champion_name == "hoeffding_tree"
    assert run(slot, band(25, 20, 1040))[0] == run(alone, band(25, 20, 1040))[0]
    refused = [
        answers(slot.apply(command("rollback", 3, "c-3"), 0.0, None)),
        answers(slot.apply(command("rollback", 4, "c-4"), 0.0, KeyedLearner("k", EngineConfig(learner=LearnerSpec("naive_bayes"))).state_dict())),
    ]
    assert [a[0][1] for a in refused] == ["refused", "refused"] and "naive_bayes" in str(refused[1][0][2])


def test_shadow_predictions_are_every_challengers_own_when_asked_for() -> None:
    events = band(27, 300)
    quiet = new_step("k", config(LOGREG, TREE, LearnerSpec("naive_bayes")))
    assert all(not quiet.process(events[i : i + 100], 0.0).shadow_predictions for i in range(0, 300, 100))  # off by default
    slot = new_step("k", config(LOGREG, TREE, LearnerSpec("naive_bayes"), shadow_predictions=True, min_champion_events=10_000))  # logreg stays champion
    shadow = [record for i in range(0, 300, 100) for record in slot.process(events[i : i + 100], 0.0).shadow_predictions]
    for spec in (TREE, LearnerSpec("naive_bayes")):
        alone = run(KeyedLearner("k", EngineConfig(learner=spec, detector=None)), events)[0]
        assert [(r["id"], r["prediction"]) for r in shadow if r["candidate"] == spec.model] == alone
    assert {r["candidate"] for r in shadow} == {"hoeffding_tree", "naive_bayes"}  # not the champion's: those are the published ones
    for record in shadow[:5]:
        ShadowPrediction.model_validate(orjson.loads(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS)))  # as a sink writes it


def test_after_a_snapshot_each_candidates_undo_journal_starts_from_it() -> None:
    """A round's taker tells the slot its snapshot: a candidate's rollback then rebuilds its model from the slot's snapshot, exactly."""
    slot = new_step("k", config(LOGREG, TREE))
    assert isinstance(slot, Slot)
    run(slot, band(28, 300))
    [snapshot] = Snapshot.round([slot.snapshot_part()], background=False)
    slot.snapshotted(snapshot)
    run(slot, band(29, 50, 300))
    slot.snapshotted(Snapshot.round([slot.snapshot_part()], background=False)[0])  # the earlier checkpoint's bytes are read now
    probe = [e.features for e in band(30, 20)]
    for candidate in slot.candidates:
        rebuilt = candidate.guard.journal.rollback()
        assert [rebuilt.predict(x) for x in probe] == [candidate.learner.predict(x) for x in probe]
