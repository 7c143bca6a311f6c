"""The forgetting benchmark suite: every strategy on standard scenarios, streamed through the engine.

``stream-learner bench forgetting`` (or ``python -m benchmarks.forgetting``)
runs, for each scenario of :mod:`benchmarks.scenarios`, each registered
strategy that supports the scenario's learner family, and each seed:

* **through the engine, as a Kafka topic would feed it**: every training
  event is a JSON message, decoded by :func:`stream_learner.events.decode_event`
  and handed alone to :meth:`KeyedLearner.process` (predict, then learn),
  once with **oracle** boundaries (each event carries its ``task``) and once
  with **drift**-detected boundaries (no ``task``; the engine's ADWIN
  detector and new labels mark concepts). At each true task end the benchmark evaluates
  the learner on every task's held-out test set: the accuracy matrix
  ``R[i][j]`` (after task ``i``, on task ``j``), summarised with
  :mod:`stream_learner.forgetting`'s own functions. It also keeps what the
  engine published itself: the metrics records' ``forgetting`` (the live
  matrix over the engine's per-concept samples), accuracy over the stream,
  drift detections.
* **through Avalanche's own loop** (torch strategies, :mod:`benchmarks.fidelity`):
  the fidelity column.

The torch scenarios run the fixed-head MLP Avalanche's loop runs too; the
``-mlp`` and ``-mlp-scaled`` scenarios run the same streams through the
engine's default learner ``torch:mlp`` (a head growing with the classes, raw
or standardised inputs), with no Avalanche counterpart. The default set has
them on Split-Digits; ``--scenarios all`` adds them on Permuted-Digits and
Split-MNIST-1D.

**Live and offline agree** means two things, both checked per run:

1. *Consistent* (exact): the live figures the engine published (average
   accuracy, average forgetting, BWT) equal the offline functions of
   :mod:`stream_learner.forgetting` applied to the live matrix it published
   (to 1e-9). With oracle boundaries that matrix has one row per task end,
   like ``R``.
2. *Close* (an estimate, oracle boundaries, class- or domain-incremental
   scenarios): the live final average accuracy and average forgetting,
   measured on the engine's 100-event sample per concept (test-then-train:
   those events were also learned), are within :data:`LIVE_TOLERANCE` of the
   same figures measured on the held-out test sets. Task-incremental
   scenarios are not compared: the engine predicts without a task id, so
   its live figures are the class-incremental ones.

Nothing heavy runs at import: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

DETECTOR = "adwin"
DETECTOR_PARAMS: dict[str, Any] = {"clock": 1}
"""The engine's drift detector for drift-detected boundaries, and its parameters: ADWIN checking
for a change after every event (its default checks every 32, which detects a task change about 55
events late instead of 20: a fifth of a Split-Digits task)."""
NEW_LABEL_GAP = 100
"""With drift-detected boundaries a label never seen before also marks a new concept, 100 or more
labelled events after the last boundary (``--new-label-gap``; the classes of one task arrive within
a few events of each other, and every task here is longer). It fires only in the class- and
task-incremental scenarios, where each task brings new labels; in the others every label is seen at
the start."""
MODES = ("oracle", "drift")
LIVE_TOLERANCE = 0.05
"""How close the live estimate must be to the held-out figure (average accuracy and average forgetting)."""
FIDELITY_TOLERANCE = {"oracle": 0.03, "drift": 0.05}
"""How close the engine's mean final average accuracy must be to Avalanche's, per kind of boundary."""
GENERIC_PLUGIN = "avalanche:avalanche.training.plugins.MASPlugin"
"""What the generic ``avalanche`` strategy runs in the suite."""
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "replay": {"mem_size": 200, "batch_size_mem": 10},
    "ewc": {"mode": "online", "ewc_lambda": 100.0, "decay_factor": 0.9},
    "gem": {"patterns_per_experience": 100, "memory_strength": 0.5},
    "agem": {"patterns_per_experience": 100, "sample_size": 64},
    "avalanche": {"lambda_reg": 0.1, "alpha": 0.5},
    "er_ace": {"mem_size": 200, "batch_size_mem": 10},
    "mir": {"mem_size": 200, "subsample": 50, "batch_size_mem": 10},
    "gdumb": {"mem_size": 200, "epochs": 10, "batch_size": 10},
    "rar": {"mem_size": 200, "batch_size_mem": 10, "repeats": 3},
    "ensemble": {"n_models": 3},
}
"""Strategy parameters used by the suite (the rest are each strategy's defaults)."""
KEY = "bench"


@dataclass(frozen=True)
class Job:
    """One run: a strategy on a scenario with one seed, through the engine (``oracle``/``drift``) or Avalanche (``avalanche``)."""

    scenario: str
    strategy: str
    seed: int
    mode: str
    params: dict[str, Any] = field(default_factory=dict)
    max_per_task: int = 0

    @property
    def label(self) -> str:
        return f"{self.scenario} {self.strategy.removeprefix('avalanche:avalanche.training.plugins.')} seed {self.seed} {self.mode}"


# -- planning -------------------------------------------------------------------


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def strategies_for(family: str) -> list[str]:
    """Every registered strategy supporting ``family`` (the generic Avalanche adapter as :data:`GENERIC_PLUGIN`)."""
    from strategies.registry import available

    return [GENERIC_PLUGIN if i.name == "avalanche" else i.name for i in available() if family in i.families]


def plan(
    scenarios: list[str] | None = None,
    strategies: list[str] | None = None,
    seeds: int = 3,
    modes: tuple[str, ...] = MODES,
    fidelity: bool = True,
    max_per_task: int = 0,
) -> list[Job]:
    """The runs to do; wrong names are a :class:`~stream_learner.errors.ConfigError` naming the choices."""
    from benchmarks.fidelity import has_counterpart
    from benchmarks.scenarios import SCENARIOS
    from stream_learner.errors import ConfigError
    from stream_learner.learners.strategy import load_class

    if scenarios == ["all"]:
        names = list(SCENARIOS)
    else:
        names = scenarios or [n for n, s in SCENARIOS.items() if s.in_default]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}, or all")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {seeds}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"unknown boundaries {bad[0] if bad else ''!r}; choose from {', '.join(MODES)}")
    if max_per_task < 0:
        raise ConfigError(f"--max-per-task must not be negative, not {max_per_task}")
    families: dict[str, list[str]] = {}
    if strategies:
        for s in strategies:
            if s == "avalanche":
                s = GENERIC_PLUGIN
            for family in load_class(s.partition(":")[0]).families:  # unknown names: StrategyLoadError with the installed list
                families.setdefault(family, []).append(s)
    else:
        families = {f: strategies_for(f) for f in {SCENARIOS[n].family for n in names}}
    jobs = []
    for name in names:
        family = SCENARIOS[name].family
        comparable = family == "torch" and SCENARIOS[name].learner == "fixed"  # Avalanche's loop runs the fixed-head MLP only
        chosen = families.get(family, [])
        if not chosen:
            raise ConfigError(f"no chosen strategy supports scenario {name!r} ({family} learners)")
        for strategy in chosen:
            params = dict(DEFAULT_PARAMS.get(strategy.partition(":")[0], {}))
            for seed in range(seeds):
                for mode in modes:
                    jobs.append(Job(name, strategy, seed, mode, params, max_per_task))
                if fidelity and comparable and has_counterpart(strategy):
                    jobs.append(Job(name, strategy, seed, "avalanche", params, max_per_task))
    return jobs


