"""The predictions' JSONL writer in a child process against the inline writer, back to back in one run.

    .venv/bin/python benchmarks/jsonl_writer.py [--events 100000] [--repeat 3] [--model logreg]

Runs the embedded service (the real dataflow, predictions to a JSONL file)
over the same SEA stream with each writer in turn, ``--repeat`` pairs, and
prints per writer: events/s (the best run), CPU time per event of this
process and of its children (the writer process), and the median of the
pairs' ratios child / inline: above 1, the child earns its place.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import connectors.files  # noqa: E402 - after the path above
from connectors.jsonl_writer import InlineJsonlWriter, JsonlWriter  # noqa: E402
from stream_learner.app.runner import RunOptions, run  # noqa: E402
from stream_learner.engine import EngineConfig  # noqa: E402
from stream_learner.learners.base import LearnerSpec  # noqa: E402

WRITERS = {"child": JsonlWriter, "inline": InlineJsonlWriter}


def cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def one_run(writer: str, events: int, model: str, out: Path) -> dict[str, float]:
    """One embedded run whose predictions file is written by ``writer``: its events/s and CPU per event."""
    connectors.files.JsonlWriter = WRITERS[writer]  # the sink's process=True writer, as the embedded run builds it
    try:
        own, children = cpu()
        source = f"synthetic:sea?every={max(1, events // 4)}&concepts=4"  # four concepts of events // 4: the stream's length
        summary = run(RunOptions(source=source, engine=EngineConfig(learner=LearnerSpec(model)), out=out, max_events=events, progress=False, console=False))
        time.sleep(0.3)  # the writer process exits and is reaped (close() leaves that to a thread): its CPU counts
        own_after, children_after = cpu()
    finally:
        connectors.files.JsonlWriter = JsonlWriter
    if summary["predictions"] != events:
        raise SystemExit(f"the {writer} run predicted {summary['predictions']} of {events} events")
    return {
        "events_per_second": events / summary["seconds"],
        "cpu_us_per_event": (own_after - own) / events * 1e6,
        "children_cpu_us_per_event": (children_after - children) / events * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="logreg")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sl-jsonl-bench-"))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in WRITERS}
    one_run("inline", min(args.events, 5000), args.model, work / "warm-up")  # a process's first run pays its imports and first calls
    for i in range(args.repeat):
        for name in WRITERS:  # back to back: each pair meets the same machine state
            runs[name].append(one_run(name, args.events, args.model, work / f"{name}-{i}"))
    ratios = [c["events_per_second"] / n["events_per_second"] for c, n in zip(runs["child"], runs["inline"])]
    figures = {
        "events": args.events,
        "model": args.model,
        **{
            name: {
                "events_per_second": round(max(r["events_per_second"] for r in results)),
                "cpu_us_per_event": round(statistics.median(r["cpu_us_per_event"] for r in results), 2),
                "children_cpu_us_per_event": round(statistics.median(r["children_cpu_us_per_event"] for r in results), 2),
            }
            for name, results in runs.items()
        },
        "ratio_child_to_inline_median": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
