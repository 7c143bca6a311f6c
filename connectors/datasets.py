"""River's bundled datasets as sources (``river:phishing``), no download needed."""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator

from connectors.base import OffsetSource
from stream_learner.errors import ConfigError
from stream_learner.events import DEFAULT_KEY, Event

BUNDLED = {
    "phishing": "Phishing",
    "bananas": "Bananas",
    "image_segments": "ImageSegments",
    "shuttle": "Shuttle",
    "trump_approval": "TrumpApproval",
    "chick_weights": "ChickWeights",
}
"""Dataset names (``river:NAME``) and river's class for each; all ship inside river."""


class RiverDatasetSource(OffsetSource):
    """Streams a bundled river dataset in its own order."""

    def __init__(self, dataset: str, *, key: str = DEFAULT_KEY, **kwargs: Any) -> None:
        if dataset not in BUNDLED:
            raise ConfigError(f"unknown river dataset {dataset!r}; bundled ones are {', '.join(BUNDLED)}")
        super().__init__(**kwargs)
        self.dataset = dataset
        self.name = f"river:{dataset}"
        self.key = key

    def read_from(self, offset: int) -> Iterator[Event]:
        from river import datasets

        data = getattr(datasets, BUNDLED[self.dataset])()
        topic, key = self.name, self.key
        for i, (x, y) in enumerate(islice(data, offset, None), start=offset):
            yield Event(f"{topic}:0:{i}", key, x, y, None, 0, i)
