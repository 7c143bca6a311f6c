"""A corpus of hostile records, each with the outcome the service owes it, and a stream that interleaves them with valid events.

Used by ``tests/unit/test_hostile_records.py`` (each record through the
decoders) and ``tests/integration/test_hostile_corpus.py`` (the whole
stream through a JSONL file and through Kafka, the service run by its
command line).

An input record's outcome is ``prediction`` or the ``reason`` of its one
dead letter; a label record's is ``counted`` (in its key's
``delayed_labels``) or a reason (``schema``: the engine's dead letter, not
counted). ``file=False`` marks what only Kafka can
carry (a null value, headers, a value with a line break, message keys that
matter).
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from typing import Any, Literal

import orjson

MB = 1_000_000
SCHEMA_GUARD = "schema"  # the outcome of a record its key's schema refuses (stream_learner/schema.py)
ENGINE_REASONS = (SCHEMA_GUARD, "model_error")  # dead letters of records that decode, made by the learner step


@dataclass(frozen=True)
class Case:
    """One kind of hostile record and what must become of it."""

    kind: str
    value: bytes | None
    outcome: str
    topic: Literal["input", "labels"] = "input"
    key: bytes | None = None  # the Kafka message key
    headers: tuple[tuple[str, bytes], ...] = ()
    file: bool = True
    id: str | None = None  # the prediction's id, for an input whose outcome is a prediction


def ev(case_id: str | None, **fields: Any) -> bytes:
    """A JSON event (``json``, so integers beyond 64 bits and odd strings survive)."""
    document = {"features": {"a": 0.5, "b": 1.5}, **fields}
    if case_id is not None:
        document["id"] = case_id
    return json.dumps(document).encode()


def valid(kind: str, value: bytes, case_id: str | None = None, **more: Any) -> Case:
    return Case(kind, value, "prediction", id=case_id if case_id is not None else kind, **more)


def _nested(depth: int) -> bytes:
    return b'{"features": {"a": ' + b'{"x": ' * depth + b"1" + b"}" * depth + b"}}"


def input_cases() -> list[Case]:
    """Hostile input records (at least 60 kinds with the label ones); ids are unique, so each prediction is traceable."""
    rng = random.Random(7)
    cases = [
        # presence and size
        Case("tombstone", None, "tombstone", key=b"gone", file=False),  # kafka-python cannot send a null value with a null key
        Case("empty", b"", "empty"),
        Case("blank-spaces", b"   ", "invalid_json"),
        Case("only-newline", b"\n", "invalid_json", file=False),
        Case("invalid-3mb", b"x" * (3 * MB), "too_large"),
        Case("valid-event-1.2mb-id", ev("i" * 1_200_000), "too_large"),
        Case("valid-event-900kb-id", ev("i" * 900_000), "id_too_long"),
        Case("id-257-chars", ev("j" * 257), "id_too_long"),
        Case("key-257-chars", ev("k257", key="k" * 257), "key_too_long"),
        Case("label-257-chars", ev("l257", key="strings", label="l" * 257), "label_too_long"),
        valid("id-256-chars", ev("m" * 256), "m" * 256),
        valid("key-256-chars", ev("k256", key="K" * 256), "k256"),
        valid("key-200-chars", ev("k200", key="Q" * 200), "k200"),
        # to predict, a scaler in the model's pipeline keeps state for every feature it is asked about: refused as a learned one is
        Case("many-features", json.dumps({"id": "many-features", "features": {f"f{i}": i for i in range(20_000)}}).encode(), SCHEMA_GUARD),
        # encodings
        Case("invalid-utf8", b'{"features": {"a": 1}, "id": "\xff\xfe"}', "invalid_json"),
        Case("byte-order-mark", b"\xef\xbb\xbf" + ev("bom"), "invalid_json"),
        Case("lone-surrogate", b'{"features": {"a": 1}, "id": "\\ud800"}', "invalid_json"),
        Case("utf16", ev("utf16").decode().encode("utf-16"), "invalid_json"),
        Case("latin1", '{"features": {"a": 1}, "id": "caf\u00e9"}'.encode("latin-1"), "invalid_json"),
        Case("nul-bytes", b"\x00" * 16, "invalid_json"),
        Case("random-binary", bytes(rng.randrange(256) for _ in range(512)).replace(b"\n", b"\x00"), "invalid_json"),
        Case("gzip-compressed", gzip.compress(ev("gz"), mtime=0), "invalid_json", file=False),  # its bytes hold a line break
        valid("utf8-multibyte-id", ev("\u00e9\u4e2d\U0001f600"), "\u00e9\u4e2d\U0001f600"),
        valid("control-chars-in-id", ev("ctl\u0000\u001f\u007f"), "ctl\u0000\u001f\u007f"),
        valid("escaped-newline-in-id", ev("nl\nid"), "nl\nid"),
        valid("unicode-feature-name", ev("unicode-feature-name", features={"\u05e9\u05dc\u05d5\u05dd\U0001f600": 1.0})),
        valid("empty-feature-name", ev("empty-feature-name", features={"": 1.0})),
        # syntax
        Case("truncated", b'{"features": {"a": 1', "invalid_json"),
        Case("trailing-garbage", ev("tg") + b" x", "invalid_json"),
        Case("two-objects", ev("two1") + ev("two2"), "invalid_json"),
        Case("nan-token", b'{"features": {"a": NaN}}', "invalid_json"),
        Case("infinity-token", b'{"features": {"a": Infinity}}', "invalid_json"),
        Case("overflow-1e400", b'{"features": {"a": 1e400}}', "invalid_json"),
        Case("overflow-minus-1e400", b'{"features": {"a": -1e400}}', "invalid_json"),
        Case("nested-2000-deep", _nested(2000), "invalid_json"),
        Case("nested-100-deep", _nested(100), "invalid_event"),
        Case("single-quotes", b"{'features': {'a': 1}}", "invalid_json"),
        Case("comment", b'{"features": {"a": 1}} // hi', "invalid_json"),
        valid("duplicate-keys", b'{"id": "dup-first", "features": {"a": [1]}, "features": {"a": 1.0}, "id": "duplicate-keys"}'),
        valid("whitespace-and-newlines", b'\n\t {"id": "whitespace-and-newlines",\n "features": {"a": 1}}\r\n', file=False),
        # shapes and types
        Case("array", b"[1, 2, 3]", "not_an_object"),
        Case("string", b'"an event"', "not_an_object"),
        Case("number", b"42", "not_an_object"),
        Case("null", b"null", "not_an_object"),
        Case("true", b"true", "not_an_object"),
        Case("no-features", b'{"id": "nf", "label": 1}', "invalid_event"),
        Case("features-empty-object", b'{"features": {}}', "invalid_event"),
        Case("features-empty-array", b'{"features": []}', "invalid_event"),
        Case("features-string", b'{"features": "a=1"}', "invalid_event"),
        Case("features-number", b'{"features": 3}', "invalid_event"),
        Case("feature-null", b'{"features": {"a": null}}', "invalid_event"),
        Case("feature-object", b'{"features": {"a": {"b": 1}}}', "invalid_event"),
        Case("feature-array", b'{"features": {"a": [1, 2]}}', "invalid_event"),
        Case("array-features-with-string", b'{"features": [1, "two"]}', "invalid_event"),
        Case("array-features-with-bool", b'{"features": [1, true]}', "invalid_event"),
        Case("label-object", ev("lo", label={"y": 1}), "invalid_event"),
        Case("label-array", ev("la", label=[1]), "invalid_event"),
        Case("unknown-field", ev("uf", extra=1), "invalid_event"),
        Case("id-number", b'{"features": {"a": 1}, "id": 7}', "invalid_event"),
        Case("id-array", b'{"features": {"a": 1}, "id": ["x"]}', "invalid_event"),
        Case("key-empty", ev("ke", key=""), "invalid_event"),
        Case("key-number", ev("kn", key=5), "invalid_event"),
        Case("task-array", ev("ta", task=["t"]), "invalid_event"),
        Case("task-fraction", ev("tf", task=2.5), "invalid_event"),
        Case("ts-word", ev("tw", ts="soon"), "invalid_event"),
        # numbers that decode
        valid("int-beyond-64-bits", ev("big-int", features={"a": 2**70, "b": -(2**80)}), "big-int"),
        Case("float-max", ev("fmax", features={"a": 1.7976931348623157e308, "b": -1.7976931348623157e308}), "model_error"),  # the tree's Gaussian overflows
        valid("float-denormal", ev("fden", features={"a": 5e-324, "b": -0.0}), "fden"),
        valid("label-int-beyond-64-bits", ev("big-label", key="numbers", label=2**70), "big-label"),
        # Kafka records: headers and message keys of input records are not read
        valid("headers-on-valid", ev("hv"), "hv", headers=(("trace", b"\x00\xff"), ("trace", b"again")), file=False),
        Case("headers-on-invalid", b"{oops", "invalid_json", headers=(("content-type", b"text/plain"),), file=False),
        valid("null-message-key", ev("nk"), "nk", file=False),
        valid("binary-message-key", ev("bk"), "bk", key=b"\xff\x00\xfe", file=False),
        valid("100kb-message-key", ev("lk"), "lk", key=b"k" * 100_000, file=False),
        # schema changes mid-stream on the key "schema", which learned integer labels and a numeric x, a categorical colour
        Case("string-label-among-ints", schema_event("sl", label="yes"), SCHEMA_GUARD),
        Case("bool-label-among-ints", schema_event("sb", label=True), SCHEMA_GUARD),
        Case("number-feature-turns-string", schema_event("sn", x="1.5"), SCHEMA_GUARD),
        Case("string-feature-turns-number", schema_event("sc", colour=3), SCHEMA_GUARD),
        Case("40000-new-features", wide_event("sw", 40_000), SCHEMA_GUARD),  # learned, it made a Hoeffding tree 1.5 GB larger
    ]
    return cases


def label_cases() -> list[Case]:
    """Hostile and valid records of the labels topic (all Kafka only)."""
    lab = lambda **fields: json.dumps(fields).encode()  # noqa: E731
    cases = [
        Case("label-tombstone", None, "tombstone", "labels", key=b"late"),
        Case("label-tombstone-empty-key", None, "tombstone", "labels", key=b""),
        Case("label-empty", b"", "empty", "labels", key=b"late"),
        Case("label-invalid-json", b"{oops", "invalid_label_json", "labels", key=b"late"),
        Case("label-record-array", b"[]", "not_an_object", "labels", key=b"late"),
        Case("label-no-id", lab(label=1), "invalid_label", "labels", key=b"late"),
        Case("label-null", lab(id="late-3", label=None), "invalid_label", "labels", key=b"late"),
        Case("label-object-value", lab(id="late-3", label={"a": 1}), "invalid_label", "labels", key=b"late"),
        Case("label-key-number", lab(id="late-3", label=1, key=4), "invalid_label", "labels"),
        Case("label-key-empty", lab(id="late-3", label=1, key=""), "invalid_label", "labels"),
        Case("label-extra-field", lab(id="late-3", label=1, extra=True), "invalid_label", "labels", key=b"late"),
        Case("label-id-257-chars", lab(id="x" * 257, label=1), "id_too_long", "labels", key=b"late"),
        Case("label-message-key-257-chars", lab(id="late-3", label=1), "key_too_long", "labels", key=b"q" * 257),
        Case("label-3mb", b"y" * (3 * MB), "too_large", "labels", key=b"late"),
        Case("label-with-headers", lab(id="late-10", label=1), "counted", "labels", key=b"late", headers=(("h", b"v"),)),
        Case("label-null-message-key", lab(id="hv", label=1), "counted", "labels"),
        Case("label-twice-first", lab(id="late-15", label=1), "counted", "labels", key=b"late"),
        Case("label-twice-second", lab(id="late-15", label=0), "counted", "labels", key=b"late"),
        Case("label-unknown-id", lab(id="nobody", label=1), "counted", "labels", key=b"late"),
        Case("label-for-unseen-key", lab(id="ghost-1", label=1, key="ghosts"), "counted", "labels"),
        Case("label-wrong-kind-for-key", lab(id="schema-late", label="yes"), SCHEMA_GUARD, "labels", key=b"schema"),
    ]
    return cases


def schema_event(case_id: str, label: Any = 1, x: Any = 0.5, colour: Any = "red") -> bytes:
    return json.dumps({"id": case_id, "key": "schema", "features": {"x": x, "colour": colour}, "label": label}).encode()


def wide_event(case_id: str, new_features: int) -> bytes:
    """An event of the key "schema" with its features and ``new_features`` more, past the run's ``--max-features``."""
    features = {"x": 0.5, "colour": "red", **{f"f{i}": 1.0 for i in range(new_features)}}
    return json.dumps({"id": case_id, "key": "schema", "features": features, "label": 1}).encode()


