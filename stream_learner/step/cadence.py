"""When the learner step reports: metrics, concept evaluations and snapshots.

* metrics every ``metrics_every`` labelled events since the last metrics
  record (a boundary and the end of the stream publish one too);
* an evaluation of every concept's sample every ``forgetting_every``
  labelled events (0: only at boundaries and at the end);
* a snapshot once events came in and either ``snapshot_every`` of them did
  (0: not by count) or ``snapshot_seconds`` passed since the last one (0:
  not by time). Time, not throughput, sets the default: a snapshot costs the
  same at any rate.

>>> cadence = Cadence(metrics_every=2, forgetting_every=3, snapshot_every=4, snapshot_seconds=0.0)
>>> [cadence.labelled() for _ in range(3)], cadence.evaluation_due(3)
([False, True, True], True)
>>> cadence.counted(3); cadence.snapshot_due(now=0.0)
False
>>> cadence.counted(1); cadence.snapshot_due(now=0.0)
True
"""

from __future__ import annotations

import time
from typing import Any

from stream_learner.state import cadence_state

VERSION = 1


class Cadence:
    """The counts since the last report of each kind, and the settings that make one due."""

    def __init__(self, metrics_every: int, forgetting_every: int, snapshot_every: int, snapshot_seconds: float) -> None:
        self.metrics_every = metrics_every
        self.forgetting_every = forgetting_every
        self.snapshot_every = snapshot_every
        self.snapshot_seconds = snapshot_seconds
        self.since_metrics = 0  # labelled events
        self.since_snapshot = 0  # events
        self.snapshot_at = time.time()
        self.finished = False  # the stream ended here, and nothing came since (the learner step sets and clears it)

    def labelled(self) -> bool:
        """One more labelled event; whether a metrics record is due."""
        self.since_metrics += 1
        return self.since_metrics >= self.metrics_every

    def metrics_published(self) -> None:
        self.since_metrics = 0

    def evaluation_due(self, learned: int) -> bool:
        """Whether the concepts' samples are due for evaluation, ``learned`` labelled events in."""
        every = self.forgetting_every
        return bool(every) and learned % every == 0

    def counted(self, events: int) -> None:
        """``events`` more events taken."""
        self.since_snapshot += events

    def snapshot_due(self, now: float) -> bool:
        """Whether a snapshot is due at ``now``; one due counts as taken then (:meth:`snapshot_taken` restarts the count)."""
        since, every, seconds = self.since_snapshot, self.snapshot_every, self.snapshot_seconds
        if since and ((every and since >= every) or (seconds and now - self.snapshot_at >= seconds)):
            self.snapshot_at = now
            return True
        return False

    def snapshot_taken(self) -> None:
        self.since_snapshot = 0

    def state_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "since_metrics": self.since_metrics, "since_snapshot": self.since_snapshot, "snapshot_at": self.snapshot_at, "finished": self.finished}

    @classmethod
    def from_state(cls, state: dict[str, Any], metrics_every: int, forgetting_every: int, snapshot_every: int, snapshot_seconds: float) -> Cadence:
        """The counts of ``state`` (of any layout :func:`~stream_learner.state.cadence_state` reads) under this run's settings."""
        state = cadence_state(state)
        cadence = cls(metrics_every, forgetting_every, snapshot_every, snapshot_seconds)
        cadence.since_metrics, cadence.since_snapshot, cadence.snapshot_at = state["since_metrics"], state["since_snapshot"], state["snapshot_at"]
        cadence.finished = state["finished"]
        return cadence
