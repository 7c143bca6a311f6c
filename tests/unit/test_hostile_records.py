"""Hostile records each become one dead letter with the right reason; valid neighbours still decode.

The records that crashed or could crash the service: tombstones, empty
values, records over the size limit, ids, keys and labels too long to
publish, and dead letters too large for a Kafka producer.
"""

from __future__ import annotations

import hashlib

import hostile_corpus
import orjson
import pytest

from connectors.base import RawRecord
from stream_learner.app.dataflow import Answer, decode_batch
from stream_learner.app.telemetry import Telemetry
from stream_learner.delayed import LabelRecord, RawLabel, decode_label
from stream_learner.engine import EngineConfig, KeyedLearner, StepOutput
from stream_learner.events import DEAD_LETTER_RAW_BYTES, MAX_CLASSES, MAX_ID_LENGTH, MAX_LABEL_LENGTH, DeadLetter, Event, Origin, dead_letter, decode_event
from stream_learner.learners.base import LearnerSpec

ORIGIN = Origin("in", 0, 9)
VALID = b'{"features": {"a": 1}, "label": true}'


def event_doc(**fields: object) -> bytes:
    return orjson.dumps({"features": {"a": 1}, **fields})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "tombstone"),
        (b"", "empty"),
        (b" ", "invalid_json"),
        (b"x" * 3_000_000, "too_large"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"null", "not_an_object"),
        (b'{"features": []}', "invalid_event"),
        (event_doc(id="i" * (MAX_ID_LENGTH + 1)), "id_too_long"),
        (event_doc(id="i" * 900_000), "id_too_long"),
        (event_doc(id="i" * 1_200_000), "too_large"),
        (event_doc(key="k" * 257), "key_too_long"),
        (event_doc(label="l" * 257), "label_too_long"),
        (b'{"features": {"a": 1}, "extra\\nfield": 1}', "invalid_event"),
    ],
)
def test_a_hostile_event_is_one_dead_letter_with_its_reason(raw: bytes | None, reason: str) -> None:
    letter = decode_event(raw, ORIGIN)
    assert isinstance(letter, dict) and letter["reason"] == reason, letter if isinstance(letter, Event) else letter["error"]
    DeadLetter.model_validate(letter)
    assert "\n" not in letter["error"] and len(orjson.dumps(letter)) < 1_000_000


@pytest.mark.parametrize(
    ("raw", "message_key", "reason"),
    [
        (None, "k", "tombstone"),
        (None, None, "tombstone"),
        (b"", None, "empty"),
        (b"{oops", None, "invalid_label_json"),
        (b"[]", None, "not_an_object"),
        (b'{"id": "e1"}', None, "invalid_label"),
        (b'{"id": "e1", "label": null}', None, "invalid_label"),
        (b'{"id": "e1", "label": 1, "key": 5}', None, "invalid_label"),
        (orjson.dumps({"id": "e" * 300, "label": 1}), None, "id_too_long"),
        (orjson.dumps({"id": "e1", "label": 1}), "k" * 300, "key_too_long"),
        (orjson.dumps({"id": "e1", "label": "l" * 300}), None, "label_too_long"),
        (b"y" * 2_000_000, None, "too_large"),
    ],
)
def test_a_hostile_label_is_one_dead_letter_with_its_reason(raw: bytes | None, message_key: str | None, reason: str) -> None:
    letter = decode_label(RawLabel(raw, Origin("labels", 1, 4), message_key))
    assert isinstance(letter, dict) and letter["reason"] == reason
    DeadLetter.model_validate(letter)


def test_a_label_with_a_null_message_key_goes_to_the_default_key() -> None:
    assert decode_label(RawLabel(b'{"id": "e1", "label": 1}', ORIGIN, None)) == LabelRecord("e1", "default", 1)


def test_a_record_over_the_limit_keeps_a_prefix_its_size_and_its_hash() -> None:
    raw = b'{"features": {"a": "' + b"\xff" * 3_000_000 + b'"}}'
    letter = decode_event(raw, ORIGIN)
    assert isinstance(letter, dict) and letter["reason"] == "too_large"
    assert letter["raw_bytes"] == len(raw) and letter["raw_sha256"] == hashlib.sha256(raw).hexdigest()
    assert letter["raw"].startswith('{"features": {"a": "\\xff') and letter["raw"].count("\\xff") == DEAD_LETTER_RAW_BYTES - 20
    assert "3,000,023 bytes, over the limit of 1,048,576" in letter["error"]


def test_the_limit_is_the_callers() -> None:
    assert isinstance(decode_event(VALID, ORIGIN, max_bytes=len(VALID)), Event)
    letter = decode_event(VALID, ORIGIN, max_bytes=len(VALID) - 1)
    assert isinstance(letter, dict) and letter["reason"] == "too_large" and letter["raw"] == VALID[:-1].decode()


def test_a_dead_letter_of_a_record_under_the_limit_but_over_the_raw_bound_is_cut() -> None:
    raw = b"{" + b"\x01" * 900_000  # invalid JSON, every byte escaped as \u0001 in JSON
    letter = decode_event(raw, ORIGIN)
    assert isinstance(letter, dict) and letter["reason"] == "invalid_json"
    assert letter["raw_bytes"] == len(raw) and len(letter["raw"]) == DEAD_LETTER_RAW_BYTES
    assert len(orjson.dumps(letter)) < 6 * DEAD_LETTER_RAW_BYTES + 4096


