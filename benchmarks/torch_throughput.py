"""Torch throughput: events/s per strategy through the engine against a raw PyTorch loop, same run.

Workload: ``load_digits`` (64 features, 10 classes) streamed twice, a
64-256-10 MLP, SGD, micro-batch 10, an explicit task boundary every 600
events (so EWC, LwF, A-GEM and replay consolidate several times). Seeded;
one CPU thread for torch in every loop.

Each engine run goes through :class:`~stream_learner.engine.KeyedLearner`
(decode-free events; per event: encode, predict under ``no_grad``,
prequential metrics; per micro-batch: the strategy's update). The raw
loops do the same network work with plain PyTorch on pre-built tensors:

* ``raw``: per event one ``no_grad`` forward of that event, per micro-batch
  forward, cross-entropy, backward, SGD step (the same forward/backward as
  the engine);
* ``raw-train``: the micro-batch updates only (no per-event prediction),
  the loop the issue's pattern figures are compared with.

``learn-only`` feeds the same learner every event through ``learn`` alone
(plus the boundaries): the per-micro-batch pattern the issue measured, so
its ratio to ``raw-train`` is the one to set beside the pattern's. Targets:
naive through the engine at 0.5x ``raw`` or better; each strategy's
learn-only ratio at least 0.8x the pattern's.

Run: ``python -m benchmarks.torch_throughput [--repeat 3] [--strategies naive,ewc]``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np
import torch

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner

BATCH = 10
BOUNDARY_EVERY = 600
MODEL_PARAMS = {"hidden": [256], "batch_size": BATCH, "lr": 0.05, "scale": False}
STRATEGIES: dict[str, tuple[str | None, dict[str, Any]]] = {
    "naive": (None, {}),
    "ewc": ("ewc", {"mode": "online"}),
    "ewc-separate": ("ewc", {"mode": "separate", "max_anchors": 5}),
    "replay": ("replay", {"mem_size": 200}),
    "lwf": ("lwf", {}),
    "agem": ("agem", {}),
    "lamaml": ("lamaml", {}),
    "ewc+replay": ("ewc+replay", {}),
}
PATTERN = {"naive": 27.5, "ewc": 10.3, "replay": 12.8, "lwf": 15.9, "agem": 8.8, "lamaml": 2.0}
"""k events/s the issue measured for this pattern, against a raw train loop at 47.9k."""
PATTERN_RAW = 47.9


def _data(passes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(len(y)) for _ in range(passes)])
    return x[order], y[order]


def engine_events_per_second(strategy: str | None, params: dict[str, Any], x: np.ndarray, y: np.ndarray) -> float:
    spec = LearnerSpec("torch:mlp", MODEL_PARAMS, seed=0, strategy=strategy, strategy_params=params)
    step = KeyedLearner("bench", EngineConfig(learner=spec, detector=None, metrics_every=10**9, snapshot_every=0, snapshot_seconds=0, with_proba=True))
    events = [Event(str(i), "bench", dict(enumerate(row.tolist())), int(label), i // BOUNDARY_EVERY, 0, i) for i, (row, label) in enumerate(zip(x, y))]
    started = time.perf_counter()
    for i in range(0, len(events), 500):  # the dataflow hands the step batches of events
        step.process(events[i : i + 500], now=0.0)
    return len(events) / (time.perf_counter() - started)


def learn_only_events_per_second(strategy: str | None, params: dict[str, Any], x: np.ndarray, y: np.ndarray) -> float:
    learner = build_learner(LearnerSpec("torch:mlp", MODEL_PARAMS, seed=0, strategy=strategy, strategy_params=params))
    events = [(dict(enumerate(row.tolist())), int(label)) for row, label in zip(x, y)]
    learn = learner.learn
    started = time.perf_counter()
    for i, (features, label) in enumerate(events):
        if i and i % BOUNDARY_EVERY == 0:
            learner.on_boundary(i // BOUNDARY_EVERY)
        learn(features, label)
    return len(events) / (time.perf_counter() - started)


def raw_events_per_second(x: np.ndarray, y: np.ndarray, predict: bool) -> float:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=MODEL_PARAMS["lr"])
    criterion = torch.nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(x), torch.from_numpy(y).long()
    model.eval()
    started = time.perf_counter()
    for start in range(0, len(ys), BATCH):
        xb, yb = xs[start : start + BATCH], ys[start : start + BATCH]
        if predict:
            with torch.no_grad():
                for i in range(len(yb)):
                    model(xb[i : i + 1]).argmax(1)
        model.train()
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        model.eval()
    return len(ys) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; each loop keeps its best (default: %(default)s)")
    parser.add_argument("--passes", type=int, default=2, help="passes over load_digits (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)  # avalanche 0.6 on torch 2.x
    from strategies._avalanche import _template_module

    _template_module()  # import Avalanche before any timing
    x, y = _data(args.passes)
    names = args.strategies.split(",")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    loops = {
        "raw": lambda: raw_events_per_second(x, y, predict=True),
        "raw-train": lambda: raw_events_per_second(x, y, predict=False),
        **{n: (lambda n=n: engine_events_per_second(*STRATEGIES[n], x, y)) for n in names},
        **{f"{n} learn-only": (lambda n=n: learn_only_events_per_second(*STRATEGIES[n], x, y)) for n in names},
    }
    best: dict[str, float] = {}
    for _ in range(args.repeat):  # interleaved rounds, so every loop sees the same machine load
        for name, loop in loops.items():
            best[name] = max(best.get(name, 0.0), loop())
    raw, raw_train = best["raw"], best["raw-train"]
    print(f"torch throughput: {len(y)} events, 64-256-10 MLP, micro-batch {BATCH}, boundary every {BOUNDARY_EVERY} events, best of {args.repeat} interleaved rounds")
    print(f"  raw torch (predict each event + train each micro-batch): {raw:9,.0f} events/s")
    print(f"  raw torch (train only):                                  {raw_train:9,.0f} events/s")
    print(f"  {'':14s} {'engine (predict + learn)':^36s}  {'learn-only (the pattern)':^40s}")
    print(f"  {'strategy':14s} {'events/s':>9s}  {'vs raw':>6s}  {'vs raw-train':>12s}  {'events/s':>9s}  {'vs raw-train':>12s}  {'pattern':>7s}  {'target':>6s}")
    for name in names:
        eps, learn = best[name], best[f"{name} learn-only"]
        pattern = PATTERN.get(name, 0.0) / PATTERN_RAW
        met = learn / raw_train >= 0.8 * pattern and (name != "naive" or eps / raw >= 0.5)
        shown = (f"{pattern:.2f}", "met" if met else "missed") if name in PATTERN else ("-", "-")
        print(f"  {name:14s} {eps:9,.0f}  {eps / raw:5.2f}x  {eps / raw_train:11.2f}x  {learn:9,.0f}  {learn / raw_train:11.2f}x  {shown[0]:>7s}  {shown[1]:>6s}")


if __name__ == "__main__":
    main()