# -- one run ----------------------------------------------------------------------


def run_job(job: Job) -> dict[str, Any]:
    """Do one run; a plain, JSON-ready dict (picklable, for worker processes)."""
    from benchmarks.scenarios import SCENARIOS, limited

    _warm_up()
    scenario = limited(SCENARIOS[job.scenario], job.max_per_task)
    if job.mode == "avalanche":
        from benchmarks.fidelity import run_avalanche

        result = run_avalanche(scenario, job.strategy, job.params, job.seed)
    else:
        result = run_engine(scenario, job.strategy, job.params, job.seed, job.mode)
    return {**asdict(job), **result}


_warm: list[bool] = []


def _warm_up() -> None:
    """Once per process, before anything is timed: torch's first backward pass and Avalanche's imports."""
    if _warm:
        return
    _warm.append(True)
    from strategies._avalanche import _template_module
    from stream_learner.engine import EngineConfig, KeyedLearner
    from stream_learner.events import Event
    from stream_learner.learners.base import LearnerSpec

    _template_module()
    spec = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 2, "threads": 1}, seed=0, strategy="naive")
    step = KeyedLearner("warm-up", EngineConfig(learner=spec, detector=DETECTOR, forgetting_every=0, snapshot_every=0, snapshot_seconds=0))
    step.process([Event(str(i), "warm-up", {0: float(i % 2)}, i % 2, None, 0, i) for i in range(8)], 0.0)


