"""Writes the format-1 snapshots of this folder with the release that wrote format 1, and what that release predicted next.

Format 1 is a pickled ``KeyedLearner`` (the releases up to commit 655571e).
Run it with that release's code first on the path, from a worktree of it::

    git worktree add /tmp/format1 655571e
    PYTHONPATH=/tmp/format1 .venv/bin/python tests/data/format1/make_format1_snapshots.py

For each case it writes ``NAME.snap`` (the signed envelope, signing key
:data:`SIGNING_KEY`) and ``NAME.json``: the engine configuration, the events
that follow the snapshot, and the outputs the old release gave for them
after restoring it (predictions, metrics and drift records, dead letters).
``tests/unit/test_snapshot_migration.py`` restores each snapshot with the
current code and checks that it gives the same outputs.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from stream_learner.delayed import LabelRecord
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import seal

SIGNING_KEY = b"format-1-test-key"
HERE = Path(__file__).parent


def _events(n: int, start: int, seed: int, labels: Any, task: Any = None, unlabelled_every: int = 0) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        x = {"a": round(rng.random(), 6), "b": round(rng.random(), 6)}
        label = labels(i, x)
        if unlabelled_every and i % unlabelled_every == 0:
            label = None
        out.append(Event(f"e{i}", "k", x, label, task(i) if task else None, 0, i))
    return out


def _with_late_labels(events: list[Event], labels: Any) -> list[Any]:
    """The events, each unlabelled one's label following five events later (and one label arriving before its event)."""
    out: list[Any] = []
    late: dict[int, LabelRecord] = {}
    for j, event in enumerate(events):
        i = int(event.id[1:])
        if event.label is None and i % 7 == 0:  # early: the label before its event
            out.append(LabelRecord(event.id, "k", labels(i, event.features)))
        elif event.label is None:
            late[j + 5] = LabelRecord(event.id, "k", labels(i, event.features))
        out.append(event)
        if j in late:
            out.append(late.pop(j))
    return out


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _json_outputs(step: KeyedLearner, batches: list[list[Any]], now: float) -> dict[str, Any]:
    predictions, metrics, dead = [], [], []
    for batch in batches:
        out = step.process(batch, now=now)
        for p in out.predictions:
            proba = p.get("proba")
            predictions.append([p["id"], p["prediction"], sorted(proba.items(), key=str) if proba else None, p["model_version"], p["concept"]])
        metrics.extend({k: v for k, v in m.items() if k != "ts"} for m in out.metrics)
        dead.extend([d["error"], d["raw"] if isinstance(d["raw"], str) else None] for d in out.dead_letters)
    final = step.finish(now=now)
    metrics.extend({k: v for k, v in m.items() if k != "ts"} for m in final.metrics)
    return {"predictions": predictions, "metrics": metrics, "dead_letters": dead}


def _item_json(item: Any) -> dict[str, Any]:
    if isinstance(item, LabelRecord):
        return {"label_for": item.id, "label": item.label}
    return {"id": item.id, "features": item.features, "label": item.label, "task": item.task, "offset": item.offset}


def _write(name: str, config: dict[str, Any], step: KeyedLearner, later: list[list[Any]], restore_config: dict[str, Any] | None = None) -> None:
    snapshot = step.snapshot()
    blob = seal(
        snapshot.payload,
        signing_key=SIGNING_KEY,
        key=snapshot.key,
        learner_kind=snapshot.learner_kind,
        strategy=snapshot.strategy,
        events_seen=snapshot.events_seen,
        source_offsets=snapshot.source_offsets,
        created_at=0.0,
    )
    (HERE / f"{name}.snap").write_bytes(blob)
    restore_config = restore_config or config
    restored = KeyedLearner.restore(snapshot.payload, _config(restore_config))
    expected = _json_outputs(restored, later, now=2.0e9)
    document = {
        "signing_key": SIGNING_KEY.decode(),
        "config": restore_config,
        "later": [[_item_json(item) for item in batch] for batch in later],
        "expected": expected,
    }
    (HERE / f"{name}.json").write_text(json.dumps(document, separators=(",", ":")) + "\n")
    print(name, len(blob), "bytes,", len(expected["predictions"]), "predictions after it", file=sys.stderr)


def _config(document: dict[str, Any]) -> EngineConfig:
    return EngineConfig(**{**document, "learner": LearnerSpec(**document["learner"])})


