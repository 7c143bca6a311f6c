"""Build a source from its spec string (``--source``).

>>> src = parse_source("synthetic:agrawal?every=100&concepts=3", seed=1)
>>> src.name, src.max_events, src.drift_positions
('synthetic:agrawal', 300, [100, 200])
>>> parse_source("ftp://x")
Traceback (most recent call last):
...
stream_learner.errors.ConfigError: unknown source 'ftp://x': use synthetic:NAME[?every=N&concepts=K&width=W], file:PATH or river:DATASET
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from connectors.base import OffsetSource
from stream_learner.errors import ConfigError

SYNTHETIC_OPTIONS = ("every", "concepts", "width")


def parse_source(spec: str, *, seed: int = 42, **kwargs: Any) -> OffsetSource:
    """``synthetic:NAME[?every=N&concepts=K&width=W]``, ``file:PATH`` or ``river:DATASET``.

    ``kwargs`` (``start``, ``max_events``, ``on_read``, ``batch_size``) go to the source.
    """
    kind, sep, rest = spec.partition(":")
    if kind == "synthetic" and sep:
        from connectors.synthetic import SyntheticSource

        name, _, query = rest.partition("?")
        options: dict[str, Any] = _int_options(spec, query)  # typed loosely: SyntheticSource takes each as its own keyword
        return SyntheticSource(name, seed=seed, **options, **kwargs)
    if kind == "file" and rest:
        from connectors.files import JsonlFileSource

        return JsonlFileSource(rest, **kwargs)
    if kind == "river" and rest:
        from connectors.datasets import RiverDatasetSource

        return RiverDatasetSource(rest, **kwargs)
    raise ConfigError(
        f"unknown source {spec!r}: use synthetic:NAME[?every=N&concepts=K&width=W], file:PATH or river:DATASET"
    )


def _int_options(spec: str, query: str) -> dict[str, int]:
    options: dict[str, int] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name not in SYNTHETIC_OPTIONS:
            raise ConfigError(f"source {spec!r}: unknown option {name!r} (options: {', '.join(SYNTHETIC_OPTIONS)})")
        try:
            options[name] = int(value)
        except ValueError:
            raise ConfigError(f"source {spec!r}: option {name} must be an integer, not {value!r}") from None
    return options
