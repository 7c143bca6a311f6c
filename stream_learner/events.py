"""The event contracts of ``DESIGN.md`` and the decoder that never raises.

Input events are validated with pydantic; valid ones become the light
:class:`Event` the learner consumes, invalid ones a :class:`DeadLetter`
with a readable reason and the raw bytes.

>>> origin = Origin(topic="in", partition=0, offset=7)
>>> event = decode_event(b'{"features": {"x": 1.5}, "label": true}', origin)
>>> event.id, event.key, event.features, event.label
('in:0:7', 'default', {'x': 1.5}, True)
>>> bad = decode_event(b'{"features": {"x": "1", "y": null}}', origin)
>>> bad["reason"], bad["error"], bad["origin"]
('invalid_event', "invalid event: features: 'y' must be a finite number, a string or a boolean, not None", {'topic': 'in', 'partition': 0, 'offset': 7})

Whatever the bytes, the decoder returns an event or a dead letter, and a
dead letter stays small: a record over ``max_bytes`` (or a dead letter's
raw text over :data:`DEAD_LETTER_RAW_BYTES`) is cut to a prefix, with its
size and SHA-256.

>>> decode_event(None, origin)["reason"], decode_event(b"", origin)["reason"]
('tombstone', 'empty')
>>> big = decode_event(b"x" * 5000, origin, max_bytes=4096)
>>> big["reason"], len(big["raw"]), big["raw_bytes"], big["raw_sha256"][:12]
('too_large', 4096, 5000, 'c59d3c0480cc')
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from stream_learner.records import DeadLetterDict, DeadLetterReason, OriginDict

DEFAULT_KEY = "default"

MAX_RECORD_BYTES = 1 << 20
"""The default largest input record decoded (1 MiB); a larger one is a ``too_large`` dead letter."""
MAX_ID_LENGTH = 256
"""The longest event id (characters): an id travels in every prediction."""
MAX_KEY_LENGTH = 256
"""The longest model key (characters): a key names a learner, its snapshots and its metric labels."""
MAX_LABEL_LENGTH = 256
"""The longest string label (characters): a learned label comes back in every later prediction."""
MAX_CLASSES = 1000
"""The most classes a model key learns: a prediction's ``proba`` holds one entry per class, each label up to :data:`MAX_LABEL_LENGTH`."""
MAX_KEYS = 100_000
"""The default most model keys one worker holds, in memory or evicted: each is a learner, and a stream of ever-new keys would grow without end."""
MAX_FEATURES = 1000
"""The default most features a model key learns: a model keeps state per feature (a Hoeffding tree per feature, class and leaf)."""
DEAD_LETTER_RAW_BYTES = 64 << 10
"""The most raw bytes a dead letter carries; JSON-escaped that is at most six times as many (far below a Kafka producer's 1 MB)."""
MAX_ERROR_LENGTH = 500
"""The longest dead-letter ``error`` line (characters)."""

Label = Union[StrictBool, float, str]


class OriginModel(BaseModel):
    """Where a record came from: topic (or source name), partition, offset."""

    topic: str
    partition: int
    offset: int


