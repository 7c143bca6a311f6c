"""Dead letters said out loud: their reasons counted, a run made mostly of them warned about, and failed on request.

>>> tally = DeadLetterTally()
>>> tally.add([{"reason": "model_error", "error": "model error: ValueError: 'dog'"}] * 3 + [{"reason": "not_json", "error": "not JSON"}])
>>> summary = {"events": 5, "dead_letters": 4, "dead_letter_reasons": tally.reasons(), "dead_letters_to": "out/dead_letters.jsonl"}
>>> print(dead_letter_warning(summary))
warning: 4 of 5 events (80%) ended as dead letters, not predictions: model_error 3 (e.g. model error: ValueError: 'dog'), not_json 1 (e.g. not JSON); see out/dead_letters.jsonl
>>> ratio_exceeded(summary, 0.5)
'80% of the events ended as dead letters, more than --max-dead-letter-ratio 0.5'
>>> ratio_exceeded(summary, 0.9) is None
True
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

EXIT_DEAD_LETTERS = 1
"""The exit status of a run whose dead letters exceeded ``--max-dead-letter-ratio`` (2 is a usage error)."""

MOSTLY = 0.5
"""A run whose dead letters are more than this fraction of its events gets a warning line, asked or not."""

TOP_REASONS = 3


class DeadLetterTally(DynamicSink[tuple[str, list[dict[str, Any]]]]):
    """A dead-letter sink that counts records by ``reason`` and keeps each reason's first error (thread-safe: workers share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._examples: dict[str, str] = {}

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for record in records:
                reason = str(record.get("reason", "unknown"))
                self._counts[reason] += 1
                self._examples.setdefault(reason, str(record.get("error", "")))

    def reasons(self) -> dict[str, dict[str, Any]]:
        """``{reason: {"count": n, "example": first error}}``, the most frequent first."""
        with self._lock:
            return {reason: {"count": n, "example": self._examples[reason]} for reason, n in self._counts.most_common()}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TallyPartition:
        return _TallyPartition(self)


class _TallyPartition(StatelessSinkPartition[tuple[str, list[dict[str, Any]]]]):
    def __init__(self, tally: DeadLetterTally) -> None:
        self._tally = tally

    def write_batch(self, items: list[tuple[str, list[dict[str, Any]]]]) -> None:
        for _, records in items:
            self._tally.add(records)


def _ratio(summary: dict[str, Any]) -> float:
    return summary["dead_letters"] / summary["events"] if summary["events"] else 0.0


def dead_letter_warning(summary: dict[str, Any]) -> str | None:
    """One warning line when most events ended as dead letters, naming the top reasons with an example each; else ``None``."""
    if _ratio(summary) <= MOSTLY:
        return None
    reasons = list(summary.get("dead_letter_reasons", {}).items())[:TOP_REASONS]
    named = ", ".join(f"{reason} {r['count']:,} (e.g. {r['example']:.160})" for reason, r in reasons)
    return (
        f"warning: {summary['dead_letters']:,} of {summary['events']:,} events ({_ratio(summary):.0%}) ended as dead letters, not predictions: "
        f"{named or 'reasons not counted'}; see {summary.get('dead_letters_to', 'the dead letters')}"
    )


def ratio_exceeded(summary: dict[str, Any], limit: float | None) -> str | None:
    """Why the run fails under ``--max-dead-letter-ratio limit``, or ``None``."""
    if limit is None or _ratio(summary) <= limit:
        return None
    return f"{_ratio(summary):.0%} of the events ended as dead letters, more than --max-dead-letter-ratio {limit:g}"
