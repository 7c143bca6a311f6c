"""For any bytes (or none), the decoders return an event or a dead letter and never raise.

Every dead letter validates against :class:`~stream_learner.events.DeadLetter`,
names a reason from the fixed set, and encodes to JSON far below a Kafka
producer's 1 MB request limit; every event encodes into a prediction.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stream_learner.delayed import LabelRecord, RawLabel, decode_label
from stream_learner.events import (
    DEAD_LETTER_RAW_BYTES,
    MAX_ERROR_LENGTH,
    MAX_ID_LENGTH,
    MAX_KEY_LENGTH,
    MAX_LABEL_LENGTH,
    DeadLetter,
    Event,
    Origin,
    Prediction,
    decode_event,
)
from stream_learner.records import REASONS

ORIGIN = Origin("in", 3, 17)
KAFKA_MAX_REQUEST = 1_048_576
LETTER_BOUND = 6 * (DEAD_LETTER_RAW_BYTES + MAX_ERROR_LENGTH) + 1024  # JSON escapes a character in at most six bytes
PROPERTY = settings(max_examples=300, database=None, deadline=None)


def check_letter(letter: dict[str, Any]) -> None:
    DeadLetter.model_validate(letter)
    assert letter["reason"] in REASONS
    assert "\n" not in letter["error"] and len(letter["error"]) <= MAX_ERROR_LENGTH
    encoded = orjson.dumps(letter)
    assert len(encoded) <= LETTER_BOUND < KAFKA_MAX_REQUEST
    if "raw_bytes" in letter:
        assert len(letter["raw_sha256"]) == 64 and len(letter["raw"]) <= 4 * DEAD_LETTER_RAW_BYTES
        assert letter["raw_bytes"] > DEAD_LETTER_RAW_BYTES or letter["reason"] == "too_large"


def check_event(event: Event, raw: bytes) -> None:
    assert len(event.id) <= MAX_ID_LENGTH and len(event.key) <= MAX_KEY_LENGTH and event.features
    assert not (type(event.label) is str and len(event.label) > MAX_LABEL_LENGTH)
    assert event.raw == raw and (event.partition, event.offset) == (3, 17)
    prediction = {"id": event.id, "key": event.key, "prediction": event.label, "proba": None, "model_version": 0, "concept": 0, "ts": 1.0}
    Prediction.model_validate(prediction)
    assert len(orjson.dumps(prediction)) < 2048


def check_event_decoding(raw: bytes | None, max_bytes: int = 1 << 20) -> None:
    out = decode_event(raw, ORIGIN, max_bytes)
    if isinstance(out, Event):
        check_event(out, raw)  # type: ignore[arg-type]
    else:
        check_letter(out)
        assert out["origin"] == {"topic": "in", "partition": 3, "offset": 17}


def check_label_decoding(raw: bytes | None, message_key: str | None = None) -> None:
    out = decode_label(RawLabel(raw, ORIGIN, message_key))
    if isinstance(out, LabelRecord):
        assert len(out.id) <= MAX_ID_LENGTH and len(out.key) <= MAX_KEY_LENGTH and out.label is not None
    else:
        check_letter(out)


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELD_NAMES = st.sampled_from(["id", "key", "features", "label", "task", "ts", "extra", ""])
DOCUMENTS = st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6)
FEATURES = st.one_of(
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5), st.booleans()), min_size=1, max_size=4),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=4),
)
EVENTS = st.fixed_dictionaries(
    {"features": FEATURES},
    optional={"id": st.text(max_size=300), "key": st.text(max_size=300), "label": JSON_SCALARS, "task": st.one_of(st.text(max_size=5), st.integers()), "ts": st.floats(allow_nan=False, allow_infinity=False)},
)


def dumps_big(document: Any) -> bytes:
    """JSON with integers beyond 64 bits too (orjson refuses to write them)."""
    import json

    return json.dumps(document).encode()


@PROPERTY
@given(raw=st.one_of(st.none(), st.binary(max_size=300)))
@example(raw=None)
@example(raw=b"")
@example(raw=b"\xef\xbb\xbf{\"features\": {\"a\": 1}}")  # a byte-order mark
@example(raw=b'{"features": {"a": NaN}}')
@example(raw=b'{"features": {"a": 1e400}}')
@example(raw=b'{"features": {"a": "\\ud800"}}')  # a lone surrogate
@example(raw=b'{"features": {"a": 1}, "id": "\xff\xfe"}')  # invalid UTF-8
@example(raw=b"[" * 5000 + b"]" * 5000)  # nested past orjson's depth
@example(raw=b'{"features": {"a": 1, "a": "x"}, "label": 1, "label": [1]}')  # duplicate keys: the last wins
def test_any_bytes_decode_to_an_event_or_a_dead_letter(raw: bytes | None) -> None:
    check_event_decoding(raw)
    check_label_decoding(raw)


@PROPERTY
@given(document=DOCUMENTS)
def test_any_json_object_decodes_to_an_event_or_a_dead_letter(document: dict[str, Any]) -> None:
    raw = dumps_big(document)
    check_event_decoding(raw)
    check_label_decoding(raw, "k")


@PROPERTY
@given(document=EVENTS)
def test_event_shaped_documents_decode_within_their_bounds(document: dict[str, Any]) -> None:
    check_event_decoding(dumps_big(document))


@PROPERTY
@given(document=st.fixed_dictionaries({"id": st.text(max_size=300), "label": JSON_SCALARS}, optional={"key": st.text(max_size=300)}), message_key=st.one_of(st.none(), st.text(max_size=300)))
def test_label_shaped_documents_decode_within_their_bounds(document: dict[str, Any], message_key: str | None) -> None:
    check_label_decoding(dumps_big(document), message_key)


@settings(max_examples=25, database=None, deadline=None)
@given(size=st.integers(DEAD_LETTER_RAW_BYTES - 2, 3 * DEAD_LETTER_RAW_BYTES), fill=st.sampled_from([b"\x00", b"\xff", b"\\", b"\xe2\x82\xac", b'"']), max_bytes=st.sampled_from([1000, 1 << 20]))
def test_large_records_give_small_dead_letters(size: int, fill: bytes, max_bytes: int) -> None:
    """The worst characters to escape, records around and over the raw bound and the size limit."""
    raw = b'{"features": ' + fill * (size // len(fill))
    check_event_decoding(raw, max_bytes)
    check_label_decoding(raw)
