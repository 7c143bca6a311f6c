"""Which river model should ``run`` use when the user names none?

    .venv/bin/python benchmarks/default_model.py [--events 3000] [--models logreg hoeffding_tree ...]

Each candidate learns test-then-train (predict, then learn) over the same
events of river's bundled datasets (no download) and seeded synthetic
generators: binary, multi-class, string labels, nominal features. An event
whose predict or learn raises counts as a miss and as a failure (the engine
would dead-letter it). Prints per dataset the prequential accuracy of each
model, then each model's mean accuracy and failed events, and its speed in
events/s with the ratio to the old default (``logreg``) measured in this
run, over the datasets no model fails on (CPU time of this process, which
other jobs on a shared machine distort far less than wall time).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Any, Callable, Iterable

from river import datasets
from river.datasets import synth

from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.river import RiverLearner

Pairs = list[tuple[dict[str, Any], Any]]


def _softmax() -> RiverLearner:
    from river import linear_model, preprocessing

    return RiverLearner(preprocessing.StandardScaler() | linear_model.SoftmaxRegression())


def _one_vs_rest_logreg() -> RiverLearner:
    from river import linear_model, multiclass, preprocessing

    return RiverLearner(preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(linear_model.LogisticRegression()))


def _preset(name: str) -> Callable[[], Any]:
    return lambda: build_learner(LearnerSpec(name, seed=42))


CANDIDATES: dict[str, Callable[[], Any]] = {
    "logreg": _preset("logreg"),
    "hoeffding_tree": _preset("hoeffding_tree"),
    "hat": _preset("hat"),
    "naive_bayes": _preset("naive_bayes"),
    "arf": _preset("arf"),
    "softmax": _softmax,
    "ovr_logreg": _one_vs_rest_logreg,
}
"""Model name -> a fresh learner; presets as ``--model NAME`` builds them, the linear multi-class ones behind a StandardScaler as logreg is."""


def _as_strings(stream: Iterable[tuple[dict[str, Any], Any]]) -> Iterable[tuple[dict[str, Any], Any]]:
    return ((x, f"class-{y}") for x, y in stream)


DATASETS: dict[str, Callable[[], Iterable[tuple[dict[str, Any], Any]]]] = {
    "Phishing (2 classes)": datasets.Phishing,
    "Bananas (2 classes)": datasets.Bananas,
    "ImageSegments (7, strings)": datasets.ImageSegments,
    "Agrawal (2)": lambda: synth.Agrawal(classification_function=2, seed=42),
    "SEA (2)": lambda: synth.SEA(seed=42),
    "Hyperplane (2)": lambda: synth.Hyperplane(seed=42, n_features=10),
    "STAGGER (2, nominal)": lambda: synth.STAGGER(seed=42),
    "Waveform (3)": lambda: synth.Waveform(seed=42),
    "RandomRBF (5, strings)": lambda: _as_strings(synth.RandomRBF(seed_model=42, seed_sample=42, n_classes=5, n_features=10)),
    "LED (10)": lambda: synth.LED(seed=42, noise_percentage=0.1),
}
"""Dataset label -> its events; every one is bundled with river or generated, seeded."""


def prequential(make: Callable[[], Any], events: Pairs) -> tuple[float, int, float]:
    """Accuracy (a failed event is a miss), failed events, and CPU seconds of one test-then-train pass."""
    learner = make()
    correct = failed = 0
    started = time.process_time()
    for x, y in events:
        try:
            prediction, _ = learner.predict(x)
            learner.learn(x, y)
        except Exception:  # the engine dead-letters such an event; here it is a miss
            failed += 1
            continue
        correct += prediction == y
    return correct / len(events), failed, time.process_time() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events per dataset (fewer where a dataset is smaller)")
    parser.add_argument("--models", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    args = parser.parse_args(argv)
    streams = {name: list(itertools.islice(make(), args.events)) for name, make in DATASETS.items()}
    results: dict[str, dict[str, tuple[float, int, float]]] = {m: {} for m in args.models}
    for name, events in streams.items():
        for model in args.models:  # models back to back on each dataset: the same load meets each of them
            results[model][name] = prequential(CANDIDATES[model], events)
    # speed on the datasets no model fails on: an event that raises at once would flatter a model's speed
    common = [name for name in streams if all(results[m][name][1] == 0 for m in args.models)]
    common_events = sum(len(streams[name]) for name in common)
    cpu = {m: sum(results[m][name][2] for name in common) for m in args.models}
    width = max(len(f"{name} n={len(events)}") for name, events in streams.items()) + 2
    column = max(map(len, args.models)) + 2

    def row(label: str, cells: Iterable[str]) -> str:
        return label.ljust(width) + "".join(cell.rjust(column) for cell in cells)

    print(f"prequential accuracy, at most {args.events:,} events per dataset (a failed event counts as a miss)\n")
    print(row("dataset", args.models))
    for name, events in streams.items():
        print(row(f"{name} n={len(events)}", (f"{results[m][name][0]:.3f}" for m in args.models)))
    print(row("mean accuracy", (f"{statistics.fmean(r[0] for r in results[m].values()):.3f}" for m in args.models)))
    print(row("failed events", (f"{sum(r[1] for r in results[m].values()):,}" for m in args.models)))
    print(f"\nspeed over the {len(common)} datasets no model fails on ({common_events:,} events), CPU time of this process")
    print(row("events/s", (f"{common_events / cpu[m]:,.0f}" for m in args.models)))
    if "logreg" in cpu:
        print(row("speed vs logreg", (f"{cpu['logreg'] / cpu[m]:.2f}" for m in args.models)))


if __name__ == "__main__":
    main()
