"""The ``stream-learner`` command as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.local_store import LocalSnapshotStore

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
    assert LocalSnapshotStore(tmp_path / "o" / "snapshots").versions("default")


def test_human_run_prints_metrics_lines_and_a_summary(tmp_path: Path) -> None:
    result = _cli("run", "--source", "river:phishing", "--max-events", "600", "--metrics-every", "200", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # console lines, the summary included, go to stderr: stdout is for predictions or the JSON summary
    assert "done: 600 events (600 labelled)" in result.stderr
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
        # figures that would be invented: a sample, a window or a period of 0 has nothing to report
        (["run", "--forgetting-sample", "-1"], "argument --forgetting-sample: expected a non-negative integer, got -1"),
        (["run", "--window", "0"], "argument --window: expected a positive integer, got 0"),
        (["run", "--metrics-every", "0"], "argument --metrics-every: expected a positive integer, got 0"),
        (["run", "--workers", "0"], "argument --workers: expected a positive integer, got 0"),
        (["run", "--model", "torch:mlp", "--model-params", '{"hidden": "x"}'], "bad parameters for model 'torch:mlp': the network cannot be built"),
        (["run", "--config", "missing.toml"], "cannot read config file missing.toml: No such file or directory"),
        (["run", "--max-dead-letter-ratio", "2"], "argument --max-dead-letter-ratio: expected a fraction from 0 to 1, got 2"),
        (["run", "--source", "kafka", "--predictions", "-"], "--predictions is for runs without Kafka"),
        # a flag the run would not read: never ignored silently
        (["run", "--recovery-dir", "state"], "--recovery-dir applies to --source kafka only (a file or synthetic run continues from its snapshots with --resume)"),
        (["run", "--source", "file:a-file", "--input-topic", "t", "--stop-when-idle", "5", "--process-id", "1"], "--input-topic, --stop-when-idle and --process-id apply to --source kafka only"),
        (["run", "--source", "kafka", "--out", "o", "--rate", "100"], "--out and --rate apply to file, dataset and synthetic sources only"),
        (["bench", "forgetting", "--out", "/proc/nope"], "cannot write to --out /proc/nope: No such file or directory"),
        (["strategies", "nope"], "unknown strategy 'nope'; installed strategies: "),
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


def _three_classes(path: Path, n: int) -> None:
    """``n`` clean events, labels "cat", "dog" and "eel", each class around its own ``a``."""
    centre = {"cat": 0.0, "dog": 3.0, "eel": 6.0}
    labels = [("cat", "dog", "eel")[i % 3] for i in range(n)]
    path.write_text("".join(json.dumps({"features": {"a": centre[y] + (i % 7) / 7, "b": i % 2}, "label": y}) + "\n" for i, y in enumerate(labels)))


def test_the_default_model_learns_string_labels_of_three_classes(tmp_path: Path) -> None:
    """The old default (logreg, binary) made every event of this file a dead letter."""
    _three_classes(tmp_path / "three.jsonl", 600)
    result = _cli("run", "--source", "file:three.jsonl", "--json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["predictions"], summary["dead_letters"]) == (600, 0)
    assert summary["accuracy"] > 0.8
    assert "dead letters" not in result.stderr


def test_a_run_of_mostly_dead_letters_says_so_and_fails_when_asked(tmp_path: Path) -> None:
    _three_classes(tmp_path / "three.jsonl", 300)
    common = ("run", "--source", "file:three.jsonl", "--model", "logreg", "--quiet")
    told = _cli(*common, "--out", "a", cwd=tmp_path)
    assert told.returncode == 0, told.stderr
    warning = [line for line in told.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "300 of 300 events (100%) ended as dead letters" in warning[0], told.stderr
    assert "model_error 300 (e.g. model error: " in warning[0] and warning[0].endswith("see a/dead_letters.jsonl")
    failed = _cli(*common, "--out", "b", "--max-dead-letter-ratio", "0.5", cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == "stream-learner: 100% of the events ended as dead letters, more than --max-dead-letter-ratio 0.5"
    assert _cli(*common, "--out", "c", "--max-dead-letter-ratio", "1", cwd=tmp_path).returncode == 0


def test_a_task_switch_is_one_drift_line(tmp_path: Path) -> None:
    """The detector confirms a task switch some events later: its record stays in metrics.jsonl, but the console shows the boundary once."""
    lines = []
    for task in range(3):  # the label's rule flips with each task, so the error detector fires after each switch too
        for i in range(1000):
            x = (i * 7919 % 1000) / 1000
            lines.append(json.dumps({"features": {"x": x}, "label": int((x > 0.5) == (task % 2 == 0)), "task": task}))
    (tmp_path / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    result = _cli("run", "--source", "file:tasks.jsonl", "--model", "logreg", "--metrics-every", "100000", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    drift_lines = [line for line in result.stderr.splitlines() if line.startswith("drift ")]
    assert drift_lines == ["drift    key=default  at event 1000 (task) -> concept 1", "drift    key=default  at event 2000 (task) -> concept 2"], result.stderr
    records = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["type"] == "drift" and r["detector"] == "adwin" for r in records)  # the detector's drifts are still published


def test_version() -> None:
    from stream_learner import __version__

    result = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"stream-learner {__version__}\n")


def test_events_from_stdin_and_predictions_to_stdout(tmp_path: Path) -> None:
    """stdout carries the predictions only; the metrics lines and the summary go to stderr."""
    _three_classes(tmp_path / "three.jsonl", 90)
    with (tmp_path / "three.jsonl").open("rb") as stdin:
        result = subprocess.run([CLI, "run", "--source", "file:-", "--predictions", "-", "--metrics-every", "30", "--out", "o"], stdin=stdin, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    predictions = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(predictions) == 90 and {p["prediction"] for p in predictions[1:]} <= {"cat", "dog", "eel"}
    assert "done: 90 events (90 labelled)" in result.stderr and result.stderr.count("metrics  key=default") >= 3
    assert not (tmp_path / "o" / "predictions.jsonl").exists()


def test_strategies_name_shows_its_parameters_and_defaults(tmp_path: Path) -> None:
    result = _cli("strategies", "replay", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("replay: ")
    table = lines[lines.index(next(line for line in lines if line.startswith("PARAMETER"))) + 1 :]
    rows = {line.split()[0]: line.split()[1] for line in table if line.strip() and not line.startswith("set one")}
    import inspect

    from strategies.registry import load_class

    expected = {name: repr(p.default) for name, p in inspect.signature(load_class("replay")).parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD}
    assert rows == expected and rows


def test_run_options_come_from_the_config_file_and_the_environment(tmp_path: Path) -> None:
    """[run] in the file, overridden by STREAM_LEARNER_RUN__*, overridden by a flag."""
    (tmp_path / "settings.toml").write_text('[run]\nsource = "synthetic:sea"\nmax_events = 300\nmodel = "logreg"\nout = "from-file"\njson_summary = true\n')
    env = {**os.environ, "STREAM_LEARNER_RUN__MAX_EVENTS": "200", "STREAM_LEARNER_RUN__MODEL": "naive_bayes"}
    result = subprocess.run([CLI, "run", "--config", "settings.toml", "--max-events", "100", "--print-settings"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)["run"]
    assert (run["max_events"], run["model"], run["out"], run["json_summary"]) == (100, "naive_bayes", "from-file", True)
    ran = subprocess.run([CLI, "run", "--config", "settings.toml"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["events"] == 200 and (tmp_path / "from-file" / "predictions.jsonl").exists()


def test_feature_drift_starts_a_concept_without_labels_and_says_so_on_the_console(tmp_path: Path) -> None:
    """Feature x moves from [0, 1) to [5, 6) at event 600; no event has a label."""
    events = [{"features": {"x": (i * 37 % 100) / 100 + (5 if i >= 600 else 0), "y": (i * 11 % 100) / 100}} for i in range(1200)]
    (tmp_path / "shift.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    result = _cli("run", "--source", "file:shift.jsonl", "--feature-drift", '{"window": 300, "every": 100}', "--boundaries", "feature", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    feature_lines = [line for line in result.stderr.splitlines() if line.startswith("feature drift  key=default  at event ")]
    drift_lines = [line for line in result.stderr.splitlines() if line.startswith("drift ")]
    assert len(feature_lines) == 1 and ": x (psi " in feature_lines[0], result.stderr
    assert len(drift_lines) == 1 and drift_lines[0].endswith("(feature) -> concept 1")
    assert "2 concepts" in result.stderr


def test_a_kafka_run_without_a_signing_key_is_one_line_before_any_client_starts(tmp_path: Path) -> None:
    """The README's Kafka command without the key: the key is checked first (no broker listens here; none is reached)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_LEARNER_")}
    result = subprocess.run([CLI, "run", "--source", "kafka", "--bootstrap-servers", "127.0.0.1:1"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == ["stream-learner: error: snapshots need a signing key: set STREAM_LEARNER_SNAPSHOT__SIGNING_KEY (or snapshot.signing_key in the config file)"]


def test_a_run_that_does_not_resume_says_it_stacks_on_an_earlier_runs_snapshots(tmp_path: Path) -> None:
    first = _cli("run", "--model", "logreg", "--max-events", "500", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "already holds snapshots" not in first.stderr
    second = _cli("run", "--model", "hoeffding_tree", "--max-events", "500", "--quiet", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    warning = [line for line in second.stderr.splitlines() if "already holds snapshots" in line]
    assert len(warning) == 1 and "1 model key(s) (default)" in warning[0] and "--resume" in warning[0]
    listing = _cli("snapshots", "list", "--dir", "out/snapshots", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    (key,) = json.loads(listing.stdout)
    assert [version["model"] for version in key["versions"]] == ["logreg", "hoeffding_tree"]
