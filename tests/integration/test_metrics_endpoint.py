"""``/metrics`` and the page's JSON, scraped over HTTP after real runs, against the run's own summary."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_learner.app.dashboard import DashboardServer, RemoteEngine
from stream_learner.app.runner import RunOptions, run
from stream_learner.app.telemetry import MetricsServer, Telemetry
from stream_learner.engine import EngineConfig
from stream_learner.errors import ConfigError
from stream_learner.learners.base import LearnerSpec

pytestmark = pytest.mark.integration

DRIFT_SOURCE = "synthetic:sea?every=3000&concepts=3"  # hoeffding_tree + ADWIN detects both drifts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of an exposition, by sample name, parsed by prometheus-client's own parser."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(_get(url).decode()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == x for k, x in match.items()))


def _read_line(process: subprocess.Popen[str], timeout: float, stream: str = "stdout", containing: str = "") -> str:
    """The first line of a process's ``stream`` that contains ``containing``, or fail with its stderr."""
    box: list[str] = []
    pipe = getattr(process, stream)

    def read() -> None:
        for line in pipe:
            if containing in line:
                box.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        process.kill()
        pytest.fail(f"no {stream} line with {containing!r} within {timeout}s; stderr:\n{process.stderr.read()}")  # type: ignore[union-attr]
    return box[0]


def test_cli_metrics_match_the_run_summary(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_learner.app.cli", "run", "--source", DRIFT_SOURCE, "--model", "hoeffding_tree",
         "--metrics-every", "500", "--out", str(tmp_path), "--json", "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
         "--linger", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        summary = json.loads(_read_line(process, timeout=120))
        _read_line(process, timeout=30, stream="stderr", containing="more seconds")  # lingering: Ctrl-C is a clean stop now
        samples = _scrape(f"http://127.0.0.1:{port}/metrics")  # the run is over; the server lingers
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr

    assert summary["events"] == 9000 and summary["drifts"] >= 1
    [(run, one)] = samples["stream_learner_run_info"]  # what the run learns, for the page's header and Grafana
    assert one == 1.0 and run == {"source": DRIFT_SOURCE, "model": "hoeffding_tree", "strategy": "none", "detector": "adwin"}
    assert _total(samples, "stream_learner_end_time_seconds") > 0  # the source has ended: a remote page says "finished"
    assert _total(samples, "stream_learner_events_total") == summary["events"]
    assert _total(samples, "stream_learner_predictions_total", key="default") == summary["predictions"] == 9000
    assert _total(samples, "stream_learner_dead_letters_total") == summary["dead_letters"] == 0
    assert _total(samples, "stream_learner_drifts_total", key="default", detector="adwin") == summary["drifts"]
    assert _total(samples, "stream_learner_snapshots_total", key="default") == summary["snapshots"] >= 1
    assert _total(samples, "stream_learner_accuracy_ratio", key="default") == summary["accuracy"]
    window = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in window if r["type"] == "metrics"][-1]
    assert _total(samples, "stream_learner_accuracy_window_ratio", key="default") == last["accuracy_window"]
    assert _total(samples, "stream_learner_concept", key="default") == last["concept"] == summary["concepts"] - 1
    # histograms: observations, and buckets consistent with the count
    for name in ("stream_learner_step_per_event_seconds", "stream_learner_learner_batch_duration_seconds"):
        count = _total(samples, f"{name}_count", key="default")
        assert count >= 1
        assert _total(samples, f"{name}_sum", key="default") > 0
        assert _total(samples, f"{name}_bucket", key="default", le="+Inf") == count
    # bounded labels only: no sample carries an event id (the run's description is one series)
    labels = {name for values in samples.values() for lbls, _ in values for name in lbls}
    run_labels = {name for lbls, _ in samples.get("stream_learner_run_info", []) for name in lbls}
    assert labels - run_labels <= {"key", "reason", "detector", "topic", "partition", "concept", "le"}
    assert len(samples.get("stream_learner_run_info", [])) <= 1