class InputEvent(BaseModel):
    """One input event, one JSON object per message."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str | None = None
    features: dict[str, Any] | list[Any]
    label: Any = None
    task: str | int | None = None
    key: str | None = Field(default=None, min_length=1)
    ts: float | datetime | None = None

    @field_validator("features", mode="before")
    @classmethod
    def _check_features(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if not value:
                raise ValueError("must not be empty")
            for name, v in value.items():
                if not _is_scalar(v):
                    raise ValueError(f"{name!r} must be a finite number, a string or a boolean, not {v!r}")
            return value
        if isinstance(value, list):
            if not value:
                raise ValueError("must not be empty")
            for i, v in enumerate(value):
                if isinstance(v, bool) or not _is_scalar(v) or isinstance(v, str):
                    raise ValueError(f"item {i} must be a finite number, not {v!r}")
            return value
        raise ValueError(f"must be an object or an array of numbers, not {type(value).__name__}")

    @field_validator("label", mode="before")
    @classmethod
    def _check_label(cls, value: Any) -> Any:
        return _checked_label(value)


def _checked_label(value: Any) -> Any:
    """``value`` if it can be a label (a finite number, a string, a boolean or null), else a ``ValueError`` that says why."""
    if value is not None and not _is_scalar(value):
        raise ValueError(f"must be a finite number, a string, a boolean or null, not {value!r}")
    return value


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (bool, str, int)):
        return True
    return isinstance(value, float) and math.isfinite(value)


class DelayedLabel(BaseModel):
    """A label that arrives after its event, on the labels topic."""

    model_config = ConfigDict(extra="forbid")

    id: str
    label: Any

    @field_validator("label", mode="before")
    @classmethod
    def _check_label(cls, value: Any) -> Any:
        return _checked_label(value)


class Prediction(BaseModel):
    """One prediction per valid input event."""

    id: str
    key: str
    prediction: Label | None
    proba: dict[str, float] | None = None
    model_version: int
    concept: int
    ts: float


class ShadowPrediction(BaseModel):
    """A challenger's prediction for an event, beside the champion's published one (see :mod:`stream_learner.slot`)."""

    id: str
    key: str
    candidate: str
    prediction: Label | None
    proba: dict[str, float] | None = None
    model_version: int
    concept: int
    ts: float


class ForgettingSummary(BaseModel):
    """Average forgetting, backward transfer and the (bounded) accuracy matrix.

    ``matrix[t][j]`` is the accuracy on concept ``columns[j]`` at the ``t``-th
    kept evaluation point (``metric`` ``mae``, a regression model's: the mean
    absolute error); see :mod:`stream_learner.forgetting`.
    """

    average: float | None = None
    bwt: float | None = None
    average_accuracy: float | None = None
    average_mae: float | None = None
    metric: Literal["accuracy", "mae"] = "accuracy"
    concepts: int = 0
    columns: list[int] = Field(default_factory=list)
    matrix: list[list[float | None]] = Field(default_factory=list)


class DelayedLabelCounts(BaseModel):
    """What a run's delayed-label window has received, joined, expired and holds (see :mod:`stream_learner.delayed`)."""

    received: int
    matched: int
    expired: int
    unmatched: int
    waiting: int
    pending: int


class MetricsRecord(BaseModel):
    """Prequential metrics of one model key, published periodically."""

    type: Literal["metrics"] = "metrics"
    key: str
    events: int
    labelled: int
    accuracy: float | None
    accuracy_window: float | None
    mae: float | None = None
    rmse: float | None = None
    concept: int
    concepts: int
    drifts: int
    forgetting: ForgettingSummary = Field(default_factory=ForgettingSummary)
    ts: float
    delayed_labels: DelayedLabelCounts | None = None  # only in a run that joins delayed labels
    failures: int = 0  # model failures no event carries (a boundary, an evaluation); left out while 0
    candidate: str | None = None  # only where the key has challengers (see stream_learner.slot)
    champion: bool | None = None  # with candidate


class ReuseEvidence(BaseModel):
    """The paired test by which a stored concept's model came back (see :mod:`stream_learner.step.recurring`)."""

    test: str
    statistic: float
    p_value: float
    n: int
    alpha: float
    live_error: float
    stored_error: float


class DriftRecord(BaseModel):
    """A detected concept drift (or an explicit task switch, or, with ``detector`` "recurring", an earlier concept's model back)."""

    type: Literal["drift"] = "drift"
    key: str
    detector: str
    at_event: int
    concept: int
    ts: float
    reused_concept: int | None = None  # only on a "recurring" record
    evidence: ReuseEvidence | None = None  # only on a "recurring" record
    candidate: str | None = None  # only where the key has challengers
    champion: bool | None = None  # with candidate


class FeatureScore(BaseModel):
    """One feature that moved, and its statistic (the population stability index)."""

    name: str
    psi: float


class FeatureDriftRecord(BaseModel):
    """The distribution of the features moved (input drift, see :mod:`stream_learner.feature_drift`), labels or not."""

    type: Literal["feature_drift"] = "feature_drift"
    key: str
    features: list[FeatureScore]  # highest first
    statistic: Literal["psi"] = "psi"
    at_event: int
    concept: int  # after any boundary the drift started
    ts: float
    candidate: str | None = None  # only where the key has challengers
    champion: bool | None = None  # with candidate


