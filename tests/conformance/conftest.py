"""The strategies of ``broken_strategies.py``, registered for the tests that ask for them."""

from __future__ import annotations

from pathlib import Path

import pytest

BROKEN = {
    "checks_forgetful": "Forgetful",
    "checks_hoarder": "Hoarder",
    "checks_shared": "Shared",
    "checks_impure": "Impure",
    "checks_river_boundary_raises": "RiverBoundaryRaises",
    "checks_torch_boundary_raises": "TorchBoundaryRaises",
}


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The strategies of ``broken_strategies.py``, registered by a distribution on ``sys.path`` as pip would install it."""
    info = tmp_path / "broken_checks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-checks\nVersion: 0.1\n")
    entries = "".join(f"{name} = broken_strategies:{cls}\n" for name, cls in BROKEN.items())
    (info / "entry_points.txt").write_text(f"[stream_learner.strategies]\n{entries}")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.syspath_prepend(str(tmp_path))
