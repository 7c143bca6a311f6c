"""The Kafka service with a bound on resident keys, SIGKILLing itself at one eviction round (for test_eviction_crash.py).

``python evicting_service.py SETTINGS_JSON MAX_RESIDENT [before|after N [SECONDS]]``:
settings overrides as JSON, the bound, and where to die: at the first
eviction round from the N-th on that comes at least SECONDS (0.2) after
the first one (a few epochs committed: the restart resumes mid-stream), just before
its write (``before``: the learner is still only in memory),
or just after it (``after``: written to Redis, not yet dropped, the recovery
state not yet told). Prints the run's summary as JSON when it ends.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Sequence

from stream_learner.app.kafka_run import run_kafka
from stream_learner.engine import EngineConfig
from stream_learner.learners.base import LearnerSpec
from stream_learner.residency import EvictingStore
from stream_learner.settings import load_settings
from stream_learner.snapshot import Snapshot

ENGINE = EngineConfig(learner=LearnerSpec("logreg"), metrics_every=50)
PACE_S = 0.05
"""Each eviction round before the one that dies takes this much longer. On a quiet machine a whole stream's rounds came within
0.2 s of the first, before the first epoch was committed (an epoch waits for the producer child, which starts with the run):
the run ended without dying, or died with nothing committed. Epochs go on closing between rounds."""


def die_at(point: str, n: int, after_s: float = 0.2) -> None:
    """SIGKILL this process around an eviction round: the first from the ``n``-th on, ``after_s`` after the first round."""
    evict = EvictingStore.evict
    count = 0
    first: float | None = None

    def evict_or_die(self: EvictingStore, snapshots: Sequence[Snapshot]) -> list[int]:
        nonlocal count, first
        count += 1
        first = first or time.monotonic()
        due = count >= n and time.monotonic() - first >= after_s
        if not due:
            time.sleep(PACE_S)
        if point == "before" and due:
            os.kill(os.getpid(), signal.SIGKILL)
        versions = evict(self, snapshots)
        if point == "after" and due:
            os.kill(os.getpid(), signal.SIGKILL)
        return versions

    EvictingStore.evict = evict_or_die  # type: ignore[method-assign]


if __name__ == "__main__":
    overrides, resident = json.loads(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 3:
        die_at(sys.argv[3], int(sys.argv[4]), *(float(a) for a in sys.argv[5:6]))
    summary = run_kafka(load_settings(overrides=overrides, environ={}), ENGINE, handle_signals=False, max_resident_keys=resident)
    print(json.dumps(summary, default=str))
