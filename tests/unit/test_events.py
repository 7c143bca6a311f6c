from __future__ import annotations

import itertools
import random

import orjson
import pytest

from stream_learner import events
from stream_learner.events import DeadLetter, Event, Origin, Prediction, decode_event

ORIGIN = Origin("in", 2, 41)


def test_valid_event_with_dict_features_keeps_everything() -> None:
    raw = b'{"id": "e1", "features": {"a": 1, "b": "red", "c": true}, "label": "cat", "task": 3, "key": "k"}'
    assert decode_event(raw, ORIGIN) == Event("e1", "k", {"a": 1, "b": "red", "c": True}, "cat", 3, 2, 41, raw)


def test_array_features_are_keyed_by_position_and_id_defaults_to_origin() -> None:
    event = decode_event(b'{"features": [0.5, 2]}', ORIGIN)
    assert isinstance(event, Event)
    assert event.features == {0: 0.5, 1: 2}
    assert event.id == "in:2:41" and event.key == "default" and event.label is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"features": {"x": NaN}}', "invalid JSON"),
        (b'{"features": {"x": 1e999}}', "invalid JSON"),
        (b"", "an empty record"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"label": 1}', "features: Field required"),
        (b'{"features": {}}', "features: must not be empty"),
        (b'{"features": {"x": null}}', "'x' must be a finite number"),
        (b'{"features": [1, "a"]}', "item 1 must be a finite number"),
        (b'{"features": {"x": 1}, "label": {"a": 1}}', "label: must be a finite number"),
        (b'{"features": {"x": 1}, "surprise": 1}', "surprise: Extra inputs are not permitted"),
        (b'{"features": {"x": 1}, "key": ""}', "key:"),
        (b"\xff\xfe", "invalid JSON"),
    ],
)
def test_bad_records_become_dead_letters_with_a_reason(raw: bytes, reason: str) -> None:
    letter = decode_event(raw, ORIGIN)
    assert isinstance(letter, dict), letter
    assert reason in letter["error"]
    assert "\n" not in letter["error"]
    assert letter["origin"] == {"topic": "in", "partition": 2, "offset": 41}
    DeadLetter.model_validate(letter)  # the dead letter honours its own contract


def test_dead_letter_keeps_raw_bytes_as_text() -> None:
    letter = decode_event(b'{"features": \xff}', ORIGIN)
    assert isinstance(letter, dict)
    assert letter["raw"] == '{"features": \\xff}'


def test_prediction_contract_accepts_engine_output_shape() -> None:
    Prediction.model_validate({"id": "a", "key": "k", "prediction": True, "proba": {"True": 0.9}, "model_version": 3, "concept": 0, "ts": 1.0})


FIELD_VALUES = {
    "id": [None, "a", "", 7, 1.5, True, ["a"]],
    "key": [None, "k", "", 3, False],
    "task": [None, "t", "", 0, 4, True, 2.5, ["t"]],
    "ts": [None, 1, 1.5, "2026-01-01T00:00:00", "soon", True],
    "label": [None, True, 0, -3, 1.5, "cat", [1], {"a": 1}],
    "features": [{}, {"a": 1}, {"a": 1.5, "b": "s", "c": True}, {"a": None}, {"a": [1]}, [1, 2.5], [], [True], ["s"], "x", 5],
}


def test_the_plain_shortcut_decodes_exactly_as_pydantic_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every document: the same event or the same dead-letter reason with and without the shortcut."""
    origin = Origin("in", 2, 9)
    rng = random.Random(0)
    names = list(FIELD_VALUES)
    documents = []
    for _ in range(20_000):
        document = {name: rng.choice(FIELD_VALUES[name]) for name in names if rng.random() < 0.8}
        if rng.random() < 0.05:
            document["extra"] = 1
        documents.append(orjson.dumps(document))
    shortcut = [decode_event(raw, origin) for raw in documents]
    monkeypatch.setattr(events, "_plain_event", lambda document, raw, origin: None)
    reference = [decode_event(raw, origin) for raw in documents]
    taken = 0
    for raw, ours, theirs in zip(documents, shortcut, reference):
        if isinstance(theirs, Event):
            assert ours == theirs, raw
            taken += 1
        else:
            assert isinstance(ours, dict) and ours["error"] == theirs["error"], raw
    assert taken > 300  # the comparison covered many valid events


def test_the_common_event_shape_skips_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(document: object) -> None:
        raise AssertionError("pydantic was called")

    monkeypatch.setattr(events.InputEvent, "model_validate", refuse)
    shapes = itertools.product(["e1", None], ["model-a", None], [{"x": 1.5, "y": 2, "c": "red", "b": True}], [True, 3, "cat", 0.5, None], ["t1", 2, None])
    for event_id, key, features, label, task in shapes:
        raw = orjson.dumps({"id": event_id, "key": key, "features": features, "label": label, "task": task, "ts": 1.5})
        event = decode_event(raw, Origin("in", 0, 1))
        assert isinstance(event, Event) and event.features == features and event.label == label and event.task == task
