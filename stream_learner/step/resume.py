"""Which events a model key has already learned, so that a restored learner skips them.

A source re-reads from an earlier offset after a crash or a restart; the
learner remembers, per source partition, the offset after the last event it
took, and takes each event once.

>>> resume = ResumeFilter()
>>> [resume.admit(0, offset) for offset in (0, 1, 1, 0, 2)]
[True, True, False, False, True]
>>> resume.admit_batch(0, 1, 5)  # offsets 1 to 4: 1 and 2 taken already
(3, 2)
>>> ResumeFilter.from_state(resume.state_dict()).next_offsets
{0: 5}
"""

from __future__ import annotations

from typing import Any

VERSION = 1


class ResumeFilter:
    """``next_offsets[partition]``: the offset after the last event taken from that partition."""

    def __init__(self, next_offsets: dict[int, int] | None = None) -> None:
        self.next_offsets: dict[int, int] = dict(next_offsets or {})

    def admit(self, partition: int, offset: int) -> bool:
        """Whether the event at ``offset`` is new; a new one counts as taken."""
        if offset < self.next_offsets.get(partition, 0):
            return False
        self.next_offsets[partition] = offset + 1
        return True

    def admit_batch(self, partition: int, first: int, end: int) -> tuple[int, int]:
        """Offsets ``first`` to ``end - 1`` arrive together: the first new one, and how many are new (taken from here on)."""
        start = self.next_offsets.get(partition, 0)
        self.next_offsets[partition] = max(start, end)
        return start, max(0, end - max(start, first))

    def state_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "next_offsets": [[partition, offset] for partition, offset in self.next_offsets.items()]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ResumeFilter:
        return cls({int(partition): int(offset) for partition, offset in state["next_offsets"]})
