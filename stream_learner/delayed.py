"""Delayed labels: a bounded window joining late labels to earlier predictions.

A label message is ``{"id": str, "label": ..., "key": str?}``. It reaches the
model key named by its ``"key"``, else by its Kafka message key, else
``"default"`` (producers should key input events and their labels alike).

The join holds, per model key, at most ``max_size`` unlabelled predictions
for at most ``max_age`` seconds. A label whose prediction is pending is
*matched* and learned from; one whose prediction already left the window
is *expired*; one that names no known prediction waits (bounded the same
way: its event may still be on its way) and, if none comes, is *unmatched*.
The first label of an id wins; a second one for it is *unmatched*.
Nothing is dropped silently: ``matched + expired + unmatched + waiting``
equals the labels ``received``.

>>> w = PendingWindow(max_size=2, max_age=60.0)
>>> w.add("a", {"x": 1}, True, now=0.0), w.add("b", {"x": 2}, False, now=0.0)
(None, None)
>>> w.label("a", True, now=1.0)
({'x': 1}, True)
>>> w.add("c", {"x": 3}, True, now=2.0), w.add("d", {"x": 4}, True, now=2.0)  # b is pushed out
(None, None)
>>> w.label("b", False, now=3.0), w.label("zz", True, now=3.0)
(None, None)
>>> w.add("zz", {"x": 5}, True, now=4.0)  # the early label was waiting for it
True
>>> w.label("zz", False, now=5.0)  # a second label for zz: the first won
>>> w.counts()
{'received': 4, 'matched': 2, 'expired': 1, 'unmatched': 1, 'waiting': 0, 'pending': 2}
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from stream_learner.events import DEFAULT_KEY, MAX_RECORD_BYTES, DelayedLabel, Origin, _describe, dead_letter, load_object, refusal, too_long_field
from stream_learner.records import DeadLetterDict, DelayedLabelCountsDict
from stream_learner.state import expect_version


@dataclass(slots=True, frozen=True)
class RawLabel:
    """A label message's raw bytes (``None``: a tombstone), where it came from and its message key."""

    value: bytes | None
    origin: Origin
    message_key: str | None = None


@dataclass(slots=True, frozen=True)
class LabelRecord:
    """A validated delayed label, addressed to a model key."""

    id: str
    key: str
    label: Any


def decode_label(raw: RawLabel, max_bytes: int = MAX_RECORD_BYTES) -> LabelRecord | DeadLetterDict:
    """Decode one label message; never raises (a dead letter says what is wrong).

    >>> decode_label(RawLabel(b'{"id": "e1", "label": 1}', Origin("labels", 0, 3), "k7"))
    LabelRecord(id='e1', key='k7', label=1)
    >>> decode_label(RawLabel(b'{"label": 1}', Origin("labels", 0, 4)))["error"]
    'invalid label: id: Field required'
    >>> decode_label(RawLabel(None, Origin("labels", 0, 5)))["reason"]
    'tombstone'
    """
    value = raw.value
    document = load_object(value, max_bytes)
    if value is None or type(document) is not dict:
        return refusal(value, raw.origin, max_bytes, "label")
    key = document.pop("key", None)
    if key is not None and (not isinstance(key, str) or not key):
        return dead_letter("invalid_label", f"invalid label: key must be a non-empty string, not {key!r}", value, raw.origin)
    try:
        parsed = DelayedLabel.model_validate(document)
    except ValidationError as exc:
        return dead_letter("invalid_label", _describe(exc).replace("invalid event", "invalid label", 1), value, raw.origin)
    if parsed.label is None:
        return dead_letter("invalid_label", "invalid label: label must not be null", value, raw.origin)
    record = LabelRecord(id=parsed.id, key=key or raw.message_key or DEFAULT_KEY, label=parsed.label)
    too_long = too_long_field(record.id, record.key, record.label)
    if too_long is not None:
        return dead_letter(too_long[0], f"invalid label: {too_long[1]}", value, raw.origin)
    return record


