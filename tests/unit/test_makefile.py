"""``make run`` on a machine whose Python cannot serve: one message, and no half-built ``.venv`` left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make here")


def _fake_python(folder: Path, on_check: str, otherwise: str) -> Path:
    """A ``python`` whose version check (``-c``, ``-V``) does ``on_check`` and anything else (``-m venv``) ``otherwise``."""
    script = folder / "python"
    script.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ] || [ "$1" = "-V" ]; then {on_check}; fi\n{otherwise}\n')
    script.chmod(0o755)
    return script


def _make(folder: Path, python: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    return subprocess.run(["make", f"PYTHON={python}", "run"], cwd=folder, capture_output=True, text=True, timeout=60, env=_outside_make())


def _outside_make() -> dict[str, str]:
    """This environment without what a calling make passes down (``make test-py312`` runs these tests with ``VENV=.venv-3.12``)."""
    return {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def test_an_unsupported_python_stops_before_the_venv_exists(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, 'echo "Python 3.10.13"; exit 1', "mkdir -p .venv/bin; exit 0")
    result = _make(tmp_path, python)
    assert result.returncode != 0
    assert "make: stream-learner needs Python 3.11 or 3.12" in result.stderr and "make PYTHON=python3.11" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_a_venv_that_fails_to_build_is_removed(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, f'exec {sys.executable} "$@"', 'mkdir -p .venv/bin; echo "venv failed" >&2; exit 1')
    result = _make(tmp_path, python)
    assert result.returncode != 0 and "venv failed" in result.stderr
    assert "make: creating .venv with Python" in result.stderr
    assert not (tmp_path / ".venv").exists()


def _find_python(version: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / ".ci" / "find-python"), version], capture_output=True, text=True, timeout=60, env={"PATH": path, "HOME": str(Path.home())})


def test_ci_finds_a_python_by_running_it_not_by_its_name(tmp_path: Path) -> None:
    """A ``python3.12`` on PATH that is really another version (a pyenv shim not selected) is not taken for 3.12."""
    _fake_python(tmp_path, 'echo "Python 3.11.7"; exit 1', "exit 1").rename(tmp_path / "python3.12")
    result = _find_python("3.12", f"{tmp_path}:/usr/bin:/bin")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == "find-python: no working Python 3.12 here (neither python3.12 on PATH nor a pyenv version 3.12.x)"


def test_ci_finds_the_python_it_is_asked_for(tmp_path: Path) -> None:
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    (tmp_path / f"python{here}").symlink_to(sys.executable)
    result = _find_python(here, f"{tmp_path}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    found = subprocess.run([result.stdout.strip(), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == str(sys.version_info[:2])