class PromotionEvidence(BaseModel):
    """The paired test on which a challenger beat the champion (see :mod:`stream_learner.evidence`)."""

    window: int
    champion_error: float
    challenger_error: float
    statistic: float
    p_value: float
    test: str


class PromotionRecord(BaseModel):
    """A challenger replaced a key's champion (``applied``), or is recommended to (see :mod:`stream_learner.slot`)."""

    type: Literal["promotion"] = "promotion"
    key: str
    champion: str
    challenger: str
    evidence: PromotionEvidence
    at_event: int
    applied: bool
    ts: float


class ControlAnswer(BaseModel):
    """The engine's answer to an operator's command: applied, refused (with the reason) or a duplicate (see :mod:`stream_learner.control`)."""

    type: Literal["control"] = "control"
    key: str
    id: str
    action: str
    arg: str | int | None = None
    status: Literal["applied", "refused", "duplicate"]
    reason: str | None = None
    version: int | None = None  # a rollback applied: the snapshot version installed
    at_event: int
    ts: float


class DeadLetter(BaseModel):
    """A record that could not be used, why, and where it came from.

    ``raw`` is the record as text; when the record is longer than
    :data:`DEAD_LETTER_RAW_BYTES` it is the text of that prefix, and
    ``raw_bytes`` and ``raw_sha256`` describe the whole record.
    """

    reason: DeadLetterReason
    error: str
    raw: str
    raw_bytes: int | None = None
    raw_sha256: str | None = None
    origin: OriginModel
    ts: float


