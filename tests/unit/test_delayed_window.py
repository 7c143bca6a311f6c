"""The delayed-label window counts every label it receives exactly once.

``matched + expired + unmatched + waiting == received`` after any sequence
of predictions, labels, expiries and closes; the first label of an id wins.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_learner.delayed import LabelRecord, PendingWindow
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event


def accounted(window: PendingWindow) -> int:
    c = window.counts()
    return c["matched"] + c["expired"] + c["unmatched"] + c["waiting"]


def test_two_labels_before_their_event_are_both_counted_and_the_first_wins() -> None:
    w = PendingWindow(max_size=10, max_age=60.0)
    assert w.label("a", "first", now=0.0) is None
    assert w.label("a", "second", now=1.0) is None
    assert w.add("a", {"x": 1}, "first", now=2.0) == "first"
    assert w.counts() == {"received": 2, "matched": 1, "expired": 0, "unmatched": 1, "waiting": 0, "pending": 0}


def test_a_label_for_an_id_already_labelled_is_unmatched_not_kept_waiting() -> None:
    w = PendingWindow(max_size=10, max_age=60.0)
    w.add("a", {"x": 1}, True, now=0.0)
    assert w.label("a", True, now=1.0) == ({"x": 1}, True)
    assert w.label("a", False, now=2.0) is None  # a duplicate: its prediction was labelled already
    assert w.add("a", {"x": 1}, True, now=3.0) is None  # the event again (a redelivery) does not take the duplicate
    assert w.counts() == {"received": 2, "matched": 1, "expired": 0, "unmatched": 1, "waiting": 0, "pending": 1}


def test_every_label_of_an_expired_prediction_is_expired() -> None:
    w = PendingWindow(max_size=1, max_age=60.0)
    w.add("a", {"x": 1}, True, now=0.0)
    w.add("b", {"x": 2}, True, now=0.0)  # a is pushed out
    w.label("a", True, now=1.0)
    w.label("a", True, now=2.0)
    assert w.counts()["expired"] == 2 and accounted(w) == w.received == 2


def test_labels_after_the_stream_end_are_counted() -> None:
    w = PendingWindow(max_size=5, max_age=60.0)
    w.label("a", 1, now=0.0)
    w.close()
    w.label("b", 1, now=1.0)
    assert w.counts() == {"received": 2, "matched": 0, "expired": 0, "unmatched": 1, "waiting": 1, "pending": 0}
    w.close()
    assert w.counts()["unmatched"] == 2 and accounted(w) == 2


def test_a_refused_early_label_is_not_counted_and_its_prediction_waits_for_another() -> None:
    w = PendingWindow(max_size=10, max_age=60.0)
    w.label("a", "yes", now=0.0)
    assert w.add("a", {"x": 1}, 0, now=1.0) == "yes"
    w.refuse("a", {"x": 1}, 0, now=1.0)
    assert w.counts() == {"received": 0, "matched": 0, "expired": 0, "unmatched": 0, "waiting": 0, "pending": 1}
    assert w.label("a", 1, now=2.0) == ({"x": 1}, 0)
    assert w.counts()["matched"] == w.received == 1


IDS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), IDS, st.floats(0, 5)),
        st.tuples(st.just("label"), IDS, st.floats(0, 5)),
        st.tuples(st.just("expire"), st.just(""), st.floats(0, 5)),
        st.tuples(st.just("close"), st.just(""), st.just(0.0)),
        st.tuples(st.just("add-refused"), IDS, st.floats(0, 5)),
    ),
    max_size=60,
)


@settings(max_examples=400, database=None, deadline=None)
@given(steps=STEPS, max_size=st.integers(1, 4), max_age=st.floats(0.5, 10))
def test_every_label_received_is_counted_exactly_once(steps: list[tuple[str, str, float]], max_size: int, max_age: float) -> None:
    w = PendingWindow(max_size=max_size, max_age=max_age)
    now = 0.0
    labels = matched = 0
    for action, event_id, dt in steps:
        now += dt  # time never goes back
        if action == "add":
            matched += w.add(event_id, {"x": 1}, True, now) is not None
        elif action == "add-refused":  # the engine refuses the early label add() hands back (its key's schema rejects it)
            if w.add(event_id, {"x": 1}, True, now) is not None:
                w.refuse(event_id, {"x": 1}, True, now)
                labels -= 1
                assert event_id in w.pending
        elif action == "label":
            labels += 1
            matched += w.label(event_id, True, now) is not None
        elif action == "expire":
            w.expire(now)
        else:
            w.close()
        assert accounted(w) == w.received == labels
        assert w.matched == matched  # a match is counted exactly when it hands back a label or a prediction
        assert len(w.pending) <= max_size and len(w.early) <= max_size
        assert len(w.gone) <= max_size and len(w.labelled) <= max_size


def test_a_label_the_schema_refuses_is_a_dead_letter_not_a_count_whether_it_comes_before_or_after_its_event() -> None:
    step = KeyedLearner("k", EngineConfig(detector=None, label_window=10))
    step.process([Event(f"e{i}", "k", {"x": float(i)}, i % 2, None, 0, i) for i in range(10)], now=0.0)  # integer labels
    early = step.process([LabelRecord("u1", "k", "yes"), Event("u1", "k", {"x": 1.0}, None, None, 0, 10)], now=1.0)
    late = step.process([Event("u2", "k", {"x": 2.0}, None, None, 0, 11), LabelRecord("u2", "k", "yes")], now=2.0)
    assert [d["reason"] for d in early.dead_letters + late.dead_letters] == ["schema", "schema"]
    assert step.pending.counts() == {"received": 0, "matched": 0, "expired": 0, "unmatched": 0, "waiting": 0, "pending": 2}
    step.process([LabelRecord("u1", "k", 1), LabelRecord("u2", "k", 0)], now=3.0)  # the predictions still take a label that fits
    assert step.pending.counts()["matched"] == step.pending.received == 2 and step.learned == 12