def test_a_dead_letter_error_is_one_bounded_line() -> None:
    letter = dead_letter("model_error", "line one\nline two\r\n" + "z" * 5000 + "\ud800", b"{}", ORIGIN, ts=1.0)
    assert letter["error"].startswith("line one line two ") and len(letter["error"]) == 500 and letter["error"].endswith("…")
    orjson.dumps(letter)  # no lone surrogate left


def test_the_engine_s_dead_letter_of_a_large_valid_event_is_small() -> None:
    """A valid event of ~900 KB (under the limit) that the model cannot take: its dead letter still fits a producer."""
    step = KeyedLearner("default", EngineConfig(detector=None))
    step.process([Event("e0", "default", {"a": 1.0}, True, None, 0, 0)], now=0.0)
    raw = orjson.dumps({"features": {"a": "text", "pad": "p" * 900_000}, "label": True})
    out = step.process([Event("e1", "default", {"a": "text"}, True, None, 0, 1, raw)], now=1.0)  # a number turned string
    [letter] = out.dead_letters
    assert letter["reason"] in ("model_error", "schema") and letter["raw_bytes"] == len(raw) and len(orjson.dumps(letter)) < 200_000


def test_decode_batch_applies_the_limit_and_splits_every_record_once() -> None:
    items = [
        RawRecord(VALID, Origin("in", 0, 0)),
        RawRecord(None, Origin("in", 0, 1)),
        RawRecord(b"x" * 200, Origin("in", 0, 2)),
        RawLabel(None, Origin("labels", 0, 0), None),
        RawLabel(b'{"id": "e", "label": 1}', Origin("labels", 0, 1), "k"),
        RawRecord(event_doc(key="k", id="e"), Origin("in", 0, 3)),
    ]
    out = decode_batch(items, max_bytes=100)  # type: ignore[arg-type]
    groups = {key: read.items for key, read in (o for o in out if isinstance(o, tuple))}
    [dead] = [o.out for o in out if isinstance(o, Answer)]
    assert [d["reason"] for d in dead.dead_letters] == ["tombstone", "too_large", "tombstone"]
    assert [type(x).__name__ for x in groups["default"]] == ["Event"]
    assert [type(x).__name__ for x in groups["k"]] == ["LabelRecord", "Event"]


def test_telemetry_counts_dead_letters_by_their_reason() -> None:
    t = Telemetry()
    letters = [decode_event(raw, ORIGIN) for raw in (None, b"", b"{", b"{", b"[]")]
    t.on_outputs([StepOutput(dead_letters=letters)])  # type: ignore[arg-type]
    counts = {r: t.sample("stream_learner_dead_letters_total", reason=r) for r in ("tombstone", "empty", "invalid_json", "not_an_object")}
    assert counts == {"tombstone": 1.0, "empty": 1.0, "invalid_json": 2.0, "not_an_object": 1.0}


def test_the_hostile_corpus_has_sixty_kinds_and_each_decodes_to_its_outcome() -> None:
    """Each record of the corpus the integration tests run, through the decoders alone (the schema cases need a model)."""
    cases = hostile_corpus.input_cases() + hostile_corpus.label_cases()
    assert len({c.kind for c in cases}) == len(cases) >= 60
    for case in hostile_corpus.input_cases():
        out = decode_event(case.value, ORIGIN)
        if case.outcome == "prediction":
            assert isinstance(out, Event) and out.id == case.id, case.kind
        elif case.outcome in hostile_corpus.ENGINE_REASONS:
            assert isinstance(out, Event), case.kind
        else:
            assert isinstance(out, dict) and out["reason"] == case.outcome, (case.kind, out)
            assert len(orjson.dumps(out)) < 1_000_000
    for case in hostile_corpus.label_cases():
        message_key = case.key.decode("utf-8", "replace") if case.key else None  # as the Kafka source decodes it
        out = decode_label(RawLabel(case.value, ORIGIN, message_key))
        decodes = case.outcome in ("counted", hostile_corpus.SCHEMA_GUARD)  # the schema refuses a label later, in the engine
        assert (isinstance(out, LabelRecord) if decodes else out["reason"] == case.outcome), (case.kind, out)  # type: ignore[index]


def test_a_key_learns_at_most_max_classes_so_a_prediction_stays_small() -> None:
    """Each class adds a probability to every prediction: 1,000 labels of 256 characters still fit a producer, the next is refused."""
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("naive_bayes"), detector=None, forgetting_every=0))
    labels = [f"{i:04d}".ljust(MAX_LABEL_LENGTH, "L") for i in range(MAX_CLASSES + 1)]
    out = step.process([Event(f"e{i}", "k", {"a": float(i % 7)}, y, None, 0, i) for i, y in enumerate(labels)], now=0.0)
    [letter] = out.dead_letters
    assert letter["reason"] == "schema" and "over the limit of 1,000" in letter["error"] and letter["origin"]["offset"] == MAX_CLASSES
    assert step.learned == MAX_CLASSES and len(step.schema.classes) == MAX_CLASSES
    out = step.process([Event("next", "k", {"a": 1.0}, labels[0], None, 0, MAX_CLASSES + 1)], now=1.0)  # a known class is still learned
    event_id, prediction, proba, version, concept = out.predictions.rows[0]
    record = {"id": event_id, "key": "k", "prediction": prediction, "proba": proba, "model_version": version, "concept": concept, "ts": 1.0}
    assert len(proba) == MAX_CLASSES and len(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS)) < 400_000