class PendingWindow:
    """The bounded join of one model key.

    Every label received is counted exactly once, as ``matched``,
    ``expired``, ``unmatched`` or (until one of those) ``waiting``. The first
    label of an id wins: a later one for the same id, while the first
    waits or after it was matched, is ``unmatched`` (as long as the id is
    among the last ``max_size`` matched ones).
    """

    def __init__(self, max_size: int, max_age: float) -> None:
        if max_size < 1 or max_age <= 0:
            raise ValueError("the pending window needs max_size >= 1 and max_age > 0")
        self.max_size = max_size
        self.max_age = max_age
        self.pending: OrderedDict[str, tuple[Any, Any, float]] = OrderedDict()
        self.early: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.gone: OrderedDict[str, None] = OrderedDict()  # ids that expired, to tell expired from unmatched labels
        self.labelled: OrderedDict[str, None] = OrderedDict()  # ids matched, to tell a duplicate label from an early one
        self.received = 0
        self.matched = 0
        self.expired = 0
        self.unmatched = 0

    def state_dict(self) -> dict[str, Any]:
        """The pending predictions, waiting labels, remembered ids and counts, oldest first, as plain values."""
        return {
            "version": 1,
            "max_size": self.max_size,
            "max_age": self.max_age,
            "pending": [[event_id, x, y_pred, at] for event_id, (x, y_pred, at) in self.pending.items()],
            "early": [[event_id, label, at] for event_id, (label, at) in self.early.items()],
            "gone": list(self.gone),
            "labelled": list(self.labelled),
            "received": self.received,
            "matched": self.matched,
            "expired": self.expired,
            "unmatched": self.unmatched,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PendingWindow:
        """The window :meth:`state_dict` describes."""
        expect_version(state, "the delayed-label window", 1)
        window = cls(state["max_size"], state["max_age"])
        window.pending.update((event_id, (x, y_pred, at)) for event_id, x, y_pred, at in state["pending"])
        window.early.update((event_id, (label, at)) for event_id, label, at in state["early"])
        window.gone.update(dict.fromkeys(state["gone"]))
        window.labelled.update(dict.fromkeys(state["labelled"]))
        window.received, window.matched = state["received"], state["matched"]
        window.expired, window.unmatched = state["expired"], state["unmatched"]
        return window

    def add(self, event_id: str, x: Any, y_pred: Any, now: float) -> Any:
        """An unlabelled prediction: returns the label if it already arrived, else keeps it pending."""
        early = self.early.pop(event_id, None)
        if early is not None:
            self.matched += 1
            self._remember(self.labelled, event_id)
            return early[0]
        self._keep(event_id, x, y_pred, now)
        return None

    def refuse(self, event_id: str, x: Any, y_pred: Any, now: float) -> None:
        """The label :meth:`add` just returned is refused (a dead letter says why): it is not counted, and the prediction waits for another.

        As a label refused before it reached the window (``received`` counts the labels the window took).
        """
        self.received -= 1
        self.matched -= 1
        self.labelled.pop(event_id, None)
        self._keep(event_id, x, y_pred, now)

    def _keep(self, event_id: str, x: Any, y_pred: Any, now: float) -> None:
        self.pending[event_id] = (x, y_pred, now)
        self.pending.move_to_end(event_id)
        if len(self.pending) > self.max_size:
            self._remember(self.gone, self.pending.popitem(last=False)[0])

    def label(self, event_id: str, label: Any, now: float) -> tuple[Any, Any] | None:
        """A label arrived: ``(x, y_pred)`` of its pending prediction, or ``None`` (expired, duplicate or waiting)."""
        self.received += 1
        found = self.pending.pop(event_id, None)
        if found is not None:
            self.matched += 1
            self._remember(self.labelled, event_id)
            return found[0], found[1]
        if event_id in self.gone:
            self.expired += 1
            return None
        if event_id in self.early or event_id in self.labelled:  # the first label of an id wins
            self.unmatched += 1
            return None
        self.early[event_id] = (label, now)
        if len(self.early) > self.max_size:
            self.early.popitem(last=False)
            self.unmatched += 1
        return None

    def expire(self, now: float) -> None:
        """Drop predictions and waiting labels older than ``max_age``."""
        horizon = now - self.max_age
        pending, early = self.pending, self.early
        while pending and next(iter(pending.values()))[2] < horizon:
            self._remember(self.gone, pending.popitem(last=False)[0])
        while early and next(iter(early.values()))[1] < horizon:
            early.popitem(last=False)
            self.unmatched += 1

    def close(self) -> None:
        """The stream ended: labels still waiting for their event are unmatched."""
        self.unmatched += len(self.early)
        self.early.clear()

    def counts(self) -> DelayedLabelCountsDict:
        """``received``, ``matched``, ``expired``, ``unmatched``, ``waiting`` labels and ``pending`` predictions."""
        return {
            "received": self.received,
            "matched": self.matched,
            "expired": self.expired,
            "unmatched": self.unmatched,
            "waiting": len(self.early),
            "pending": len(self.pending),
        }

    def _remember(self, ids: OrderedDict[str, None], event_id: str) -> None:
        """Keep ``event_id`` among the last ``max_size`` of ``ids``."""
        ids[event_id] = None
        ids.move_to_end(event_id)
        if len(ids) > self.max_size:
            ids.popitem(last=False)
