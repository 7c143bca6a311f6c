"""The ``stream-learner`` command as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("stream-learner"))
SUMMARY_KEYS = {"events", "labelled", "predictions", "dead_letters", "accuracy", "drifts", "concepts", "seconds", "events_per_second"}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_json_summary_is_one_line_on_stdout(tmp_path: Path) -> None:
    result = _cli("run", "--source", "synthetic:agrawal?every=1000&concepts=3", "--model", "hoeffding_tree", "--json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["events"] == summary["predictions"] == 3000 and summary["dead_letters"] == 0
    assert 0.5 < summary["accuracy"] <= 1.0 and summary["events_per_second"] > 0
    assert set(summary["forgetting"]) == {"average_accuracy", "average_mae", "average_forgetting", "bwt", "concepts"}
    assert summary["forgetting"]["average_mae"] is None  # a classifier's
    assert summary["forgetting"]["concepts"] == summary["concepts"] >= 2
    assert summary["forgetting"]["average_forgetting"] is not None
    assert (tmp_path / "o" / "predictions.jsonl").exists()
    assert list((tmp_path / "o" / "snapshots" / "stream-learner" / "default").glob("v*.snap"))


def test_human_run_prints_metrics_lines_and_a_summary(tmp_path: Path) -> None:
    result = _cli("run", "--source", "river:phishing", "--max-events", "600", "--metrics-every", "200", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "done: 600 events (600 labelled)" in result.stdout
    assert result.stderr.count("metrics  key=default") >= 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--max-events", "lots"], "argument --max-events: expected an integer, got 'lots'"),
        (["run", "--drift-detector", "magic"], "argument --drift-detector: invalid choice: 'magic'"),
        (["run", "--model", "nope"], "unknown model 'nope'"),
        (["run", "--model-params", "{oops"], "model parameters are not valid JSON"),
        (["run", "--source", "file:/does/not/exist.jsonl"], "cannot read /does/not/exist.jsonl: No such file or directory"),
        (["run", "--source", "synthetic:sea?every=ten"], "option every must be an integer, not 'ten'"),
        (["run", "--source", "river:nope"], "unknown river dataset 'nope'"),
        (["run", "--source", "carrier-pigeon"], "unknown source 'carrier-pigeon'"),
        (["run", "--snapshot-seconds", "-1"], "argument --snapshot-seconds: expected a non-negative number, got -1"),
        (["run", "--new-label-gap", "-5"], "argument --new-label-gap: expected a non-negative integer, got -5"),
        (["run", "--model", "linreg", "--new-label-gap", "100"], "new-label boundaries need a classification model"),
        (["fly"], "invalid choice: 'fly'"),
        (["run", "--out", "a-file/out"], "cannot write to the output folder a-file/out: Not a directory"),
    ],
)
def test_wrong_arguments_give_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_new_label_gap_marks_each_task_of_a_class_incremental_file(tmp_path: Path) -> None:
    lines = []
    for task in range(3):  # classes 2k and 2k+1; the model, predicting the last label, is as wrong before a change as after it
        for i in range(300):
            y = 2 * task + i % 2
            lines.append(json.dumps({"features": {"x": float(y)}, "label": y}))
    (tmp_path / "stream.jsonl").write_text("\n".join(lines) + "\n")
    common = ("run", "--source", "file:stream.jsonl", "--model", "river.dummy.NoChangeClassifier", "--json", "--quiet")
    without = _cli(*common, "--out", "a", cwd=tmp_path)
    marked = _cli(*common, "--new-label-gap", "100", "--out", "b", cwd=tmp_path)
    assert without.returncode == marked.returncode == 0, without.stderr + marked.stderr
    assert json.loads(without.stdout)["concepts"] == 1
    assert json.loads(marked.stdout)["concepts"] == 3
    drifts = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [(d["detector"], d["at_event"]) for d in drifts if d["type"] == "drift"] == [("new_label", 300), ("new_label", 600)]


def test_an_output_file_that_cannot_be_written_stops_the_run_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "out" / "predictions.jsonl").mkdir(parents=True)  # a folder where the predictions file goes
    result = _cli("run", "--max-events", "100", "--out", "out", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["stream-learner: error: cannot write out/predictions.jsonl: Is a directory"], result.stderr


def test_a_sink_error_inside_the_dataflow_ends_the_run_with_the_sinks_own_error(tmp_path: Path) -> None:
    """Predictions the JSONL writer cannot encode (bytes labels) fail in its process, mid-run: the run raises that SinkError (the CLI's one line)."""
    from connectors.memory import MemorySource
    from stream_learner.app.runner import RunOptions, run
    from stream_learner.engine import EngineConfig
    from stream_learner.errors import SinkError
    from stream_learner.learners.base import LearnerSpec

    pairs = [({"x": float(i % 7)}, b"yes" if i % 2 else b"no") for i in range(3000)]
    options = RunOptions(engine=EngineConfig(learner=LearnerSpec("naive_bayes")), out=tmp_path / "out", progress=False, console=False)
    with pytest.raises(SinkError, match="cannot encode a record for .*predictions.jsonl"):
        run(options, source=MemorySource(pairs))


@pytest.mark.parametrize("output", ["predictions.jsonl", "metrics.jsonl"])  # written by a child process; in the worker
def test_a_sink_that_fails_mid_run_is_one_line_on_stderr_and_the_whole_trace_with_verbose(tmp_path: Path, output: str) -> None:
    """The file opens, then every write fails (/dev/full): the error surfaces inside the dataflow, where Bytewax's Rust code panics."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / output).symlink_to("/dev/full")
    env = {**os.environ, "RUST_BACKTRACE": "1", "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": "cli-test-key"}  # a backtrace to hide
    command = [CLI, "run", "--max-events", "3000", "--metrics-every", "100", "--quiet", "--out", "out"]
    quiet = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert (quiet.returncode, quiet.stdout, len(quiet.stderr.splitlines())) == (2, "", 1), quiet.stderr
    line = quiet.stderr.strip()
    assert line.startswith("stream-learner: error: cannot write ") and line.endswith(f"out/{output}: No space left on device")
    verbose = subprocess.run([CLI, "--verbose", *command[1:]], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert verbose.returncode == 2 and verbose.stderr.splitlines()[-1] == line
    assert "panicked at" in verbose.stderr and "stack backtrace" in verbose.stderr and "Traceback" in verbose.stderr