@dataclass(frozen=True)
class Record:
    """One record of the stream: what is produced (or written as a line) and what must become of it."""

    kind: str
    value: bytes | None
    outcome: str
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    id: str | None = None


def stream(kafka: bool, fillers: int = 8, seed: int = 11) -> tuple[list[Record], list[Record]]:
    """Input records (hostile cases between valid events) and label records.

    The valid events: key ``default`` (numeric features, integer labels),
    ``schema`` (labelled, for the schema cases), ``late`` (unlabelled, their
    labels on the labels topic), and one unlabelled ``schema-late``.
    """
    rng = random.Random(seed)
    inputs: list[Record] = []
    serial = 0

    def filler() -> None:
        nonlocal serial
        serial += 1
        a, b = rng.random(), rng.random()
        if serial % 5 == 0:
            doc = {"id": f"late-{serial}", "key": "late", "features": {"a": a, "b": b}}
        elif serial % 5 == 1:
            doc = {"id": f"s-{serial}", "key": "schema", "features": {"x": a, "colour": rng.choice(["red", "blue"])}, "label": int(a > 0.5)}
        else:
            doc = {"id": f"v-{serial}", "features": {"a": a, "b": b}, "label": int(a + b > 1)}
        inputs.append(Record("valid", orjson.dumps(doc), "prediction", key=doc.get("key", "default").encode(), id=doc["id"]))

    for _ in range(200):  # every key has learned its schema before the first hostile record
        filler()
    for case in input_cases():
        if not kafka and not case.file:
            continue
        inputs.append(Record(case.kind, case.value, case.outcome, case.key, case.headers, case.id))
        for _ in range(fillers):
            filler()
    inputs.append(Record("valid", b'{"id": "schema-late", "key": "schema", "features": {"x": 0.5, "colour": "red"}}', "prediction", b"schema", id="schema-late"))
    late = [r.id for r in inputs if r.id is not None and r.id.startswith("late-")]
    labels: list[Record] = []
    if kafka:
        labels = [Record("valid-label", orjson.dumps({"id": i, "label": int(n % 3 == 0)}), "counted", b"late") for n, i in enumerate(late[10:])]
        labels += [Record(c.kind, c.value, c.outcome, c.key, c.headers) for c in label_cases()]
    return inputs, labels


def jsonl(records: list[Record]) -> bytes:
    """The input records as the lines of a JSONL file (each value one line)."""
    assert all(r.value is not None and b"\n" not in r.value for r in records), "a Kafka-only record in a file"
    return b"".join(r.value + b"\n" for r in records)  # type: ignore[operator]
