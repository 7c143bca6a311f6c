"""River's bundled datasets as sources (``river:phishing``), no download needed."""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator

from connectors.base import PairSource
from stream_learner.errors import ConfigError
from stream_learner.events import DEFAULT_KEY

BUNDLED = {
    "phishing": "Phishing",
    "bananas": "Bananas",
    "image_segments": "ImageSegments",
    "shuttle": "Shuttle",
    "trump_approval": "TrumpApproval",
    "chick_weights": "ChickWeights",
}
"""Dataset names (``river:NAME``) and river's class for each; all ship inside river."""


class RiverDatasetSource(PairSource):
    """Streams a bundled river dataset in its own order."""

    def __init__(self, dataset: str, *, key: str = DEFAULT_KEY, **kwargs: Any) -> None:
        if dataset not in BUNDLED:
            raise ConfigError(f"unknown river dataset {dataset!r}; bundled ones are {', '.join(BUNDLED)}")
        super().__init__(**kwargs)
        self.dataset = dataset
        self.name = f"river:{dataset}"
        self.key = key

    def pairs_from(self, offset: int) -> Iterator[tuple[dict[Any, Any], Any]]:
        from river import datasets

        return islice(getattr(datasets, BUNDLED[self.dataset])(), offset, None)
