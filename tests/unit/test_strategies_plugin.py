"""A third-party strategy package from ``tests/plugin_pkg``: pip-installed, listed, and run through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugin_pkg"
CLI = [sys.executable, "-m", "stream_learner.app.cli"]

pytestmark = pytest.mark.integration


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    source = tmp_path_factory.mktemp("plugin") / "pkg"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
    assert result.returncode == 0, result.stderr[-2000:]
    try:
        yield source
    finally:
        _pip("uninstall", "-y", "sl-shrink-strategy")


def test_the_plug_in_is_listed_with_its_origin(installed: Path) -> None:
    result = subprocess.run([*CLI, "strategies"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert rows["shrink"].split()[1:3] == ["torch", "sl-shrink-strategy"]
    assert "L2 pull towards zero" in rows["shrink"]
    assert "cannot load" in rows["shrink_broken"] and "ewc" in rows


def test_the_plug_in_runs_end_to_end_combined_with_a_built_in(installed: Path, tmp_path: Path) -> None:
    cmd = [
        *CLI, "run", "--source", "synthetic:sea?every=300&concepts=2", "--model", "torch:mlp", "--model-params", '{"hidden": [8]}',
        "--strategy", "shrink+replay", "--strategy-param", "strength=0.01", "--strategy-param", "replay.mem_size=30",
        "--out", str(tmp_path), "--json", "--snapshot-every", "250",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["events"] == summary["predictions"] == 600 and summary["dead_letters"] == 0
    assert summary["accuracy"] is not None
    from connectors.local_store import LocalSnapshotStore
    from stream_learner.snapshot import read_header

    store = LocalSnapshotStore(tmp_path / "snapshots")
    headers = [read_header(store.load(key, version)) for key in store.keys() for version in store.versions(key)]
    assert headers and {h.strategy for h in headers} == {"shrink+replay"} and {h.learner_kind for h in headers} == {"torch"}


def test_a_broken_plug_in_is_one_clear_error(installed: Path, tmp_path: Path) -> None:
    cmd = [*CLI, "run", "--model", "torch:mlp", "--strategy", "shrink_broken", "--out", str(tmp_path), "--max-events", "10"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stream-learner: error: strategy plug-in 'shrink_broken' (sl_shrink_strategy.missing:Nope, from package sl-shrink-strategy) "
        "failed to import: ModuleNotFoundError: No module named 'sl_shrink_strategy.missing'"
    ]
    result = subprocess.run([*CLI, "run", "--model", "logreg", "--strategy", "shrink", "--out", str(tmp_path), "--max-events", "10"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "supports torch models, not river models" in result.stderr


def test_the_plug_in_passes_the_strategy_checks_in_its_own_test_suite(installed: Path) -> None:
    """Its tests/ run stream_learner.checks as a third-party package's would: pytest in the installed package's folder."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=installed, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("6 passed")  # every check, the torch family only
