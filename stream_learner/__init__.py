"""stream-learner: continual / online learning over event streams.

The core (this package, except :mod:`stream_learner.app`) learns and
measures; it imports no Bytewax, Kafka or Redis. ``connectors`` moves
bytes, and :mod:`stream_learner.app` wires the two into a dataflow and
a CLI.

The Python API is here at the top: :class:`Engine` (test-then-train over
events fed from Python, see :mod:`stream_learner.api`), :func:`run` (a
whole embedded run) and :func:`load_model` (a key's latest snapshot, see
:mod:`stream_learner.app.api`). They load on first use, so
``import stream_learner`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Engine", "Output", "load_model", "run", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "Output"):
        from stream_learner import api

        return getattr(api, name)
    if name in ("run", "load_model"):
        from stream_learner.app import api as app_api

        return getattr(app_api, name)
    raise AttributeError(f"module 'stream_learner' has no attribute {name!r}")
