"""Eviction (#17): what ``--max-resident-keys`` costs, by how the stream reuses its keys.

    .venv/bin/python benchmarks/eviction.py [--events 200000] [--keys 10000] [--resident 2000] [--model logreg]

Streams of ``--events`` labelled events over ``--keys`` keys
(``--patterns``, by default hot and cycle), each run by the CLI in a child
process (file source) without a bound and with ``--max-resident-keys
--resident``:

* ``hot``: 90% of the events go to the hottest 10% of the keys (a fixed hot
  set), the rest spread over the cold keys: a fleet of devices of which a
  few are busy. A bound above the hot set evicts mostly cold keys.
* ``zipf``: a key's share of the events falls as one over its popularity
  rank (Zipf's law, s = 1): a few keys are very busy, most are rare.
* ``cycle``: the keys in turn (``k0, k1, ...``), the worst case of any
  policy that bounds memory: with fewer resident keys than keys, every
  event of a key finds it evicted, so every event pays a restore and an
  eviction.

Per run: events/s, the ratio to the unbounded run of the same stream, peak
RSS (``wait4`` of that child), evictions and restores (count, mean ms).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from bisect import bisect
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

from benchmarks.fleet import run_cli


def stream(events: int, keys: int, pattern: str, seed: int = 5) -> Iterator[tuple[int, float, float]]:
    """``events`` events ``(key, a, b)`` over ``keys`` keys, in the order ``pattern`` says (``hot``, ``zipf`` or ``cycle``)."""
    rng = random.Random(seed)
    hot = max(1, keys // 10)
    popularity = list(accumulate(1.0 / rank for rank in range(1, keys + 1))) if pattern == "zipf" else []
    ranks = random.Random(seed + 1).sample(range(keys), keys)  # which key has which rank: not ordered by number
    for i in range(events):
        if pattern == "cycle":
            key = i % keys
        elif pattern == "zipf":
            key = ranks[bisect(popularity, rng.random() * popularity[-1])]
        else:
            key = rng.randrange(hot) if rng.random() < 0.9 else rng.randrange(hot, keys)
        yield key, rng.random(), rng.random()


def write_events(path: Path, events: int, keys: int, pattern: str, seed: int = 5) -> None:
    """``events`` labelled events of two features over ``keys`` keys, in the order ``pattern`` says (see :func:`stream`)."""
    with path.open("w") as out:
        for key, a, b in stream(events, keys, pattern, seed):
            out.write(f'{{"key":"k{key}","features":{{"a":{a!r},"b":{b!r}}},"label":{"true" if a + b > 1.0 else "false"}}}\n')


def mean_ms(figures: dict[str, Any] | None) -> float | None:
    if not figures or not figures.get("count"):
        return None
    return round(figures["seconds"] / figures["count"] * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--resident", type=int, default=2_000, help="the bound of the bounded runs (--max-resident-keys)")
    parser.add_argument("--model", default="logreg")
    parser.add_argument("--patterns", default="hot,cycle")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sl-eviction-") as work:
        for pattern in args.patterns.split(","):
            path = Path(work) / f"{pattern}.jsonl"
            write_events(path, args.events, args.keys, pattern)
            free: float | None = None
            for bound in (0, args.resident):
                out = Path(work) / f"{pattern}-{bound}"
                summary, wall, cpu, rss = run_cli(["--source", f"file:{path}", "--model", args.model, "--out", str(out), "--max-resident-keys", str(bound), "--max-keys", str(args.keys)])
                rate = summary["events"] / summary["seconds"]
                free = free or rate
                row = {
                    "pattern": pattern, "keys": args.keys, "max_resident_keys": bound or None, "events": summary["events"],
                    "events_per_s": round(rate), "ratio": round(rate / free, 3), "cpu_us_per_event": round(cpu / summary["events"] * 1e6, 1),
                    "peak_rss_mb": round(rss / 1024, 1), "evictions": (summary.get("evictions") or {}).get("count", 0),
                    "eviction_ms": mean_ms(summary.get("evictions")), "restores": (summary.get("restores") or {}).get("count", 0),
                    "restore_ms": mean_ms(summary.get("restores")), "resident_keys_max": summary.get("resident_keys_max"),
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(json.dumps({"model": args.model, "runs": rows}))


if __name__ == "__main__":
    main()
