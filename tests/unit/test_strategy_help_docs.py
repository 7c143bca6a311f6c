"""``stream-learner strategies NAME`` describes every parameter of every built-in strategy: a new parameter without an ``Args:`` line fails here."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest

from strategies.registry import available, load_class
from stream_learner.app.strategy_help import describe_strategy

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
BUILT_IN = sorted(tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]["stream_learner.strategies"])


def listed(name: str) -> dict[str, str]:
    """``parameter -> description`` as ``strategies NAME`` prints its table (the columns found from the header's positions)."""
    lines = describe_strategy(name).splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("PARAMETER")), None)
    if header is None:
        return {}
    start = lines[header].index("DESCRIPTION")
    rows = {}
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        rows[line.split()[0]] = line[start:].strip()
    return rows


def test_every_built_in_is_registered() -> None:
    """The registry sees each entry point of pyproject.toml, and each loads (else the test below would check nothing)."""
    infos = {i.name: i for i in available()}
    assert set(BUILT_IN) <= set(infos), set(BUILT_IN) - set(infos)
    assert all(infos[name].families for name in BUILT_IN), [infos[n].description for n in BUILT_IN if not infos[n].families]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_parameter_has_a_description(name: str) -> None:
    cls = load_class(name)
    params = [p for p in inspect.signature(cls).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    rows = listed(name)
    assert list(rows) == [p.name for p in params]
    for p in params:
        annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", str(p.annotation))
        description = rows[p.name]
        assert description not in ("", "-", annotation), f"{name}: parameter {p.name!r} has no line in its class's Args: section (the table shows {description!r})"
