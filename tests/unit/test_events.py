from __future__ import annotations

import pytest

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
        (b"", "invalid JSON"),
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
