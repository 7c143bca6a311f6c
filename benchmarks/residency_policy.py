"""Eviction policy (#17): how many restores and evictions a bound on resident keys costs, by policy and stream.

    .venv/bin/python -m benchmarks.residency_policy [--events 500000] [--keys 100000] [--resident 10000]

Replays the key order of :mod:`benchmarks.eviction`'s streams (hot, zipf,
cycle) through the run's own :class:`~stream_learner.residency.ResidentSet`,
one batch of ``--batch`` events at a time as the dataflow sees them: once
per batch a key appears in, in the order of their names (Bytewax keeps a
worker's keys in a sorted map), with a store that only counts. No learner
runs: the figures are the policy's alone. Each stream once with plain
least-recently-used and once with the run's policy (a key used no more
often than the next to leave goes before it). A restore is a key's
admission after it was evicted; a key never seen builds a new learner.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.eviction import stream
from connectors.base import DEFAULT_BATCH_SIZE
from stream_learner.residency import ResidentSet
from stream_learner.snapshot import Snapshot


class _Holder:
    """A key's holder in the dataflow's place: its learner is in memory until it is evicted."""

    def __init__(self, key: str) -> None:
        self.key, self.pinned, self.resident = key, False, True

    def leaving(self) -> Snapshot:
        return Snapshot(self.key, "river", "none", 0, {}, b"")

    def left(self, version: int) -> None:
        self.resident = False


def replay(keys_in_order: list[int], limit: int, batch: int, by_frequency: bool) -> dict[str, int]:
    """Restores, new keys and evictions of ``keys_in_order`` under a bound of ``limit``."""
    evictions = 0

    def write(snapshots: list[Snapshot]) -> list[int]:
        nonlocal evictions
        evictions += len(snapshots)
        return [1] * len(snapshots)

    resident = ResidentSet(limit, write, by_frequency=by_frequency)  # evicting in the run's rounds
    holders: dict[str, _Holder] = {}
    restores = 0
    for start in range(0, len(keys_in_order), batch):
        for key in sorted({f"k{number}" for number in keys_in_order[start : start + batch]}):
            holder = holders.get(key)
            if holder is not None and holder.resident:
                resident.touch(key)
                continue
            restores += holder is not None
            holders[key] = _Holder(key)
            resident.admit(key, holders[key])
    return {"restores": restores, "new_keys": len(holders), "evictions": evictions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--resident", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_SIZE, help="events a source batch (default: the embedded sources')")
    parser.add_argument("--patterns", default="hot,zipf,cycle")
    args = parser.parse_args()
    rows = []
    for pattern in args.patterns.split(","):
        keys_in_order = [key for key, _, _ in stream(args.events, args.keys, pattern)]
        plain = replay(keys_in_order, args.resident, args.batch, by_frequency=False)
        for policy, figures in (("least recently used", plain), ("by frequency", replay(keys_in_order, args.resident, args.batch, by_frequency=True))):
            row = {"pattern": pattern, "policy": policy, **figures, "restores_ratio": round(figures["restores"] / plain["restores"], 3) if plain["restores"] else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"events": args.events, "keys": args.keys, "resident": args.resident, "batch": args.batch, "runs": rows}))


if __name__ == "__main__":
    main()