def run_engine(scenario: Any, strategy: str, params: dict[str, Any], seed: int, mode: str) -> dict[str, Any]:
    """Stream ``scenario`` through a :class:`~stream_learner.engine.KeyedLearner`, one JSON event at a time.

    Returns the held-out accuracy matrix and its figures, the live figures
    the engine published, throughput (decode + process, evaluation excluded),
    accuracy over the stream and the drift detections.
    """
    import orjson

    from benchmarks.fidelity import summarise
    from stream_learner.engine import EngineConfig, KeyedLearner
    from stream_learner.events import Origin, decode_event
    from stream_learner.learners.base import LearnerSpec

    tasks = scenario.tasks(seed)
    lengths = [len(t.y_train) for t in tasks]
    total = sum(lengths)
    _seed_globals(seed)
    topic = f"bench.{scenario.name}"
    spec = LearnerSpec(scenario.model, scenario.model_params(tasks), seed=seed, strategy=strategy, strategy_params=dict(params))
    config = EngineConfig(
        learner=spec,
        detector=DETECTOR if mode == "drift" else None,
        detector_params=dict(DETECTOR_PARAMS),
        new_label_gap=NEW_LABEL_GAP if mode == "drift" else 0,
        window=max(50, min(lengths) // 3),
        metrics_every=max(10, total // 100),
        snapshot_every=0,
        snapshot_seconds=0,
        forgetting_every=0,  # live rows at boundaries and at the end only: with oracle boundaries, one per task end
        source=topic,
    )
    step = KeyedLearner(KEY, config)
    streams = [_encode(task, k, mode == "oracle", topic, sum(lengths[:k]), orjson.dumps) for k, task in enumerate(tasks)]
    tests = [([_features(x) for x in _rows(t.x_test)], list(t.y_test), list(t.classes)) for t in tasks]
    published: list[Any] = []  # the records the engine published (typed dicts of several kinds)
    matrix: list[list[float]] = []
    seconds = 0.0
    dead = offset = 0
    for raws in streams:
        started = time.perf_counter()
        for raw in raws:
            event = decode_event(raw, Origin(topic, 0, offset))
            offset += 1
            if isinstance(event, dict):
                dead += 1
                continue
            out = step.process([event], time.time())
            if out.metrics:
                published.extend(out.metrics)
        seconds += time.perf_counter() - started
        matrix.append(_evaluate(step.learner, tests, scenario.task_aware))
    started = time.perf_counter()
    final: Any = step.finish(time.time()).metrics[-1]  # the closing metrics record
    seconds += time.perf_counter() - started
    published.append(final)
    offline = summarise(matrix)
    live = _live(final["forgetting"], step.concept, step.forgetting.evaluations)
    return {
        **offline,
        "events": total,
        "dead_letters": dead,
        "seconds": seconds,
        "events_per_second": total / seconds if seconds else None,
        "task_ends": [sum(lengths[: k + 1]) for k in range(len(lengths))],
        "detections": [r["at_event"] for r in published if r.get("type") == "drift" and r.get("detector") != "task"],
        "curve": [[r["labelled"], r["accuracy_window"]] for r in published if r.get("type") == "metrics"],
        "live": {**live, **agreement(live, offline, mode == "oracle" and not scenario.task_aware)},
    }


def _seed_globals(seed: int) -> None:
    """Seed the global generators a library might draw from, so a run never depends on what ran before it."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rows(x: Any) -> list[Any]:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def _features(row: Any) -> dict[Any, Any]:
    """Features as :func:`decode_event` gives them: a JSON array keyed by position, an object as is."""
    return dict(enumerate(row)) if isinstance(row, list) else dict(row)


def _encode(task: Any, k: int, oracle: bool, topic: str, start: int, dumps: Callable[[Any], bytes]) -> list[bytes]:
    """The task's training events as the JSON messages a topic would hold."""
    messages = []
    for i, (x, y) in enumerate(zip(_rows(task.x_train), task.y_train)):
        event: dict[str, Any] = {"id": f"{topic}:{start + i}", "key": KEY, "features": x, "label": y}
        if oracle:
            event["task"] = k
        messages.append(dumps(event))
    return messages


def _evaluate(learner: Any, tests: list[tuple[list[Any], list[Any], list[Any]]], task_aware: bool) -> list[float]:
    """Accuracy of the engine's learner on each task's test set (task-incremental: the best of the task's classes)."""
    predict = learner.predict
    row = []
    for features, labels, classes in tests:
        correct = 0
        for x, y in zip(features, labels):
            label, proba = predict(x)
            if task_aware and proba:
                label = max(classes, key=lambda c: proba.get(c, -1.0))
            correct += label == y
        row.append(correct / len(labels))
    return row


def _live(summary: dict[str, Any], current: int, evaluations: int) -> dict[str, Any]:
    return {
        "average_accuracy": summary["average_accuracy"],
        "average_forgetting": summary["average"],
        "bwt": summary["bwt"],
        "concepts": summary["concepts"],
        "columns": summary["columns"],
        "matrix": summary["matrix"],
        "current": current,
        "evaluations": evaluations,
    }


def agreement(live: dict[str, Any], offline: dict[str, Any], comparable: bool) -> dict[str, Any]:
    """How the live figures agree with the offline computation (see the module docstring).

    ``consistent`` is ``None`` when the published matrix was truncated (more
    than 20 evaluations or 10 concepts); ``close`` is ``None`` when the
    scenario is not comparable.
    """
    from stream_learner.forgetting import average_accuracy, average_forgetting, bwt

    matrix, columns, current = live["matrix"], live["columns"], live["current"]
    consistent = None
    if matrix and len(matrix) == live["evaluations"] and columns == list(range(len(columns))):
        recomputed = (
            average_accuracy(matrix[-1]),
            average_forgetting(matrix, current),
            bwt(matrix, current, ends={c: c for c in columns if c != current}),
        )
        published = (live["average_accuracy"], live["average_forgetting"], live["bwt"])
        consistent = all((a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9) for a, b in zip(recomputed, published))
    gap: dict[str, Any] = {}
    close = None
    if comparable and matrix and len(matrix) == len(offline["matrix"]):
        for name in ("average_accuracy", "average_forgetting", "bwt"):
            a, b = live[name], offline[name]
            gap[name] = None if a is None or b is None else a - b
        cells = [abs(m - o) for lrow, orow in zip(matrix, offline["matrix"]) for m, o in zip(lrow, orow) if m is not None]
        gap["max_cell"] = max(cells) if cells else None
        close = all(gap[n] is not None and abs(gap[n]) <= LIVE_TOLERANCE for n in ("average_accuracy", "average_forgetting"))
    return {"consistent": consistent, "close": close, "gap": gap}


# -- many runs --------------------------------------------------------------------


def execute(jobs: list[Job], workers: int = 1, on_done: Callable[[int, Job], None] | None = None) -> list[dict[str, Any]]:
    """Run every job (in ``workers`` processes when more than 1), results in plan order."""
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    if workers <= 1:
        for i, job in enumerate(jobs):
            results[i] = run_job(job)
            if on_done:
                on_done(i, job)
        return results  # type: ignore[return-value]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))  # longest first packs the workers best
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, jobs[i]): i for i in order}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if on_done:
                on_done(i, jobs[i])
    return results  # type: ignore[return-value]


