"""``stream-learner bench forgetting`` as users run it, on a tiny setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("stream-learner"))
PNG = b"\x89PNG\r\n\x1a\n"


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "bench", "forgetting", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_smoke_run_writes_json_markdown_and_figures_with_sane_numbers(tmp_path: Path) -> None:
    result = _bench(
        "--scenarios", "split-digits", "--strategies", "naive,cumulative", "--seeds", "1", "--max-per-task", "80",
        "--out", "res", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1  # --json: one object on stdout, no progress bar
    printed = json.loads(lines[0])
    out = tmp_path / "res"
    assert set(printed["files"]) == {"forgetting.json", "forgetting.md", "heatmaps-split-digits.png", "stream-split-digits.png", "comparison.png"}
    for name in printed["files"]:
        assert (out / name).stat().st_size > 0
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == PNG
    results = json.loads((out / "forgetting.json").read_text())
    assert {(r["strategy"], r["mode"]) for r in results["runs"]} == {(s, m) for s in ("naive", "cumulative") for m in ("oracle", "drift", "avalanche")}
    for run in results["runs"]:
        assert run["events"] == 5 * 80 and len(run["matrix"]) == 5
        assert all(0.0 <= a <= 1.0 for row in run["matrix"] for a in row)
        assert 0.0 <= run["average_accuracy"] <= 1.0 and run["events_per_second"] > 0
    rows = {(r["strategy"], r["mode"]): r for r in results["summary"]}
    naive, cumulative = rows[("naive", "oracle")], rows[("cumulative", "oracle")]
    assert naive["average_forgetting"]["mean"] > 0.5 > cumulative["average_forgetting"]["mean"]
    assert cumulative["average_accuracy"]["mean"] > naive["average_accuracy"]["mean"]
    assert naive["fidelity"]["difference"] == 0.0 and naive["fidelity"]["within"]  # same MLP, seed and batches as Avalanche's loop
    assert naive["live"]["consistent"] and naive["live"]["average_forgetting"]["mean"] > 0.5
    assert [(r["strategy"], r["mode"]) for r in printed["summary"]] == [(r["strategy"], r["mode"]) for r in results["summary"]]
    for p, r in zip(printed["summary"], results["summary"]):  # the file rounds to 5 decimals
        assert p["average_accuracy"]["mean"] == pytest.approx(r["average_accuracy"]["mean"], abs=1e-5)
    table = (out / "forgetting.md").read_text()
    assert "### `split-digits`" in table and "| naive | oracle |" in table and "| cumulative | drift (" in table


def test_wrong_arguments_give_one_readable_line(tmp_path: Path) -> None:
    for args, message in (
        (("--scenarios", "split-digit"), "unknown scenario 'split-digit'; choose from split-digits,"),
        (("--strategies", "reset", "--scenarios", "split-digits"), "no chosen strategy supports scenario 'split-digits' (torch learners)"),
        (("--seeds", "0"), "--seeds must be at least 1"),
    ):
        result = _bench(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
