"""Split-Digits and Permuted-Digits through the engine: does a strategy stop forgetting?

Both use scikit-learn's bundled ``load_digits`` (1797 8x8 images, no
download), a seeded 70/30 train/test split, one pass, micro-batch 10, and
run every training event through :class:`~stream_learner.engine.KeyedLearner`
(predict, then learn) with an explicit ``task`` per event, so each task
change is a boundary. After each task the learner predicts every task's
test set, giving the accuracy matrix ``acc[i][j]`` (after task ``i``, on
task ``j``).

* Split-Digits: 5 tasks of 2 classes (0-1, 2-3, ...), class-incremental:
  one head that grows, no task id at prediction time.
* Permuted-Digits: 5 tasks over all 10 classes, each with its own fixed
  pixel permutation (the first is the identity).

Average accuracy is the mean of the last row; forgetting is the mean, over
all tasks but the last, of the best earlier accuracy minus the final one.

Run: ``python -m benchmarks.continual_digits`` (about a minute on 2 CPUs).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec

MODEL = "torch:mlp"
MODEL_PARAMS: dict[str, Any] = {"hidden": [256], "lr": 0.1, "batch_size": 10, "scale": False}
"""The network and learner settings both benchmarks use (one pass, micro-batch 10)."""


@dataclass
class Result:
    """The accuracy matrix and its summaries."""

    strategy: str
    matrix: list[list[float]]
    seconds: float

    @property
    def average_accuracy(self) -> float:
        return float(np.mean(self.matrix[-1]))

    @property
    def forgetting(self) -> float:
        m = np.array(self.matrix)
        t = len(m)
        if t < 2:
            return 0.0
        return float(np.mean([m[: t - 1, j].max() - m[t - 1, j] for j in range(t - 1)]))


def _digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(0.7 * len(y))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def _tasks(kind: str, seed: int, n_tasks: int = 5) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    xtr, ytr, xte, yte = _digits(seed)
    tasks = []
    if kind == "split":
        for k in range(n_tasks):
            classes = (2 * k, 2 * k + 1)
            tr, te = np.isin(ytr, classes), np.isin(yte, classes)
            tasks.append((xtr[tr], ytr[tr], xte[te], yte[te]))
        return tasks
    rng = np.random.default_rng(seed + 1)
    for k in range(n_tasks):
        perm = np.arange(xtr.shape[1]) if k == 0 else rng.permutation(xtr.shape[1])
        tasks.append((xtr[:, perm], ytr, xte[:, perm], yte))
    return tasks


def _features(row: np.ndarray) -> dict[int, float]:
    return dict(enumerate(row.tolist()))


def run(kind: str, strategy: str | None, params: dict[str, Any] | None = None, seed: int = 0, model_params: dict[str, Any] | None = None) -> Result:
    """One benchmark (``kind`` is ``split`` or ``permuted``) with one strategy (``None``: naive)."""
    tasks = _tasks(kind, seed)
    spec = LearnerSpec(MODEL, {**MODEL_PARAMS, **(model_params or {})}, seed=seed, strategy=strategy, strategy_params=dict(params or {}))
    step = KeyedLearner("digits", EngineConfig(learner=spec, detector=None, metrics_every=10**9, snapshot_every=0, with_proba=False))
    learner = step.learner
    tests = [[_features(r) for r in xte] for _, _, xte, _ in tasks]
    matrix: list[list[float]] = []
    offset = 0
    started = time.perf_counter()
    rng = np.random.default_rng(seed + 2)
    for k, (xtr, ytr, _, _) in enumerate(tasks):
        order = rng.permutation(len(ytr))
        events = [Event(f"{k}:{i}", "digits", _features(xtr[i]), int(ytr[i]), k, 0, offset + n) for n, i in enumerate(order)]
        offset += len(events)
        step.process(events, now=0.0)
        row = []
        for feats, (_, _, _, yte) in zip(tests, tasks):
            correct = sum(learner.predict(x)[0] == int(y) for x, y in zip(feats, yte))
            row.append(correct / len(yte))
        matrix.append(row)
    return Result(strategy or "naive", matrix, time.perf_counter() - started)


SPLIT = {"naive": (None, {}), "replay": ("replay", {"mem_size": 200, "batch_size_mem": 20})}
PERMUTED = {"naive": (None, {}), "ewc": ("ewc", {"mode": "online", "ewc_lambda": 400.0, "decay_factor": 0.9})}
"""The strategies compared, with their parameters (lambda tuned for micro-batch 10)."""


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
