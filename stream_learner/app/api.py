"""The Python API's half that needs the app: whole runs, and models loaded from a snapshot store.

:func:`run` is the embedded run (a JSONL file, a bundled dataset or a
synthetic drift stream in; predictions, metrics and dead letters to JSONL
files; snapshots to a local directory) with the CLI's options as keyword
arguments; it returns the run's summary. :func:`load_model` gives the
latest valid model of a key, from a run's snapshot directory or from Redis,
as an :class:`~stream_learner.api.Engine` that predicts (and can go on
learning).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as out:
...     summary = run("synthetic:sea", model="hoeffding_tree", max_events=2000, out=out)
...     model = load_model(f"{out}/snapshots")
>>> summary["events"], summary["predictions"], summary["dead_letters"]
(2000, 2000, 0)
>>> model.metrics()["labelled"], model.predict_one({0: 9.0, 1: 2.0, 2: 3.0})
(2000, True)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from connectors.local_store import LocalSnapshotStore
from connectors.redis_store import RedisSnapshotStore
from stream_learner.api import Engine, engine_config
from stream_learner.app import runner
from stream_learner.engine import KeyedLearner
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.events import DEFAULT_KEY
from stream_learner.learners.base import LearnerSpec
from stream_learner.slot import champion_state
from stream_learner.snapshot import SnapshotStore, load_latest_valid
from stream_learner.state import decode
from stream_learner.step.resume import ResumeFilter

logger = logging.getLogger(__name__)


def run(
    source: str = "synthetic:sea",
    *,
    model: str = LearnerSpec.model,
    model_params: dict[str, Any] | None = None,
    strategy: str | None = None,
    strategy_params: dict[str, Any] | None = None,
    detector: str | None = "adwin",
    detector_params: dict[str, Any] | None = None,
    out: str | Path = "out",
    max_events: int | None = None,
    seed: int = 42,
    resume: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run ``source`` to the end (or ``max_events``) through the engine; return the summary.

    ``source`` takes what ``--source`` takes (``file:PATH``,
    ``river:DATASET``, ``synthetic:NAME``); outputs go under ``out`` as
    with ``--out``, and ``resume`` is ``--resume``. Other keyword
    arguments are :class:`~stream_learner.engine.EngineConfig` fields
    (``new_label_gap``, ``metrics_every``, ``snapshot_seconds``, ...), as
    for :class:`~stream_learner.api.Engine`.
    """
    config = engine_config(model, model_params, strategy, strategy_params, detector, detector_params, seed, **options)
    run_options = runner.RunOptions(source=source, engine=config, out=out, max_events=max_events, seed=seed, resume=resume, progress=False, console=False)
    return runner.run(run_options)


def load_model(snapshots: str | Path, key: str = DEFAULT_KEY, *, app: str = "stream-learner", signing_key: bytes | str | None = None) -> Engine:
    """An :class:`~stream_learner.api.Engine` holding the latest valid snapshot of model ``key``.

    ``snapshots`` is a local snapshot directory (a run's ``OUT/snapshots``,
    or its ``--snapshot-dir``) or a ``redis://`` / ``rediss://`` URL; ``app``
    is the run's ``--app``. Snapshots are verified before they are loaded,
    with ``signing_key``, else ``STREAM_LEARNER_SNAPSHOT__SIGNING_KEY``, else
    (a local directory) the key file the run signed with. A tampered or
    corrupt version is skipped for the one before it, with a warning, as a
    run does. The engine is built for the snapshot's own model and strategy.
    """
    store, key_bytes = _open_store(snapshots, app, signing_key)
    found = load_latest_valid(store, key, key_bytes)
    if found is None:
        raise SnapshotError(f"no valid snapshot of model key {key!r} in {snapshots} (app {app!r})")
    _, payload, refusals = found
    for refusal in refusals:
        logger.warning(refusal)
    state = champion_state(decode(payload))  # with challengers, the champion serves
    state["resume"] = ResumeFilter().state_dict()  # its offsets are the snapshotted run's source's: every event fed from Python is new
    spec = LearnerSpec(**state["spec"])
    engine = Engine(spec.model, model_params=spec.params, strategy=spec.strategy, strategy_params=spec.strategy_params, seed=spec.seed)
    engine.learners[key] = KeyedLearner.from_state(state, engine.config)
    return engine


def _open_store(location: str | Path, app: str, signing_key: bytes | str | None) -> tuple[SnapshotStore, bytes]:
    given = signing_key.encode() if isinstance(signing_key, str) else signing_key
    key = given or os.environ.get(runner.SIGNING_KEY_ENV, "").encode() or None
    if str(location).startswith(("redis://", "rediss://")):
        if key is None:
            raise ConfigError(f"snapshots in Redis are verified with a signing key: pass signing_key= or set {runner.SIGNING_KEY_ENV}")
        return RedisSnapshotStore.from_url(str(location), app=app), key
    if not Path(location).is_dir():
        raise ConfigError(f"no snapshot directory at {location}")
    store = LocalSnapshotStore(location, app=app)
    key = key or store.signing_key(create=False)
    if key is None:
        raise ConfigError(f"no signing key to verify the snapshots in {location}: pass signing_key= or set {runner.SIGNING_KEY_ENV}")
    return store, key