def test_dead_letters_are_counted_by_reason_and_the_page_state_matches(tmp_path: Path) -> None:
    lines = [json.dumps({"features": {"a": i, "b": i % 3}, "label": i % 2 == 0}) for i in range(300)]
    lines[10:10] = ["{not json", '{"label": true}', '"a string"', '{"features": {"a": "x"}, "label": true}']
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    telemetry = Telemetry()
    metrics_server = MetricsServer(telemetry, 0, "127.0.0.1")
    page = DashboardServer(telemetry.state, 0, metrics=telemetry.exposition)
    try:
        summary = run(RunOptions(source=f"file:{path}", out=tmp_path / "out", progress=False, console=False, telemetry=telemetry))
        samples = _scrape(f"http://127.0.0.1:{metrics_server.port}/metrics")
        state = json.loads(_get(f"{page.url}api/state"))
        same = _get(f"{page.url}metrics").decode()
    finally:
        metrics_server.close()
        page.close()

    dead = [orjson.loads(x) for x in (tmp_path / "out" / "dead_letters.jsonl").read_bytes().splitlines()]
    expected: dict[str, int] = {}
    for d in dead:
        expected[d["reason"]] = expected.get(d["reason"], 0) + 1
    assert expected == {"invalid_json": 1, "invalid_event": 1, "not_an_object": 1, "schema": 1}
    assert {labels["reason"]: v for labels, v in samples["stream_learner_dead_letters_total"]} == expected
    assert _total(samples, "stream_learner_events_total") == summary["events"] == 304
    assert _total(samples, "stream_learner_predictions_total") == summary["predictions"] == 300
    assert "stream_learner_dead_letters_total" in same

    assert state["finished"]["events"] == summary["events"]
    assert state["totals"] == {"events": 304, "predictions": 300, "dead_letters": 4}
    assert state["dead_letters"]["by_reason"] == expected
    assert len(state["dead_letters"]["recent"]) == 4
    points = state["keys"]["default"]["points"]
    assert points and points[-1][0] == 300 and points[-1][1] == summary["accuracy"]


def test_the_dashboard_command_rebuilds_the_page_from_a_remote_engines_metrics(tmp_path: Path) -> None:
    telemetry = Telemetry()
    server = MetricsServer(telemetry, 0, "127.0.0.1")
    remote = RemoteEngine(f"http://127.0.0.1:{server.port}")
    try:
        remote.poll()
        assert remote.state()["keys"] == {} and remote.state()["error"] is None
        engine = EngineConfig(learner=LearnerSpec("hoeffding_tree"))
        summary = run(RunOptions(source=DRIFT_SOURCE, engine=engine, out=tmp_path, progress=False, console=False, telemetry=telemetry))
        remote.poll()
    finally:
        server.close()
    state = remote.state()
    key = state["keys"]["default"]
    assert state["totals"]["events"] == summary["events"] == 9000
    assert len(key["drifts"]) == summary["drifts"] >= 1
    assert key["points"][-1][:2] == [9000, summary["accuracy"]]
    remote.poll()  # the engine is gone: the page says so instead of failing
    assert "cannot read" in remote.state()["error"]


@pytest.mark.parametrize("flag", ["--metrics-port", "--dashboard"])
def test_a_taken_port_is_one_clear_line(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        extra = ["--metrics-host", "127.0.0.1"] if flag == "--metrics-port" else []
        result = subprocess.run(
            [sys.executable, "-m", "stream_learner.app.cli", "run", "--max-events", "10", "--out", str(tmp_path), flag, str(port), *extra],
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("stream-learner: error:") and str(port) in lines[0] and "in use" in lines[0], lines[0]


def test_servers_refuse_a_taken_port_in_process() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="in use"):
            DashboardServer(lambda: {}, port)
        with pytest.raises(ConfigError, match=f"--metrics-port {port}"):
            MetricsServer(Telemetry(), port, "127.0.0.1")


