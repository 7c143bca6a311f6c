"""Input drift against error drift: detection delay and false alarms, with all, few and late labels.

Four seeded streams of 100,000 events with known change points:

- ``covariate``: three uniform features; every 25,000 events one feature's
  range moves (by half its width), the labelling rule (``x0 + x1 <= 10``)
  stays: a covariate shift that a model may or may not notice;
- ``concept``: river's SEA, whose four variants differ only in the
  threshold of the labelling rule: the labels move, the features never do
  (input monitoring must not claim these);
- ``rbf``: river's RandomRBF, switching between two centroid sets (features
  and labels move together);
- ``stable``: SEA with no change at all (every detection is a false alarm).

For each, three label regimes: every label at once (``all``), a random 10%
of labels (``10%``), every label 5,000 events late (``late``). Error drift
is river's ADWIN on the 0/1 errors of a Hoeffding tree learning
test-then-train from the labels it gets (an error is counted when its label
arrives); input drift is :class:`~stream_learner.feature_drift.FeatureDriftMonitor`
at its defaults, which needs no label, and, for the choice between them, the
other O(1) candidate: river's ADWIN on each numeric feature's values. A detection within 10,000 events after
a change point finds it (delay: events from the change point, the first
detection only); any other detection is a false alarm.

Cost: the monitor's update per event against the model's predict+learn step
on the same events, by CPU time in the same run; and whole embedded runs
(``stream_learner.run`` on 100,000 SEA events, the default model) with
``feature_drift`` on and off, interleaved, by events/s.

Run: ``.venv/bin/python benchmarks/feature_drift.py`` (a few minutes).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from river import drift, tree
from river.datasets import synth

import stream_learner
from stream_learner.feature_drift import FeatureDriftMonitor

EVENTS = 100_000
EVERY = 25_000
HORIZON = 10_000
REGIMES = ("all", "10%", "late")
LATE_BY = 5_000

Pair = tuple[dict[str, float], bool]


def covariate(seed: int) -> Iterator[Pair]:
    rng = random.Random(seed)
    for i in range(EVENTS):
        phase = i // EVERY
        lo = [0.0, 0.0, 0.0]
        lo[phase % 3] = 5.0 * (phase > 0)  # after each change point one feature lives in [5, 15] instead of [0, 10]
        x = {f"x{j}": lo[j] + 10 * rng.random() for j in range(3)}
        yield x, x["x0"] + x["x1"] <= 10


def concept(seed: int) -> Iterator[Pair]:
    for variant in range(4):
        for x, y in synth.SEA(variant=variant, seed=seed + variant).take(EVERY):
            yield {f"x{k}": v for k, v in x.items()}, bool(y)


def rbf(seed: int) -> Iterator[Pair]:
    for phase in range(4):
        generator = synth.RandomRBF(seed_model=seed + phase % 2, seed_sample=seed + phase, n_classes=2, n_features=5, n_centroids=10)
        for x, y in generator.take(EVERY):
            yield {f"x{k}": v for k, v in x.items()}, bool(y)


def stable(seed: int) -> Iterator[Pair]:
    for x, y in synth.SEA(variant=0, seed=seed).take(EVENTS):
        yield {f"x{k}": v for k, v in x.items()}, bool(y)


STREAMS = {"covariate": (covariate, True), "concept": (concept, False), "rbf": (rbf, True), "stable": (stable, False)}
"""name -> (generator, whether its features move)"""


@dataclass
class Outcome:
    detections: list[int]
    seconds: float

    def score(self, changes: list[int]) -> tuple[int, float | None, int]:
        """(changes found, mean delay of the found, false alarms)."""
        delays, false_alarms, found = [], 0, set()
        for at in self.detections:
            change = next((c for c in changes if c <= at < c + HORIZON), None)
            if change is None:
                false_alarms += 1
            elif change not in found:
                found.add(change)
                delays.append(at - change)
        return len(found), (sum(delays) / len(delays) if delays else None), false_alarms


def error_drift(pairs: list[Pair], regime: str, seed: int) -> Outcome:
    rng = random.Random(seed)
    model, detector = tree.HoeffdingTreeClassifier(), drift.ADWIN()
    waiting: deque[tuple[int, dict[str, float], bool, Any]] = deque()
    detections = []
    started = time.process_time()
    for i, (x, y) in enumerate(pairs):
        y_pred = model.predict_one(x)
        if regime == "all" or (regime == "10%" and rng.random() < 0.1):
            waiting.append((i, x, y, y_pred))
        elif regime == "late":
            waiting.append((i + LATE_BY, x, y, y_pred))
        while waiting and waiting[0][0] <= i:
            _, x_l, y_l, pred_l = waiting.popleft()
            model.learn_one(x_l, y_l)
            detector.update(float(pred_l != y_l))
            if detector.drift_detected:
                detections.append(i)
    return Outcome(detections, time.process_time() - started)


def input_drift(pairs: list[Pair]) -> Outcome:
    monitor = FeatureDriftMonitor()
    detections = []
    started = time.process_time()
    for i, (x, _) in enumerate(pairs):
        if monitor.update(x):
            detections.append(i)
    return Outcome(detections, time.process_time() - started)


def input_drift_adwin(pairs: list[Pair]) -> Outcome:
    """River's ADWIN on every numeric feature's raw values (a detection: any feature's)."""
    detectors: dict[str, drift.ADWIN] = {}
    detections = []
    started = time.process_time()
    for i, (x, _) in enumerate(pairs):
        found = False
        for name, value in x.items():
            detector = detectors.get(name)
            if detector is None:
                detector = detectors[name] = drift.ADWIN()
            detector.update(value)
            found = found or detector.drift_detected
        if found:
            detections.append(i)
    return Outcome(detections, time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--engine-events", type=int, default=100_000, help="events of each whole run with the monitor on and off")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of whole runs, interleaved")
    args = parser.parse_args()
    print(f"{EVENTS:,} events a stream, change points every {EVERY:,}, a change found within {HORIZON:,} events; {args.seeds} seeds, totals")
    print(f"{'stream':10} {'detector':21} {'found':>7} {'mean delay':>11} {'false alarms':>13}")
    error_cpu = input_cpu = adwin_cpu = 0.0
    for name, (make, features_move) in STREAMS.items():
        changes = [] if name == "stable" else [EVERY, 2 * EVERY, 3 * EVERY]
        rows: dict[str, list[tuple[int, float | None, int]]] = {}
        for seed in range(args.seeds):
            pairs = list(make(seed))
            outcome = input_drift(pairs)
            input_cpu += outcome.seconds
            rows.setdefault("input (no labels)", []).append(outcome.score(changes))
            outcome = input_drift_adwin(pairs)
            adwin_cpu += outcome.seconds
            rows.setdefault("input, ADWIN/feature", []).append(outcome.score(changes))
            for regime in REGIMES:
                outcome = error_drift(pairs, regime, seed)
                error_cpu += outcome.seconds if regime == "all" else 0.0
                rows.setdefault(f"error, {regime} labels", []).append(outcome.score(changes))
        for detector, scores in rows.items():
            found = sum(s[0] for s in scores)
            delays = [s[1] for s in scores if s[1] is not None]
            delay = f"{sum(delays) / len(delays):,.0f}" if delays else "-"
            false_alarms = sum(s[2] for s in scores)
            print(f"{name:10} {detector:21} {found:>3}/{len(changes) * args.seeds:<3} {delay:>11} {false_alarms:>13}")
        if not features_move:
            print(f"{'':10} (the features of {name!r} never move: every input detection is a false alarm)")
    events = EVENTS * len(STREAMS) * args.seeds
    print(
        f"\ncost, CPU: input monitor {input_cpu / events * 1e6:.2f} µs/event, ADWIN per feature {adwin_cpu / events * 1e6:.2f} µs/event, "
        "Hoeffding tree predict+learn+ADWIN "
        f"{error_cpu / events * 1e6:.2f} µs/event: ratio {input_cpu / error_cpu:.2f}"
    )
    engine_cost(args.engine_events, args.repeat)


def engine_cost(events: int, repeat: int) -> None:
    """Whole embedded runs with the monitor off and on, interleaved; events/s of each and the paired ratio."""
    rates: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            for mode, watch in (("off", None), ("on", {})):
                summary = stream_learner.run("synthetic:sea", max_events=events, out=f"{tmp}/{mode}{i}", feature_drift=watch)
                rates[mode].append(summary["events_per_second"])
    paired = statistics.median(on / off for on, off in zip(rates["on"], rates["off"]))
    print(
        f"whole embedded runs, {events:,} SEA events, {repeat} interleaved pairs: monitor off {max(rates['off']):,.0f} ev/s, "
        f"on {max(rates['on']):,.0f} ev/s (best of each); paired ratio on/off {paired:.2f}"
    )


if __name__ == "__main__":
    main()
