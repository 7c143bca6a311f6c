"""Operators' commands in the learner step: each obeyed once, in its place in the stream, and answered."""

from __future__ import annotations

import random

from stream_learner.control import Command
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event, MetricsRecord
from stream_learner.learners.base import LearnerSpec

CONFIG = EngineConfig(learner=LearnerSpec("logreg"), detector=None, forgetting_every=0)


def events(n: int, start: int = 0, seed: int = 0) -> list[Event]:
    rng = random.Random(seed + start)
    out = []
    for i in range(start, start + n):
        x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
        out.append(Event(str(i), "k", x, x["a"] + 0.3 * x["b"] > 0, None, 0, i))
    return out


def command(action: str, arg: str | int | None = None, command_id: str | None = None) -> Command:
    return Command(command_id or f"{action}-{arg}", "k", action, arg, issued_at=0.0)  # type: ignore[arg-type]


PROBES = [{"a": a / 10, "b": -a / 20} for a in range(-10, 11)]


def probe(step: KeyedLearner) -> list[object]:
    return [step.learner.predict(x) for x in PROBES]


def test_a_paused_key_predicts_and_scores_but_learns_nothing_until_resumed() -> None:
    step = KeyedLearner("k", CONFIG)
    step.process(events(200), now=0.0)
    answer = step.apply(command("pause-learning"), now=1.0).metrics[0]
    assert answer["status"] == "applied" and answer["at_event"] == 200
    before = probe(step)
    out = step.process(events(300, start=200), now=2.0)
    assert len(out.predictions) == 300 and step.metrics.labelled == 500  # predicted and scored
    assert probe(step) == before  # not learned
    step.apply(command("resume-learning"), now=3.0)
    step.process(events(300, start=500), now=4.0)
    assert probe(step) != before


def test_a_command_read_twice_is_obeyed_once_and_answered_as_a_duplicate() -> None:
    step = KeyedLearner("k", CONFIG)
    step.apply(command("pause-learning", command_id="c1"), now=0.0)
    step.apply(command("resume-learning", command_id="c2"), now=0.0)
    again = step.apply(command("pause-learning", command_id="c1"), now=0.0).metrics[0]
    assert again["status"] == "duplicate" and not step.operator.paused
    restored = KeyedLearner.from_state(step.state_dict(), CONFIG)  # the applied ids live in the state: a restart replaying the topic
    assert restored.apply(command("pause-learning", command_id="c1"), now=0.0).metrics[0]["status"] == "duplicate"
    assert not restored.operator.paused


def test_pause_survives_a_restart() -> None:
    step = KeyedLearner("k", CONFIG)
    step.apply(command("pause-learning"), now=0.0)
    assert KeyedLearner.from_state(step.state_dict(), CONFIG).operator.paused


def test_a_rollback_makes_the_earlier_versions_model_live_and_the_stream_goes_on() -> None:
    step = KeyedLearner("k", CONFIG)
    step.process(events(100), now=0.0)
    earlier = step.state_dict()
    step.process(events(400, start=100, seed=7), now=1.0)
    assert probe(step) != probe(KeyedLearner.from_state(earlier, CONFIG))
    answer = step.apply(command("rollback", 3), now=2.0, version=earlier).metrics[0]
    assert answer["status"] == "applied" and answer["arg"] == 3
    reference = KeyedLearner.from_state(earlier, CONFIG)
    assert probe(step) == probe(reference)
    later = events(50, start=500, seed=9)
    ours = step.process(later, now=3.0).predictions
    theirs = reference.process(later, now=3.0).predictions
    assert [row[1:3] for row in ours.rows] == [row[1:3] for row in theirs.rows]  # type: ignore[union-attr]  # same next predictions
    assert step.events == 550 and step.metrics.labelled == 550  # the key's stream and metrics go on


def test_a_rollback_to_a_version_that_is_not_there_or_of_another_model_is_refused() -> None:
    step = KeyedLearner("k", CONFIG)
    step.process(events(50), now=0.0)
    before = probe(step)
    missing = step.apply(command("rollback", 9), now=0.0).metrics[0]
    assert missing["status"] == "refused" and "no snapshot version 9" in missing["reason"]
    other = KeyedLearner("k", EngineConfig(learner=LearnerSpec("hoeffding_tree"), detector=None)).state_dict()
    wrong = step.apply(command("rollback", 2), now=0.0, version=other).metrics[0]
    assert wrong["status"] == "refused" and "hoeffding_tree" in wrong["reason"]
    assert probe(step) == before


def test_snapshot_now_and_promote_without_challengers() -> None:
    step = KeyedLearner("k", CONFIG)
    step.process(events(10), now=0.0)
    out = step.apply(command("snapshot"), now=0.0)
    assert out.snapshot is not None and out.snapshot.events_seen == 10
    out.snapshot.discard()
    refused = step.apply(command("promote", "arf"), now=0.0).metrics[0]
    assert refused["status"] == "refused" and "no challengers" in refused["reason"]


def test_answers_follow_the_contract() -> None:
    from stream_learner.events import ControlAnswer

    step = KeyedLearner("k", CONFIG)
    for c in (command("pause-learning"), command("rollback", 2), command("pause-learning")):
        ControlAnswer.model_validate(step.apply(c, now=0.0).metrics[0])
    MetricsRecord.model_validate(step.metrics_record(0.0))
