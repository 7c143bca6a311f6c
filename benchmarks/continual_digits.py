"""Split-Digits and Permuted-Digits through the engine: does a strategy stop forgetting?

The quick, two-scenario view of the forgetting suite (:mod:`benchmarks.forgetting`,
``stream-learner bench forgetting``), on the same scenarios and runner:
scikit-learn's bundled ``load_digits``, a seeded 70/30 split, one pass,
micro-batch 10, every training event a JSON message decoded and handed to
:class:`~stream_learner.engine.KeyedLearner` with its ``task``, so each task
change is a boundary. After each task the learner predicts every task's
test set, giving the accuracy matrix ``acc[i][j]`` (after task ``i``, on
task ``j``).

* Split-Digits: 5 tasks of 2 classes (0-1, 2-3, ...), class-incremental.
* Permuted-Digits: 5 tasks over all 10 classes, each with its own fixed
  pixel permutation (the first is the identity).

Average accuracy is the mean of the last row; forgetting is the mean, over
all tasks but the last, of the best accuracy since the task was learned
minus the final one (:mod:`stream_learner.forgetting`).

Run: ``python -m benchmarks.continual_digits`` (about a minute on 2 CPUs).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.forgetting import DEFAULT_PARAMS, run_engine
from benchmarks.scenarios import SCENARIOS

KINDS = {"split": "split-digits", "permuted": "permuted-digits"}


@dataclass
class Result:
    """The accuracy matrix and its summaries."""

    strategy: str
    matrix: list[list[float]]
    seconds: float
    average_accuracy: float
    forgetting: float


def run(kind: str, strategy: str | None, params: dict[str, Any] | None = None, seed: int = 0) -> Result:
    """One benchmark (``kind`` is ``split`` or ``permuted``) with one strategy (``None``: naive), oracle boundaries."""
    name = strategy or "naive"
    r = run_engine(SCENARIOS[KINDS[kind]], name, dict(params or {}), seed, "oracle")
    return Result(name, r["matrix"], r["seconds"], r["average_accuracy"], r["average_forgetting"])


SPLIT = {"naive": ("naive", {}), "replay": ("replay", DEFAULT_PARAMS["replay"])}
PERMUTED = {"naive": ("naive", {}), "ewc": ("ewc", DEFAULT_PARAMS["ewc"])}
"""The strategies compared, with the suite's parameters."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds to average over (default: %(default)s)")
    args = parser.parse_args(argv)
    for kind, setups in (("split", SPLIT), ("permuted", PERMUTED)):
        print(f"{kind}-digits: 5 tasks, one pass, micro-batch 10, {args.seeds} seeds")
        for name, (strategy, params) in setups.items():
            results = [run(kind, strategy, params, seed=s) for s in range(args.seeds)]
            acc = [r.average_accuracy for r in results]
            fgt = [r.forgetting for r in results]
            secs = sum(r.seconds for r in results)
            print(f"  {name:8s} {params!s:60s} avg accuracy {np.mean(acc):.3f} (min {min(acc):.3f})  forgetting {np.mean(fgt):.3f} (max {max(fgt):.3f})  [{secs:.1f}s]")


if __name__ == "__main__":
    main()
