"""The default torch learner's growing head against a fixed head, on a class-incremental stream the forgetting suite does not run.

Split-Digits with pixels in [0, 1] and the class pairs in another order than
the suite's (3-7, 0-9, 5-1, 8-2, 6-4), one pass, micro-batch 16, an MLP with
one hidden layer of 128, SGD lr 0.05, boundaries at the task ends. The figure
is the final average accuracy over the tasks' held-out test sets, mean ± std
over seeds, for three heads:

* ``default``: ``torch:mlp`` as it is by default, one row ahead of the
  classes seen (the next class's, ``next_class_row``);
* ``exact``: ``torch:mlp`` with ``next_class_row: false``, grown to exactly
  the classes seen (Avalanche's ``IncrementalClassifier``);
* ``fixed``: the forgetting suite's MLP with ten outputs from the start.

Each with raw inputs (``scale: false``) and standardised ones (``scale: true``)::

    python -m benchmarks.growing_head --seeds 3 --strategies replay,agem,er_ace
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np

PAIRS = [(3, 7), (0, 9), (5, 1), (8, 2), (6, 4)]
OPTIONS: dict[str, Any] = {"hidden": [128], "lr": 0.05, "batch_size": 16}
HEADS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("torch:mlp", {}),
    "exact": ("torch:mlp", {"next_class_row": False}),
    "fixed": ("torch:benchmarks.scenarios:mlp", {"outputs": 10}),
}
STRATEGY_PARAMS: dict[str, dict[str, Any]] = {
    "replay": {"mem_size": 200},
    "er_ace": {"mem_size": 200},
    "mir": {"mem_size": 200},
    "agem": {"patterns_per_experience": 100, "sample_size": 64},
}

Rows = list[dict[int, float]]


def held_out_split_digits(seed: int) -> list[tuple[Rows, list[int], Rows, list[int]]]:
    """Five tasks ``(x_train, y_train, x_test, y_test)``: a seeded 70/30 split, the training events of each task shuffled."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(0.7 * len(y))
    xtr, ytr, xte, yte = x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]
    tasks = []
    for pair in PAIRS:
        tr = rng.permutation(np.flatnonzero(np.isin(ytr, pair)))
        te = np.flatnonzero(np.isin(yte, pair))
        tasks.append(([dict(enumerate(r)) for r in xtr[tr].tolist()], ytr[tr].tolist(), [dict(enumerate(r)) for r in xte[te].tolist()], yte[te].tolist()))
    return tasks


def final_accuracy(head: str, strategy: str, seed: int, scale: bool = False) -> float:
    """One pass of ``strategy`` over the stream with ``head``; the mean accuracy over the tasks' test sets at the end."""
    from stream_learner.learners.base import LearnerSpec
    from stream_learner.learners.factory import build_learner

    model, params = HEADS[head]
    spec = LearnerSpec(model, {**OPTIONS, **params, "scale": scale}, seed=seed, strategy=strategy, strategy_params=dict(STRATEGY_PARAMS.get(strategy, {})))
    learner = build_learner(spec)
    tasks = held_out_split_digits(seed)
    for k, (xs, ys, _, _) in enumerate(tasks):
        if k:
            learner.on_boundary(k)
        for x, y in zip(xs, ys):
            learner.learn(x, y)
    return float(np.mean([np.mean([p == t for (p, _), t in zip(learner.predict_many(xt), yt)]) for _, _, xt, yt in tasks]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.growing_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default="replay,agem,er_ace")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print("| strategy | inputs | " + " | ".join(HEADS) + " |")
    print("|---|---|" + "---|" * len(HEADS))
    for strategy in args.strategies.split(","):
        for scale in (False, True):
            cells = []
            for head in HEADS:
                accuracies = [final_accuracy(head, strategy, seed, scale) for seed in range(args.seeds)]
                spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
                cells.append(f"{statistics.fmean(accuracies):.3f} ± {spread:.3f}")
            print(f"| {strategy} | {'scaled' if scale else 'raw'} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{args.seeds} seeds, {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
