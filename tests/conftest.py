"""Shared fixtures."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator

import pytest

from stream_learner.learners.strategy import rescan_installed

collect_ignore = ["plugin_pkg/tests"]  # the sample plug-in's own tests run in its installed copy (test_strategies_plugin.py)


@pytest.fixture(scope="session", autouse=True)
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Local signing keys go to a temporary file (for the service processes the tests start too), never to the real home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAM_LEARNER_SIGNING_KEY_FILE", str(tmp_path_factory.mktemp("config") / "signing-key"))
        yield


@pytest.fixture
def drift_pairs() -> list[tuple[dict[str, Any], Any]]:
    """3000 seeded Agrawal events, concepts changing at 1000 and 2000 (the engine's own generator)."""
    from connectors.synthetic import SyntheticSource

    source = SyntheticSource("agrawal", seed=3, every=1000, concepts=3)
    return [(e.features, e.label) for e in itertools.islice(source.read_from(0), 3000)]


BROKEN = {
    "checks_forgetful": "Forgetful",
    "checks_hoarder": "Hoarder",
    "checks_shared": "Shared",
    "checks_impure": "Impure",
    "checks_river_boundary_raises": "RiverBoundaryRaises",
    "checks_torch_boundary_raises": "TorchBoundaryRaises",
}
"""The strategies of ``conformance/broken_strategies.py``: entry-point name -> class."""


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The strategies of ``conformance/broken_strategies.py``, registered by a distribution on ``sys.path`` as pip would install it.

    Here, not in a ``conftest.py`` of ``conformance/``: with ``--doctest-modules`` every
    conftest is collected as a module named ``conftest``, and two of them collide.
    """
    info = tmp_path / "broken_checks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-checks\nVersion: 0.1\n")
    entries = "".join(f"{name} = broken_strategies:{cls}\n" for name, cls in BROKEN.items())
    (info / "entry_points.txt").write_text(f"[stream_learner.strategies]\n{entries}")
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "conformance"))
    monkeypatch.syspath_prepend(str(tmp_path))
    rescan_installed()  # as pip installed it: seen from now on
    yield
    rescan_installed()  # and gone again
