"""The image's install, without a Docker engine: the wheel built from what the Dockerfile copies, run from elsewhere.

The Dockerfile's build stage copies a few paths and builds a wheel from
them; the image installs that wheel and runs ``stream-learner`` from
``/data``. Here the same paths are copied to a folder outside the
repository, the wheel is built there (offline: ``--no-build-isolation``)
and installed without dependencies into a fresh virtual environment, which
sees the test environment's installed dependencies through a ``.pth``
file. So the project's own modules come from the wheel alone, and the
commands run in a folder where nothing imports from the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _build_stage_copies() -> list[str]:
    """The repository paths the Dockerfile's first (build) stage copies."""
    text = (ROOT / "Dockerfile").read_text()
    stage = text.split("\nFROM ", 2)[1]  # the first FROM opens the build stage, the second the image
    paths: list[str] = []
    for line in stage.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            paths += line.split()[1:-1]
    return paths


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh environment holding the wheel; its ``bin`` folder and the environment to run it with."""
    tmp = tmp_path_factory.mktemp("image")
    context = tmp / "context"
    for path in _build_stage_copies():
        source = ROOT / path
        if source.is_dir():
            shutil.copytree(source, context / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(source, context / path)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp / "wheels"), str(context)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "wheels").glob("stream_learner-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    (target / "_test_dependencies.pth").write_text(site.getsitepackages()[0] + "\n")  # the dependencies, not the checkout
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["STREAM_LEARNER_SNAPSHOT__SIGNING_KEY"] = "image-test-key"
    return venv / "bin", env


def _run(bin_dir: Path, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_build_stage_copies_the_service_packages() -> None:
    assert set(_build_stage_copies()) == {"pyproject.toml", "README.md", "stream_learner", "strategies", "connectors"}


def test_the_project_comes_from_the_wheel_alone(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = installed
    code = "import importlib.util as u, json; print(json.dumps({n: (s.origin if (s := u.find_spec(n)) else None) for n in ('stream_learner', 'connectors', 'strategies', 'benchmarks')}))"
    found = json.loads(_run(bin_dir, env, tmp_path, "python", "-c", code).stdout)
    venv = str(bin_dir.parent)
    assert all(found[n].startswith(venv) for n in ("stream_learner", "connectors", "strategies")), found
    assert found["benchmarks"] is None  # the wheel holds the service only
    package = Path(found["stream_learner"]).parent
    assert (package / "py.typed").exists() and (package / "app" / "static" / "index.html").exists()  # its data files too (the dashboard)


def test_the_installed_command_runs_help_strategies_and_an_embedded_run(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = installed
    helped = _run(bin_dir, env, tmp_path, "stream-learner", "--help")
    assert helped.returncode == 0 and "run" in helped.stdout, helped.stderr
    listed = _run(bin_dir, env, tmp_path, "stream-learner", "strategies")
    assert listed.returncode == 0, listed.stderr
    assert {"naive", "ewc", "replay", "reset"} <= {line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()}
    done = _run(bin_dir, env, tmp_path, "stream-learner", "run", "--source", "synthetic:sea?every=500&concepts=2", "--json", "--out", "o")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["events"] == summary["predictions"] == 1000 and summary["dead_letters"] == 0
    assert len((tmp_path / "o" / "predictions.jsonl").read_text().splitlines()) == 1000  # the writer child process, from the wheel too


def test_bench_without_the_benchmarks_is_one_line(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = installed
    result = _run(bin_dir, env, tmp_path, "stream-learner", "bench", "forgetting", "--jobs", "2")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and re.match(r"stream-learner: error: the benchmarks run from a checkout", result.stderr), result.stderr
