"""The dead letters the learner step makes: events the schema or the model refused, labels nothing can join.

Each carries the event's raw bytes where the source kept them, else the
event rebuilt as JSON, and its origin in the source (partition and offset;
-1 for a delayed label, which has none of its own).

>>> from stream_learner.events import Event
>>> letters = DeadLetters("in")
>>> letter = letters.model_error(Event("e1", "k", {"x": 1.0}, True, None, 0, 7), ValueError("no"), now=0.0)
>>> letter["reason"], letter["error"], letter["origin"]["offset"], letter["raw"]
('model_error', 'model error: ValueError: no', 7, '{"id":"e1","key":"k","features":{"x":1.0},"label":true,"task":null}')
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from stream_learner.delayed import LabelRecord
from stream_learner.events import DeadLetterReason, Event, Origin, dead_letter
from stream_learner.records import DeadLetterDict


@dataclass(frozen=True)
class DeadLetters:
    """Dead letters of events from ``source`` (the name their origin carries)."""

    source: str

    def schema(self, event: Event, problem: str, now: float) -> DeadLetterDict:
        """``event`` contradicts its key's schema (``problem`` says how)."""
        return self._of(event, "schema", f"schema: {problem}", now)

    def model_error(self, event: Event, exc: Exception, now: float, unlearned: int = 0) -> DeadLetterDict:
        """The model raised ``exc`` on ``event``; ``unlearned`` earlier examples of its micro-batch were dropped with it."""
        dropped = f" (with its micro-batch's {unlearned} earlier examples, not learned)" if unlearned else ""
        return self._of(event, "model_error", f"model error: {type(exc).__name__}: {exc}{dropped}", now)

    def unjoinable_label(self, record: LabelRecord, now: float) -> DeadLetterDict:
        """A delayed label, but this run joins none (no label window)."""
        return self._of_label(record, "unjoinable_label", "delayed label, but this run joins none (no label window)", now)

    def too_many_keys(self, item: Event | LabelRecord, limit: int, now: float) -> DeadLetterDict:
        """``item`` is of a new model key, but its worker holds ``limit`` keys already (``--max-keys``)."""
        error = f"model key {item.key!r} would be a worker's key {limit + 1:,}, over the limit of {limit:,} (--max-keys)"
        return self._of(item, "too_many_keys", error, now) if isinstance(item, Event) else self._of_label(item, "too_many_keys", error, now)

    def _of_label(self, record: LabelRecord, reason: DeadLetterReason, error: str, now: float) -> DeadLetterDict:
        raw = orjson.dumps({"id": record.id, "key": record.key, "label": record.label}).decode()
        return dead_letter(reason, error, raw, Origin(self.source, -1, -1), now)

    def _of(self, event: Event, reason: DeadLetterReason, error: str, now: float) -> DeadLetterDict:
        raw = event.raw
        if raw is None:
            rebuilt = {"id": event.id, "key": event.key, "features": event.features, "label": event.label, "task": event.task}
            raw = orjson.dumps(rebuilt, option=orjson.OPT_NON_STR_KEYS, default=str)
        return dead_letter(reason, error, raw, Origin(self.source, event.partition, event.offset), now)