_WEIGHTS = {"lamaml": 8.0, "gem": 3.0, "cumulative": 2.5, "agem": 2.0, "ensemble": 3.0, "mir": 2.0, "rar": 2.5, "slda": 2.0}


def _cost(job: Job) -> float:
    from benchmarks.scenarios import SCENARIOS

    scenario = SCENARIOS[job.scenario]
    size = {"permuted-digits": 5.0, "split-mnist1d": 3.2, "sea": 3.0, "agrawal": 3.0, "hyperplane": 3.0, "rbf": 3.0}.get(scenario.stream or scenario.name, 1.0)
    return size * _WEIGHTS.get(job.strategy.partition(":")[0], 1.0) * (0.5 if job.mode == "avalanche" else 1.0)


def _stats(values: list[float | None]) -> dict[str, Any]:
    xs = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (scenario, strategy, mode), with the fidelity comparison."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["strategy"], r["mode"]), []).append(r)
    rows = []
    for (scenario, strategy, mode), rs in groups.items():
        row: dict[str, Any] = {"scenario": scenario, "strategy": strategy, "mode": mode, "seeds": [r["seed"] for r in rs]}
        for name in ("average_accuracy", "average_forgetting", "bwt", "events_per_second"):
            row[name] = _stats([r[name] for r in rs])
        width = len(rs[0]["matrix"])
        row["matrix"] = [[statistics.fmean(r["matrix"][i][j] for r in rs) for j in range(width)] for i in range(width)]
        if mode == "avalanche":
            row["reference"] = rs[0]["reference"]
        else:
            row["detections"] = _stats([float(len(r["detections"])) for r in rs])
            lives = [r["live"] for r in rs]
            row["live"] = {
                "average_accuracy": _stats([v["average_accuracy"] for v in lives]),
                "average_forgetting": _stats([v["average_forgetting"] for v in lives]),
                "consistent": _all([v["consistent"] for v in lives]),
                "gap_accuracy": _stats([v["gap"].get("average_accuracy") for v in lives]),
                "gap_forgetting": _stats([v["gap"].get("average_forgetting") for v in lives]),
                "runs_close": sum(1 for v in lives if v["close"]),
                "runs_compared": sum(1 for v in lives if v["close"] is not None),
            }
            gaps = (row["live"]["gap_accuracy"]["mean"], row["live"]["gap_forgetting"]["mean"])
            row["live"]["close"] = None if None in gaps else all(abs(g) <= LIVE_TOLERANCE for g in gaps)
            reference = groups.get((scenario, strategy, "avalanche"))
            if reference:
                row["fidelity"] = _fidelity(rs, reference, mode)
        rows.append(row)
    return rows


