"""The Python API's whole-pipeline half: run a source to its sinks, as ``stream-learner run`` does.

:func:`run` is the embedded run (a JSONL file, a bundled dataset or a
synthetic drift stream in; predictions, metrics and dead letters to JSONL
files; snapshots to a local directory) with the CLI's options as keyword
arguments; it returns the run's summary.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as out:
...     summary = run("synthetic:sea", model="hoeffding_tree", max_events=2000, out=out)
>>> summary["events"], summary["predictions"], summary["dead_letters"]
(2000, 2000, 0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream_learner.api import engine_config
from stream_learner.app import runner
from stream_learner.learners.base import LearnerSpec


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
