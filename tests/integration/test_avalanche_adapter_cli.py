"""The generic Avalanche adapter through the CLI: configuration errors stop the start, a plugin failing on data never stops the run.

The JSONL source's records are decoded and grouped per key, then learned in
Bytewax's ``op.stateful_batch("learn")``: ``_LearnerLogic.on_batch`` calls
``KeyedLearner.process`` with a list of events, whose learner step is the
guarded one (:mod:`stream_learner.step.guarded`): a failing ``learn`` is
rolled back, the rest of its micro-batch dropped, and its event becomes a
``model_error`` dead letter saying so; a failing boundary is rolled back,
logged and counted in ``failures``.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "stream_learner.app.cli"]
EVENTS = 200
POISONED = 42
PLUGINS = '''
from avalanche.training.plugins import SupervisedPlugin


class Poisoned(SupervisedPlugin):
    """Raises on a micro-batch holding a feature above 1000."""

    def before_backward(self, strategy, **kwargs):
        if float(strategy.mb_x.abs().max()) > 1000:
            raise RuntimeError("poisoned micro-batch")


class BrokenBoundary(SupervisedPlugin):
    """Raises at every boundary."""

    def after_training_exp(self, strategy, **kwargs):
        raise RuntimeError("cannot consolidate")
'''


def _stream(path: Path, poisoned: int | None) -> Path:
    """Two concepts of two new classes each (a class-incremental stream), event ``poisoned`` with an outlier."""
    rng = random.Random(0)
    with path.open("w") as f:
        for i in range(EVENTS):
            label = 2 * (i // (EVENTS // 2)) + i % 2
            features = {f"f{k}": rng.gauss(0, 0.3) + (2.0 if k == label else 0.0) for k in range(4)}
            if i == poisoned:
                features["f0"] = 5000.0
            f.write(json.dumps({"id": f"e{i}", "features": features, "label": label}) + "\n")
    return path


def _run(tmp_path: Path, *args: str, poisoned: int | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_plugins.py").write_text(PLUGINS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    cmd = [
        *CLI, "run", "--source", f"file:{_stream(tmp_path / 'events.jsonl', poisoned)}", "--model", "torch:mlp",
        "--model-params", '{"scale": false, "batch_size": 5, "hidden": [8]}', "--new-label-gap", "20", "--out", str(tmp_path / "out"), "--json", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_bad_plugin_parameter_is_one_line_and_exit_2_before_any_event(tmp_path: Path) -> None:
    result = _run(tmp_path, "--strategy", "avalanche:avalanche.training.plugins.MASPlugin", "--strategy-param", "bogus=1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stream-learner: error: bad parameters for Avalanche plugin 'avalanche.training.plugins.MASPlugin': "
        "MASPlugin.__init__() got an unexpected keyword argument 'bogus'"
    ]
    assert not _lines(tmp_path / "out" / "predictions.jsonl") and not _lines(tmp_path / "out" / "dead_letters.jsonl")


def test_a_plugin_that_cannot_work_per_micro_batch_is_refused_with_its_reason(tmp_path: Path) -> None:
    result = _run(tmp_path, "--strategy", "avalanche:avalanche.training.plugins.GDumbPlugin")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stream-learner: error: Avalanche plugin 'avalanche.training.plugins.GDumbPlugin' cannot run per micro-batch: "
        "it works only in dataset-adaptation hooks (it retrains on its class-balanced memory in place of each whole experience): it would do nothing; "
        "--strategy gdumb is GDumb per micro-batch"
    ]


def test_a_plugin_failing_on_one_micro_batch_loses_that_micro_batch_only_and_the_run_goes_on(tmp_path: Path) -> None:
    result = _run(tmp_path, "--strategy", "avalanche:test_plugins.Poisoned", poisoned=POISONED)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    dead = _lines(tmp_path / "out" / "dead_letters.jsonl")
    assert summary["predictions"] + summary["dead_letters"] == EVENTS and summary["dead_letters"] == len(dead)
    assert len(dead) == 1 and dead[0]["reason"] == "model_error"  # the event whose learn ran the poisoned micro-batch, no later one
    assert POISONED <= dead[0]["origin"]["offset"] < POISONED + 5
    assert re.fullmatch(r"model error: RuntimeError: poisoned micro-batch \(with its micro-batch's [0-4] earlier examples, not learned\)", dead[0]["error"])
    later = [p for p in _lines(tmp_path / "out" / "predictions.jsonl") if int(p["id"][1:]) >= EVENTS - 50]
    assert len(later) == 50 and sum(p["prediction"] == 2 + int(p["id"][1:]) % 2 for p in later) >= 40  # the learner went on learning


def test_a_plugin_failing_at_a_boundary_is_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    result = _run(tmp_path, "--strategy", "avalanche:test_plugins.BrokenBoundary")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["events"] == summary["predictions"] == EVENTS and summary["dead_letters"] == 0
    assert summary["failures"] >= 1 and "cannot consolidate" in result.stderr
