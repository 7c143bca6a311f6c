"""Recurring concepts: accuracy and recovery after each return, with and without concept reuse.

Seeded streams that alternate two concepts, A, B, A, B, ... (``--segments``
segments of ``--segment`` events), each built from one of river's
generators with its labelling function switched:

- ``sea``: SEA, variants 2 and 3 (thresholds 7 and 9.5 on ``x0 + x1``);
- ``agrawal``: Agrawal, classification functions 0 and 2;
- ``stagger``: STAGGER, classification functions 0 and 1.

Each stream runs through the engine's per-key learner step
(:class:`~stream_learner.engine.KeyedLearner`, ADWIN on the errors marks
the boundaries), once without and once with concept reuse (the library
of earlier concepts' models, :mod:`stream_learner.step.recurring`, at its
defaults), for a few models. Every segment from the third on is a
*return* to a concept seen before. Per return:

- ``acc@N``: accuracy over its first ``--first`` events;
- ``recovery``: events after the return until the accuracy over the last
  ``--recovery-window`` events (all after the return) is back within
  ``--within`` of the accuracy over the ``--level`` events before the
  return; a return that never recovers within its segment counts as the
  segment's length.

``reused`` is how many returns brought a stored model back (a drift
record with detector ``recurring``) within their first ``--first``
events, ``elsewhere`` how many stored models came back at other times
(after a drift inside a segment, say: a false alarm whose strategy reset
the model). Then events/s of the whole run (by CPU time: the machine's
other work does not count) and the share of the time spent in the library and
its trials (copying states, rebuilding stored models, their shadow
predictions), measured in a second, timed, run of the same events (the
timing slows a run); the table ends with the ratio of events/s with reuse to
without, per model: it also counts that a reinstated model costs what it
costs to learn (an older, larger tree learns more slowly than a young one).

Run: ``.venv/bin/python benchmarks/recurring.py`` (a few minutes;
``--seeds 1 --segments 4`` for a quick look).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from river.datasets import synth

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.step.recurring import ConceptReuse

Generator = Callable[[int, int], Iterator[tuple[dict[Any, Any], Any]]]

STREAMS: dict[str, tuple[Generator, Generator]] = {
    "sea": (lambda seed, _: iter(synth.SEA(variant=2, seed=seed)), lambda seed, _: iter(synth.SEA(variant=3, seed=seed))),
    "agrawal": (lambda seed, _: iter(synth.Agrawal(classification_function=0, seed=seed)), lambda seed, _: iter(synth.Agrawal(classification_function=2, seed=seed))),
    "stagger": (lambda seed, _: iter(synth.STAGGER(classification_function=0, seed=seed)), lambda seed, _: iter(synth.STAGGER(classification_function=1, seed=seed))),
}
"""Each stream's concepts A and B: a generator of ``(x, y)`` per seed (the second argument, the segment, gives each segment its own draw)."""

MODELS = {
    "logreg": LearnerSpec("logreg"),
    "hoeffding_tree": LearnerSpec("hoeffding_tree"),
    "hoeffding_tree+reset": LearnerSpec("hoeffding_tree", strategy="reset"),
}
BATCH = 500


@dataclass
class Options:
    segment: int
    segments: int
    first: int
    recovery_window: int
    within: float
    level: int


def stream(name: str, seed: int, options: Options) -> list[Event]:
    """``options.segments`` segments alternating the stream's concepts A and B, each a fresh seeded draw."""
    events: list[Event] = []
    for s in range(options.segments):
        make = STREAMS[name][s % 2]
        for x, y in islice(make(seed * 1000 + s, s), options.segment):
            k = len(events)
            events.append(Event(str(k), "k", x, y, None, 0, k))
    return events


@dataclass
class Run:
    correct: list[bool]
    reinstated_at: list[int]
    seconds: float  # CPU time
    reuse_seconds: float  # of it, in the library and its trials


def run(spec: LearnerSpec, reuse: ConceptReuse | None, events: list[Event], timed: bool = False) -> Run:
    """One run of the learner step over ``events``; ``timed``: also the CPU time inside the library and its trials (the timing itself slows the run)."""
    step = KeyedLearner("k", EngineConfig(learner=spec, metrics_every=10**9, forgetting_every=0, snapshot_seconds=0.0, concept_reuse=reuse))
    clock = [0.0]
    if step.reuse is not None and timed:
        for name in ("learned", "leave", "enter", "score"):
            _timed(step.reuse, name, clock)
    correct: list[bool] = []
    reinstated: list[int] = []
    start = time.process_time()
    for at in range(0, len(events), BATCH):
        batch = events[at : at + BATCH]
        out = step.process(batch, now=0.0)
        correct.extend(row["prediction"] == event.label for row, event in zip(out.predictions, batch))
        reinstated.extend(r["at_event"] for r in out.metrics if r["type"] == "drift" and r["detector"] == "recurring")
    return Run(correct, reinstated, time.process_time() - start, clock[0])


