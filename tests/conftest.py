"""Shared fixtures."""

from __future__ import annotations

import itertools
from typing import Any

import pytest


@pytest.fixture
def drift_pairs() -> list[tuple[dict[str, Any], Any]]:
    """3000 seeded Agrawal events, concepts changing at 1000 and 2000 (the engine's own generator)."""
    from connectors.synthetic import SyntheticSource

    source = SyntheticSource("agrawal", seed=3, every=1000, concepts=3)
    return [(e.features, e.label) for e in itertools.islice(source.read_from(0), 3000)]