def logreg_with_delayed_labels() -> None:
    labels = lambda i, x: x["a"] > x["b"] if i < 500 else x["a"] > 0.7  # noqa: E731
    config = {
        "learner": {"model": "logreg", "params": {}, "seed": 42, "strategy": None, "strategy_params": {}},
        "detector": "adwin", "label_window": 40, "label_window_seconds": 1.0e9, "metrics_every": 150, "forgetting_every": 200,
        "snapshot_seconds": 0.0,
    }  # fmt: skip
    step = KeyedLearner("k", _config(config))
    items = _with_late_labels(_events(900, 0, seed=1, labels=labels, unlabelled_every=4), labels)
    cut = next(j for j, item in enumerate(items) if isinstance(item, Event) and item.offset == 600)
    for batch in _batches(items[:cut], 50):
        step.process(batch, now=1.0e9)
    _write("logreg_delayed_labels", config, step, _batches(items[cut:], 50))


def hoeffding_tree_with_tasks_and_new_labels() -> None:
    labels = lambda i, x: (int(x["a"] > 0.5) if i < 300 else 2 + int(x["b"] > 0.5)) if i < 600 else int(x["a"] > 0.5)  # noqa: E731
    task = lambda i: "t1" if 300 <= i < 600 else "t0"  # noqa: E731
    config = {
        "learner": {"model": "hoeffding_tree", "params": {"grace_period": 50}, "seed": 42, "strategy": "reset", "strategy_params": {}},
        "detector": "kswin", "new_label_gap": 40, "metrics_every": 100, "forgetting_every": 150, "forgetting_sample": 30, "snapshot_seconds": 0.0,
    }  # fmt: skip
    step = KeyedLearner("k", _config(config))
    events = _events(800, 0, seed=2, labels=labels, task=task)
    events[420] = Event("bad", "k", {"a": "text", "b": 0.1}, 2, "t1", 0, 420)  # a schema dead letter
    for batch in _batches(events[:500], 50):
        step.process(batch, now=1.0e9)
    _write("hoeffding_tree_tasks", config, step, _batches(events[500:], 50))


def torch_mlp_with_ewc() -> None:
    labels = lambda i, x: int(x["a"] > x["b"]) if i < 200 else int(x["a"] + x["b"] > 1.0)  # noqa: E731
    task = lambda i: 0 if i < 200 else 1  # noqa: E731
    config = {
        "learner": {"model": "torch:mlp", "params": {"hidden": [8], "batch_size": 8}, "seed": 42, "strategy": "ewc", "strategy_params": {}},
        "detector": "adwin", "metrics_every": 100, "forgetting_every": 100, "forgetting_sample": 20, "snapshot_seconds": 0.0,
    }  # fmt: skip
    step = KeyedLearner("k", _config(config))
    events = _events(400, 0, seed=3, labels=labels, task=task)
    for batch in _batches(events[:300], 25):
        step.process(batch, now=1.0e9)
    _write("torch_mlp_ewc", config, step, _batches(events[300:], 25))


def earlier_layouts() -> None:
    """A learner in the layouts older releases pickled, which the last format-1 release still read.

    Its metrics counted as they came (other field names, a running count of
    the window's wrong ones); its label window had no ``labelled`` ids or
    ``received`` count; it had no schema, no failure count, no new-label
    watch and a drift monitor without its parameters. It is restored under
    a new-label gap it was not taken with.
    """
    labels = lambda i, x: int(x["a"] > x["b"]) if i < 300 else int(x["a"] > 0.5) + (2 if i >= 450 else 0)  # noqa: E731
    config = {
        "learner": {"model": "hoeffding_tree", "params": {}, "seed": 42, "strategy": None, "strategy_params": {}},
        "detector": "adwin", "label_window": 20, "label_window_seconds": 1.0e9, "metrics_every": 100, "forgetting_every": 100,
        "forgetting_sample": 25, "snapshot_seconds": 0.0,
    }  # fmt: skip
    step = KeyedLearner("k", _config(config))
    items = _with_late_labels(_events(600, 0, seed=4, labels=labels, unlabelled_every=6), labels)
    cut = next(j for j, item in enumerate(items) if isinstance(item, Event) and item.offset == 400)
    for batch in _batches(items[:cut], 40):
        step.process(batch, now=1.0e9)
    metrics = step.metrics
    metrics._count()
    ring = metrics._ring
    metrics.__dict__ = {
        "task": metrics.task, "window": metrics.window, "labelled": metrics._labelled, "correct": metrics._correct,
        "abs_error": metrics._abs_error, "sq_error": metrics._sq_error, "_classification": True, "_ring": ring, "_at": metrics._at,
        "_wrong_in_window": ring[: min(metrics._labelled, metrics.window)].count(1),
    }  # fmt: skip
    window = step.pending.__dict__
    del window["labelled"], window["received"]
    del step.schema, step.failures, step.new_labels, step.monitor.params
    _write("earlier_layouts", config, step, _batches(items[cut:], 40), restore_config={**config, "new_label_gap": 30})


if __name__ == "__main__":
    logreg_with_delayed_labels()
    hoeffding_tree_with_tasks_and_new_labels()
    torch_mlp_with_ewc()
    earlier_layouts()