def _timed(obj: Any, name: str, clock: list[float]) -> None:
    """Add the time ``obj.name(...)`` takes to ``clock[0]``."""
    method = getattr(obj, name)

    def timed(*args: Any) -> Any:
        start = time.process_time()
        try:
            return method(*args)
        finally:
            clock[0] += time.process_time() - start

    setattr(obj, name, timed)


def recovery(correct: list[bool], at: int, options: Options) -> int:
    """Events after the return at ``at`` until the window accuracy is back near its level before it (the segment's length if never)."""
    level = sum(correct[at - options.level : at]) / options.level
    w = options.recovery_window
    hits = sum(correct[at : at + w])
    for end in range(at + w, at + options.segment):
        if hits / w >= level - options.within:
            return end - at
        hits += correct[end] - correct[end - w]
    return options.segment


@dataclass
class Row:
    acc_first: list[float]
    recovery: list[int]
    accuracy: list[float]
    reused: int = 0
    elsewhere: int = 0
    returns: int = 0
    events: int = 0
    seconds: float = 0.0
    reuse_share: list[float] = field(default_factory=list)  # of a timed run's CPU time, in reuse


def measure(names: list[str], models: list[str], seeds: int, options: Options, reuse: ConceptReuse | None = None) -> dict[tuple[str, str, bool], Row]:
    """The table's rows: per stream, model and reuse off/on (``reuse``: its settings, the defaults if ``None``)."""
    reuse = reuse or ConceptReuse()
    rows: dict[tuple[str, str, bool], Row] = {}
    for name in names:
        for seed in range(seeds):
            events = stream(name, seed, options)
            returns = [s * options.segment for s in range(2, options.segments)]
            for model in models:
                for on in (False, True):
                    result = run(MODELS[model], reuse if on else None, events)
                    row = rows.setdefault((name, model, on), Row([], [], []))
                    row.accuracy.append(sum(result.correct) / len(result.correct))
                    for at in returns:
                        row.acc_first.append(sum(result.correct[at : at + options.first]) / options.first)
                        row.recovery.append(recovery(result.correct, at, options))
                    row.reused += sum(any(at < r <= at + options.first for r in result.reinstated_at) for at in returns)
                    row.elsewhere += sum(not any(at < r <= at + options.first for at in returns) for r in result.reinstated_at)
                    row.returns += len(returns)
                    row.events += len(events)
                    row.seconds += result.seconds
                    if on:  # the same run again (they are deterministic), timed inside: the timing would slow the first
                        timed = run(MODELS[model], reuse, events, timed=True)
                        row.reuse_share.append(timed.reuse_seconds / timed.seconds)
    return rows


def report(rows: dict[tuple[str, str, bool], Row], options: Options) -> str:
    head = f"| stream | model | reuse | accuracy | acc@{options.first} after a return | recovery (events, mean / median) | reused / returns | elsewhere | events/s | in reuse |"
    lines = [head, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (name, model, on), row in rows.items():
        lines.append(
            f"| {name} | {model} | {'on' if on else 'off'} | {statistics.fmean(row.accuracy):.3f} | {statistics.fmean(row.acc_first):.3f} "
            f"| {statistics.fmean(row.recovery):.0f} / {statistics.median(row.recovery):.0f} | {row.reused} / {row.returns} | {row.elsewhere} | {row.events / row.seconds:,.0f} | {statistics.fmean(row.reuse_share or [0.0]):.1%} |"
        )
    lines.append("")
    for model in dict.fromkeys(model for _, model, _ in rows):
        speed = {on: sum(r.events for (_, m, o), r in rows.items() if m == model and o == on) / sum(r.seconds for (_, m, o), r in rows.items() if m == model and o == on) for on in (False, True)}
        lines.append(f"{model}: events/s with reuse / without = {speed[True] / speed[False]:.2f} (the live model differs once a stored one is back)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--segment", type=int, default=2000, help="events per segment")
    parser.add_argument("--segments", type=int, default=8, help="segments, alternating A and B")
    parser.add_argument("--first", type=int, default=500, help="events after a return whose accuracy is reported")
    parser.add_argument("--recovery-window", type=int, default=50)
    parser.add_argument("--within", type=float, default=0.05)
    parser.add_argument("--level", type=int, default=500, help="events before a return that set the level to recover")
    parser.add_argument("--checkpoint-every", type=int, default=ConceptReuse.checkpoint_every, help="ConceptReuse.checkpoint_every")
    parser.add_argument("--looks", type=int, default=ConceptReuse.looks, help="ConceptReuse.looks")
    args = parser.parse_args()
    reuse = ConceptReuse(looks=args.looks, checkpoint_every=args.checkpoint_every)
    options = Options(args.segment, args.segments, args.first, args.recovery_window, args.within, args.level)
    rows = measure(args.streams, args.models, args.seeds, options, reuse)
    print(
        f"{args.seeds} seeds x {len(args.streams)} streams, {args.segments} segments of {args.segment:,} events (A, B, A, ...); "
        f"recovery: last {args.recovery_window} events within {args.within} of the {args.level} before the return; reuse at {reuse}"
    )
    print(report(rows, options))


if __name__ == "__main__":
    main()
