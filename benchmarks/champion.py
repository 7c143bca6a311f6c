"""Champion with challengers on a stream whose best model changes, and what shadow learners cost.

Accuracy: four phases of ``--phase`` events each, alternating two concepts
on the same five uniform features: river's ``Hyperplane`` (a linear rule: a
logistic regression learns it fastest) and river's ``RandomTree`` (a tree's
rule: a Hoeffding tree wins). Each phase draws fresh samples (and a fresh
tree), so every phase is a new concept. Printed, by published prediction
(prequential, every event labelled):

- each candidate alone (``logreg``, ``hoeffding_tree``);
- the champion (``logreg``) with the tree as challenger, promotion on
  evidence at the run's defaults (window 500, alpha 0.01, 1,000 labelled
  events as champion), ADWIN drift detection in every candidate as in a run;
- the oracle: per phase, whichever candidate alone was best on it.

Cost: events/s of the learner step (CPU time, best of ``--repeat``,
interleaved) with 1 (a plain learner step), 2 and 4 candidates per key
(``logreg``, ``hoeffding_tree``, ``naive_bayes``, ``hat``) on the same
events, each against one model (``logreg`` alone), and the slot's own
overhead: its time against the sum of its candidates' times alone.

Run: ``.venv/bin/python benchmarks/champion.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

from river.datasets import synth

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import EventBatch
from stream_learner.learners.base import LearnerSpec
from stream_learner.slot import Slot, new_step

CANDIDATES = ("logreg", "hoeffding_tree", "naive_bayes", "hat")
BATCH = 1000

Pair = tuple[dict[str, float], bool]


def phases(seed: int, length: int) -> list[list[Pair]]:
    """Linear, tree, linear, tree: each phase a new concept on the same five features."""
    out = []
    for phase in range(4):
        if phase % 2 == 0:
            generator: Any = synth.Hyperplane(seed=seed + phase, n_features=5, noise_percentage=0.05)
        else:
            generator = synth.RandomTree(seed_tree=seed + phase, seed_sample=seed + phase, n_classes=2, n_num_features=5, n_cat_features=0, max_tree_depth=5)
        out.append([({f"x{i}": v for i, v in enumerate(x.values())}, bool(y)) for x, y in generator.take(length)])
    return out


def published(step: Any, pairs: list[Pair]) -> list[bool]:
    """Whether each published prediction was right, the stream fed in batches as a source would."""
    right = []
    for start in range(0, len(pairs), BATCH):
        chunk = pairs[start : start + BATCH]
        out = step.process(EventBatch("bench", "k", 0, start, chunk), 0.0)
        labels = {f"bench:0:{start + i}": y for i, (_, y) in enumerate(chunk)}
        right.extend(row[1] == labels[row[0]] for row in out.predictions.rows)
    return right


def config(champion: str, *challengers: str) -> EngineConfig:
    return EngineConfig(learner=LearnerSpec(champion), challengers=tuple(LearnerSpec(c) for c in challengers), snapshot_seconds=0.0)


def mean(values: list[bool]) -> float:
    return sum(values) / len(values)


def accuracy(seed: int, length: int, **promotion: Any) -> tuple[dict[str, list[bool]], str]:
    """Whether each published prediction was right, per setting (each candidate alone, the slot, the oracle); and the champion at the end.

    ``promotion``: the slot's promotion settings (EngineConfig fields), the run's defaults otherwise.
    """
    pairs = [pair for phase in phases(seed, length) for pair in phase]
    alone = {name: published(KeyedLearner("k", config(name)), pairs) for name in CANDIDATES[:2]}
    slot = new_step("k", replace(config("logreg", "hoeffding_tree"), **promotion))
    rows = {f"{name} alone": right for name, right in alone.items()}
    rows["logreg + tree challenger"] = published(slot, pairs)
    best = [max((right[p * length : (p + 1) * length] for right in alone.values()), key=mean) for p in range(4)]
    rows["oracle (best per phase)"] = [r for phase in best for r in phase]
    assert isinstance(slot, Slot)
    return rows, slot.champion_name


def report_accuracy(seed: int, length: int) -> None:
    rows, champion = accuracy(seed, length)
    print(f"accuracy, 4 phases of {length:,} events (linear, tree, linear, tree), seed {seed}")
    print(f"{'':28}{'all':>8}" + "".join(f"{f'phase {p + 1}':>10}" for p in range(4)))
    for name, right in rows.items():
        print(f"{name:28}{mean(right):8.4f}" + "".join(f"{mean(right[p * length : (p + 1) * length]):10.4f}" for p in range(4)))
    print(f"champion at the end: {champion}")


def cost(seed: int, events: int, repeat: int) -> None:
    """CPU seconds of each slot and of each candidate alone on the same events, best of ``repeat``, interleaved."""
    stream = phases(seed, events // 4)
    pairs = [pair for phase in stream for pair in phase]
    settings = {f"{n} candidates": CANDIDATES[:n] for n in (2, 4)} | {f"{name} alone": (name,) for name in CANDIDATES}
    best: dict[str, float] = {}
    for _ in range(repeat):  # interleaved, so a busy moment of the machine hits every setting alike
        for label, names in settings.items():
            step = new_step("k", config(*names))
            started = time.process_time()
            published(step, pairs)
            best[label] = min(best.get(label, float("inf")), time.process_time() - started)
    one = best["logreg alone"]
    print(f"\ncost, {len(pairs):,} events, CPU time, best of {repeat}: events/s of the learner step, against one model (logreg alone),")
    print("and the slot's own overhead: its time against the sum of its candidates' times alone")
    for label, names in settings.items():
        seconds = best[label]
        line = f"{label:22}{len(pairs) / seconds:10,.0f} events/s  {one / seconds:5.2f}x of one model"
        if len(names) > 1:
            line += f"  overhead {seconds / sum(best[f'{name} alone'] for name in names):5.2f}x ({' + '.join(names)})"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", type=int, default=10_000, help="events per phase (accuracy)")
    parser.add_argument("--events", type=int, default=20_000, help="events per cost run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report_accuracy(args.seed, args.phase)
    cost(args.seed, args.events, args.repeat)


if __name__ == "__main__":
    main()
