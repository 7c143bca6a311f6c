"""The garbage collector, tuned for a stream.

Per-event objects (events, feature dicts, prediction records) are acyclic
and die by reference counting; with Python's default gen-0 threshold (700)
a batch in flight still gets scanned several times, survivors climb the
generations, and every full collection walks the whole heap: the model,
the restored state, the modules. Measured on the embedded logreg run:
about 1.5 us of collector time per event, 7% of the run.

The gen-0 count is allocations minus deallocations, so objects that die
within their batch never reach a threshold above what one batch holds at
once; the count then grows only with what stays (new keys' learners, the
examples a key's undo journal keeps until its next snapshot), and a
collection scans little of a batch. Below that, a fleet (a group, and its
records, per key in a batch) is collected several times a batch, each time
over the batch in flight, which it also promotes to the older generations.

>>> import gc
>>> before = gc.get_threshold()
>>> with streaming_gc():
...     gc.get_threshold()[0] == GEN0_THRESHOLD
True
>>> gc.get_threshold() == before
True
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

from connectors.base import DEFAULT_BATCH_SIZE

OBJECTS_PER_RECORD = 50
"""Room in gen 0 for each record of a full source batch: above what a batch keeps alive at once, so that it is not collected mid-batch.

A full batch over 10,000 keys holds about 13 collector-tracked objects a
record at once (a group, a read, outputs per key); 50 leaves room
for heavier steps (challengers). Measured, with the collector's time and
CPU per event at 1, 1,000 and 10,000 keys, in benchmarks/README.md,
"Fleets: many keys against one" (the collector's threshold).
"""

GEN0_THRESHOLD = OBJECTS_PER_RECORD * DEFAULT_BATCH_SIZE


@contextmanager
def streaming_gc(gen0_threshold: int = GEN0_THRESHOLD) -> Iterator[None]:
    """Freeze what exists now (out of every later collection) and collect the young generation only past ``gen0_threshold`` net allocations."""
    thresholds = gc.get_threshold()
    gc.freeze()  # no collection first: one full pass over a large heap costs more than the garbage it frees
    gc.set_threshold(gen0_threshold, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
