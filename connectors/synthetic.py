"""Seeded synthetic streams with concept drift (river's generators).

``synthetic:NAME?every=N&concepts=K&width=W`` chains ``K`` concepts of the
generator with river's ``ConceptDriftStream``, a drift every ``N`` events,
each ``W`` events wide. Defaults: 4 concepts, a drift every 5000 events,
width 1 (abrupt), so the stream has 20000 events and 3 drifts.

>>> src = SyntheticSource("sea", seed=7, every=3, concepts=2)
>>> [(e.offset, e.label) for e in islice(src.read_from(0), 3)]
[(0, False), (1, False), (2, False)]
>>> src.drift_positions, src.max_events
([3], 6)
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any, Callable, Iterator

from river.datasets import synth

from connectors.base import PairSource
from stream_learner.errors import ConfigError
from stream_learner.events import DEFAULT_KEY


def _sea(seed: int, concept: int) -> Any:
    return synth.SEA(variant=concept % 4, seed=seed)


def _agrawal(seed: int, concept: int) -> Any:
    return synth.Agrawal(classification_function=concept % 10, seed=seed)


def _hyperplane(seed: int, concept: int) -> Any:
    return synth.Hyperplane(seed=seed * 1000 + concept, n_features=10)


def _rbf(seed: int, concept: int) -> Any:
    return synth.RandomRBF(seed_model=seed * 1000 + concept, seed_sample=seed, n_classes=3, n_features=10)


GENERATORS: dict[str, Callable[[int, int], Any]] = {
    "sea": _sea,
    "agrawal": _agrawal,
    "hyperplane": _hyperplane,
    "rbf": _rbf,
}
"""Generator names (``synthetic:NAME``) and how concept ``k`` is built."""


class SyntheticSource(PairSource):
    """A drift stream of ``every * concepts`` events (unless ``every`` is 0: endless)."""

    def __init__(
        self,
        generator: str,
        *,
        seed: int = 42,
        every: int = 5000,
        concepts: int = 4,
        width: int = 1,
        key: str = DEFAULT_KEY,
        **kwargs: Any,
    ) -> None:
        if generator not in GENERATORS:
            raise ConfigError(f"unknown synthetic stream {generator!r}; choose one of {', '.join(GENERATORS)}")
        if every < 1 or concepts < 1 or width < 1:
            raise ConfigError("synthetic stream: every, concepts and width must be positive integers")
        super().__init__(**kwargs)
        self.generator = generator
        self.name = f"synthetic:{generator}"
        self.seed = seed
        self.every = every
        self.concepts = concepts
        self.width = width
        self.key = key
        length = every * concepts
        self.max_events = length if self.max_events is None else min(self.max_events, length)

    @property
    def drift_positions(self) -> list[int]:
        """Offsets at which each new concept is centred."""
        return [self.every * k for k in range(1, self.concepts)]

    def river_stream(self) -> Any:
        """The river stream itself (a chain of ``ConceptDriftStream``)."""
        build = GENERATORS[self.generator]
        stream = build(self.seed, self.concepts - 1)
        for concept in range(self.concepts - 2, -1, -1):
            # river's sigmoid overflows for |position/width| > ~170, so keep the width proportionate
            width = max(self.width, math.ceil(self.every / 150))
            stream = synth.ConceptDriftStream(
                stream=build(self.seed, concept), drift_stream=stream, position=self.every, width=width, seed=self.seed + concept
            )
        return stream

    def pairs_from(self, offset: int) -> Iterator[tuple[dict[Any, Any], Any]]:
        return islice(self.river_stream(), offset, None)
