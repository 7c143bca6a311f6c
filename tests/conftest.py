"""Shared fixtures."""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import pytest

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