@dataclass(slots=True, frozen=True)
class Origin:
    """Where a raw record came from: topic (or source name), partition, offset."""

    topic: str
    partition: int
    offset: int

    def event_id(self) -> str:
        """The default event id, ``topic:partition:offset``."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(slots=True)
class Event:
    """A validated event as the learner consumes it.

    ``features`` is always a dict (list features are keyed by position).
    ``partition`` and ``offset`` locate it in its source, so a restored
    learner can skip what it has already learned; ``raw`` keeps the bytes it
    was decoded from (``None`` for events built in-process), so a dead letter
    can carry them.
    """

    id: str
    key: str
    features: dict[Any, Any]
    label: Any
    task: str | int | None
    partition: int
    offset: int
    raw: bytes | None = None


EventRow = tuple[str, dict[Any, Any], Any, "Event | None"]  # (id, features, label, the Event or None): what the learner step reads


@dataclass(slots=True)
class EventBatch:
    """Trusted events of one model key at consecutive offsets of one source partition, as ``(features, label)`` pairs.

    What an in-process source (a synthetic stream, a bundled dataset, a
    memory source) hands the learner instead of an :class:`Event` per event:
    its events are trusted, so the batch carries only what the learner reads
    (what an :class:`Event` costs: ``benchmarks/README.md``, "Decoding and
    events"). Event ``i`` has offset ``first_offset + i``, id
    ``topic:partition:offset`` and no task.

    >>> batch = EventBatch("synthetic:sea", "default", 0, 7, [({"x": 1.0}, True), ({"x": 2.0}, False)])
    >>> list(batch.rows(8))
    [('synthetic:sea:0:8', {'x': 2.0}, False, None)]
    >>> batch.event("synthetic:sea:0:7") == batch.events()[0] == Event("synthetic:sea:0:7", "default", {"x": 1.0}, True, None, 0, 7)
    True
    """

    topic: str
    key: str
    partition: int
    first_offset: int
    pairs: list[tuple[dict[Any, Any], Any]]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def end_offset(self) -> int:
        """The offset after the last event."""
        return self.first_offset + len(self.pairs)

    def rows(self, start: int = 0) -> Iterator[EventRow]:
        """``(id, features, label, None)`` for each event from offset ``start`` on (built in C, by ``zip`` and ``map``)."""
        skip = max(0, start - self.first_offset)
        pairs = self.pairs[skip:] if skip else self.pairs
        ids = map(f"{self.topic}:{self.partition}:".__add__, map(str, range(self.first_offset + skip, self.end_offset)))
        return zip(ids, map(itemgetter(0), pairs), map(itemgetter(1), pairs), repeat(None))

    def event(self, event_id: str) -> Event:
        """The :class:`Event` of one of this batch's ids (its offset is the id's last part)."""
        offset = int(event_id.rpartition(":")[2])
        x, y = self.pairs[offset - self.first_offset]
        return Event(event_id, self.key, x, y, None, self.partition, offset)

    def events(self) -> list[Event]:
        """One :class:`Event` per pair."""
        return [Event(id_, self.key, x, y, None, self.partition, offset) for offset, (id_, x, y, _) in enumerate(self.rows(), start=self.first_offset)]


def decode_event(raw: bytes | None, origin: Origin, max_bytes: int = MAX_RECORD_BYTES) -> Event | DeadLetterDict:
    """Decode one raw JSON record; never raises.

    Returns an :class:`Event`, or a dead letter (of the :class:`DeadLetter`
    contract) whose ``reason`` is one of
    :data:`DeadLetterReason` and whose ``error`` says in one line what is wrong.
    """
    document = load_object(raw, max_bytes)
    if type(document) is not dict or raw is None:  # an object comes from bytes: the second test is for the type checker
        return refusal(raw, origin, max_bytes, "event")
    event = _plain_event(document, raw, origin)
    if event is None:
        try:
            parsed = InputEvent.model_validate(document)
        except ValidationError as exc:
            return dead_letter("invalid_event", _describe(exc), raw, origin)
        features: dict[Any, Any] = dict(enumerate(parsed.features)) if isinstance(parsed.features, list) else parsed.features
        event = Event(
            id=parsed.id if parsed.id is not None else origin.event_id(),
            key=parsed.key or DEFAULT_KEY,
            features=features,
            label=parsed.label,
            task=parsed.task,
            partition=origin.partition,
            offset=origin.offset,
            raw=raw,
        )
    too_long = too_long_field(event.id, event.key, event.label)
    if too_long is not None:
        return dead_letter(too_long[0], f"invalid event: {too_long[1]}", raw, origin)
    return event


def load_object(raw: bytes | None, max_bytes: int) -> Any:
    """The parsed JSON of a record of at most ``max_bytes``, else ``None``; never raises (:func:`refusal` says why there is no object)."""
    try:
        return orjson.loads(raw) if raw and len(raw) <= max_bytes else None
    except orjson.JSONDecodeError:
        return None


def refusal(raw: bytes | None, origin: Origin, max_bytes: int, what: Literal["event", "label", "command"]) -> DeadLetterDict:
    """The dead letter of a record that holds no JSON object (``what`` words it): why, from the record again."""
    if raw is None:
        return dead_letter("tombstone", f"invalid {what}: a null record value (a tombstone)", b"", origin)
    if not raw:
        return dead_letter("empty", f"invalid {what}: an empty record", raw, origin)
    if len(raw) > max_bytes:
        error = f"invalid {what}: {len(raw):,} bytes, over the limit of {max_bytes:,}"
        return dead_letter("too_large", error, raw, origin, keep=min(max_bytes, DEAD_LETTER_RAW_BYTES))
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if what == "event":
            return dead_letter("invalid_json", f"invalid JSON: {exc}", raw, origin)
        if what == "command":
            return dead_letter("invalid_command", f"invalid control command JSON: {exc}", raw, origin)
        return dead_letter("invalid_label_json", f"invalid label JSON: {exc}", raw, origin)
    return dead_letter("not_an_object", f"invalid {what}: must be a JSON object, not {type(document).__name__}", raw, origin)


def too_long_field(event_id: str, key: str, label: Any) -> tuple[DeadLetterReason, str] | None:
    """The reason and message of the first of an id, a key, a string label that is over its length limit, or ``None``.

    >>> too_long_field("e1", "k" * 300, "cat")
    ('key_too_long', 'key is 300 characters, over the limit of 256')
    """
    if len(event_id) > MAX_ID_LENGTH:
        return "id_too_long", f"id is {len(event_id):,} characters, over the limit of {MAX_ID_LENGTH}"
    if len(key) > MAX_KEY_LENGTH:
        return "key_too_long", f"key is {len(key):,} characters, over the limit of {MAX_KEY_LENGTH}"
    if type(label) is str and len(label) > MAX_LABEL_LENGTH:
        return "label_too_long", f"label is {len(label):,} characters, over the limit of {MAX_LABEL_LENGTH}"
    return None


_FIELDS = frozenset(InputEvent.model_fields)


def _plain_event(document: dict[str, Any], raw: bytes, origin: Origin) -> Event | None:
    """The event of a document that plainly satisfies :class:`InputEvent`, else ``None``.

    A shortcut for the common shape (string id and key, numeric or string
    features, a scalar label, a string or integer task, a numeric ``ts``),
    because pydantic's validation costs several times the JSON parsing (see
    ``benchmarks/README.md``, "Decoding and events"). It accepts
    a subset of what :class:`InputEvent` accepts, with the same result
    (tested against it); anything else goes through pydantic, which also
    words the errors.
    """
    if not _FIELDS.issuperset(document):
        return None
    get = document.get
    event_id, key, task, ts, label = get("id"), get("key"), get("task"), get("ts"), get("label")
    if event_id is not None and type(event_id) is not str:
        return None
    if key is not None and (type(key) is not str or not key):
        return None
    if task is not None and type(task) is not str and type(task) is not int:
        return None
    if ts is not None and type(ts) is not float and type(ts) is not int:
        return None
    if label is not None and not _is_scalar(label):
        return None
    features = get("features")
    if type(features) is not dict or not features:
        return None
    for value in features.values():
        kind = type(value)
        if kind is not float and kind is not int and kind is not str and kind is not bool:
            return None
    return Event(
        event_id if event_id is not None else origin.event_id(),
        key or DEFAULT_KEY,
        features,
        label,
        task,
        origin.partition,
        origin.offset,
        raw,
    )


def dead_letter(
    reason: DeadLetterReason, error: str, raw: bytes | str, origin: Origin, ts: float | None = None, keep: int = DEAD_LETTER_RAW_BYTES
) -> DeadLetterDict:
    """A dead-letter record of the :class:`DeadLetter` contract, whatever the inputs, small enough for any sink.

    The raw record is kept as text (bytes decoded leniently), cut to its
    first ``keep`` bytes (at most :data:`DEAD_LETTER_RAW_BYTES`) with its
    size and SHA-256 when longer; ``error`` is made one line of at most
    :data:`MAX_ERROR_LENGTH` characters.

    >>> letter = dead_letter("invalid_event", "two\\nlines", b"\\xff{", Origin("in", 0, 3), ts=1.0)
    >>> letter["error"], letter["raw"]
    ('two lines', '\\\\xff{')
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    line = _one_line(error)
    where: OriginDict = {"topic": origin.topic, "partition": origin.partition, "offset": origin.offset}
    stamp = time.time() if ts is None else ts
    keep = min(keep, DEAD_LETTER_RAW_BYTES)
    if len(data) <= keep:
        return {"reason": reason, "error": line, "raw": _text(data), "origin": where, "ts": stamp}
    size, digest = len(data), hashlib.sha256(data).hexdigest()
    return {"reason": reason, "error": line, "raw": _text(data[:keep]), "raw_bytes": size, "raw_sha256": digest, "origin": where, "ts": stamp}


def _text(data: bytes) -> str:
    """Bytes as text any JSON encoder takes: invalid UTF-8 (a lone surrogate too) as ``\\xNN`` escapes."""
    return data.decode("utf-8", errors="backslashreplace")


def _one_line(text: str) -> str:
    line = " ".join(text.splitlines())
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate (from an exception's text) as an escape
    return line if len(line) <= MAX_ERROR_LENGTH else line[: MAX_ERROR_LENGTH - 1] + "…"


def _describe(exc: ValidationError) -> str:
    """One readable line from a pydantic error."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "event"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "invalid event: " + "; ".join(parts) + more