def _all(flags: list[bool | None]) -> bool | None:
    known = [f for f in flags if f is not None]
    return all(known) if known else None


def _fidelity(engine: list[dict[str, Any]], avalanche: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Engine minus Avalanche, final average accuracy: difference of means, and its paired-by-seed spread."""
    by_seed = {r["seed"]: r["average_accuracy"] for r in avalanche}
    diffs = [r["average_accuracy"] - by_seed[r["seed"]] for r in engine if r["seed"] in by_seed]
    mean_diff = statistics.fmean(diffs) if diffs else None
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    tolerance = FIDELITY_TOLERANCE[mode]
    return {
        "avalanche_accuracy": _stats([r["average_accuracy"] for r in avalanche]),
        "avalanche_forgetting": _stats([r["average_forgetting"] for r in avalanche]),
        "difference": mean_diff,
        "difference_se": se,
        "tolerance": tolerance,
        "within": None if mean_diff is None else abs(mean_diff) <= tolerance,
    }


def _rounded(value: Any, digits: int = 5) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _dumps(results: dict[str, Any]) -> str:
    """The results as JSON, floats to 5 decimals, one run per line (small, and diffs stay readable).

    >>> print(_dumps({"wall_seconds": 1.234567891, "runs": [{"a": 0.1}, {"a": 0.2}]}))
    {"wall_seconds": 1.23457, "runs": [
    {"a": 0.1},
    {"a": 0.2}
    ]}
    """
    head = {k: _rounded(v) for k, v in results.items() if k != "runs"}
    runs = ",\n".join(json.dumps(_rounded(r)) for r in results.get("runs", []))
    return json.dumps({**head, "runs": []})[:-3] + "[\n" + runs + "\n]}"


def environment() -> dict[str, Any]:
    """Versions and machine, for the JSON file."""
    import platform
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("stream-learner", "torch", "avalanche-lib", "river", "scikit-learn", "mnist1d", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(), "versions": versions}


def run_suite(jobs: list[Job], out: str, workers: int = 1, on_done: Callable[[int, Job], None] | None = None, readme: str | None = None, command: str = "") -> dict[str, Any]:
    """Run ``jobs`` and write ``forgetting.json``, ``forgetting.md`` and the PNG figures to ``out``."""
    from benchmarks import report

    started = time.perf_counter()
    runs = execute(jobs, workers, on_done)
    wall = time.perf_counter() - started
    results: dict[str, Any] = {
        "format": 1,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": wall,
        "workers": workers,
        "settings": {
            "detector": DETECTOR,
            "new_label_gap": NEW_LABEL_GAP,
            "live_tolerance": LIVE_TOLERANCE,
            "fidelity_tolerance": FIDELITY_TOLERANCE,
            "params": {j.strategy: j.params for j in jobs},
        },
        "environment": environment(),
        "summary": aggregate(runs),
        "runs": runs,
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "forgetting.json"), "w") as f:
        f.write(_dumps(results))
    markdown = report.markdown(results)
    with open(os.path.join(out, "forgetting.md"), "w") as f:
        f.write(markdown)
    results["figures"] = report.figures(results, out)
    if readme:
        report.update_readme(readme, markdown, results["figures"], out)
    return results


# -- command line -----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``stream-learner bench forgetting``."""
    parser.add_argument(
        "--scenarios",
        default=None,
        metavar="A,B",
        help="comma-separated scenarios, or all (default: every one but the default learner's on permuted-digits and split-mnist1d): split-digits, split-digits-task, "
        "permuted-digits, split-mnist1d (the fixed-head MLP); split-digits-mlp, split-digits-mlp-scaled, permuted-digits-mlp, permuted-digits-mlp-scaled, "
        "split-mnist1d-mlp, split-mnist1d-mlp-scaled (the default learner torch:mlp, raw or standardised inputs); sea, agrawal, hyperplane, rbf",
    )
    parser.add_argument("--strategies", default=None, metavar="A,B", help="comma-separated registered strategies (default: every one supporting each scenario's learner family; avalanche means avalanche:...MASPlugin)")
    parser.add_argument("--seeds", default=3, type=int, metavar="N", help="seeds 0..N-1 for every run (default: %(default)s)")
    parser.add_argument("--boundaries", default=",".join(MODES), metavar="oracle,drift", help="oracle (events carry their task), drift (the detector marks concepts), or both (default)")
    parser.add_argument("--no-fidelity", action="store_true", help="skip the Avalanche fidelity column")
    parser.add_argument("--max-per-task", default=0, type=int, metavar="N", help="at most N training events per task, for quick runs (default: all)")
    parser.add_argument("--jobs", default=1, type=int, metavar="N", help="worker processes (default: %(default)s)")
    parser.add_argument("--out", default="out/forgetting", metavar="DIR", help="forgetting.json, forgetting.md and PNG figures go here (default: %(default)s)")
    parser.add_argument("--readme", default=None, metavar="PATH", help="also rewrite the results section of this Markdown file (benchmarks/README.md)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout: where the files are, the wall time and the summary")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the suite as the options ask, with a progress bar on a terminal."""
    from stream_learner.app.progress import Progress
    from stream_learner.errors import ConfigError

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {args.jobs}")
    jobs = plan(_split(args.scenarios), _split(args.strategies), args.seeds, tuple(_split(args.boundaries)), not args.no_fidelity, args.max_per_task)
    done: list[str] = []
    started = time.perf_counter()

    def render() -> str:
        n, total = len(done), len(jobs)
        filled = int(30 * n / total)
        last = done[-1] if done else "starting"
        return f"  [{'#' * filled}{'.' * (30 - filled)}] {n}/{total} runs  {time.perf_counter() - started:,.0f}s  {last}"

    command = "stream-learner bench forgetting " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["bench", "forgetting"] else ""
    with Progress(render, enabled=not args.json) as progress:
        results = run_suite(jobs, args.out, args.jobs, lambda i, job: done.append(job.label), args.readme, command)
        if not args.json:
            progress.println(f"{len(jobs)} runs in {results['wall_seconds']:,.0f}s with {args.jobs} worker(s)")
    if args.json:
        print(json.dumps({"out": args.out, "files": ["forgetting.json", "forgetting.md", *results["figures"]], "wall_seconds": results["wall_seconds"], "summary": results["summary"]}))
    else:
        print(open(os.path.join(args.out, "forgetting.md")).read())
        print(f"results in {args.out}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.forgetting``: the same options as ``stream-learner bench forgetting``."""
    from stream_learner.app.cli import main as cli_main

    return cli_main(["bench", "forgetting", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
