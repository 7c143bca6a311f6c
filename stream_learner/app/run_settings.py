"""The ``run`` command's options as settings: flags over environment over config file over defaults.

Each ``run`` option is a field of :class:`~stream_learner.settings.RunSettings`
(``--model`` is ``run.model``, ``STREAM_LEARNER_RUN__MODEL``, ``[run] model``
in a TOML file); the Kafka, Redis, snapshot and recovery flags override
their own sections (:data:`FLAG_SETTINGS`). The parser leaves out every flag
not given (:data:`argparse.SUPPRESS`), so a flag overrides the lower layers
only when the user typed it.
"""

from __future__ import annotations

import argparse
from typing import Any

from stream_learner.errors import ConfigError
from stream_learner.settings import RunSettings, Settings, load_settings

FLAG_SETTINGS: dict[str, tuple[str, ...]] = {
    # flag dest -> the setting it overrides, for the flags outside the run section
    "bootstrap_servers": ("kafka", "bootstrap_servers"),
    "input_topic": ("kafka", "input_topic"),
    "labels_topic": ("kafka", "labels_topic"),
    "control_topic": ("kafka", "control_topic"),
    "shadow_topic": ("kafka", "shadow_topic"),
    "predictions_topic": ("kafka", "predictions_topic"),
    "metrics_topic": ("kafka", "metrics_topic"),
    "dead_letter_topic": ("kafka", "dead_letter_topic"),
    "group_id": ("kafka", "group_id"),
    "start": ("kafka", "start"),
    "stop_when_idle": ("kafka", "idle_timeout_s"),
    "redis_url": ("redis", "url"),
    "recovery_dir": ("recovery", "dir"),
    "epoch_seconds": ("recovery", "epoch_seconds"),
    "snapshot_every": ("snapshot", "every_events"),
    "snapshot_seconds": ("snapshot", "every_seconds"),
    "app": ("app",),
}


KAFKA_ONLY = (
    "bootstrap_servers", "input_topic", "labels_topic", "control_topic", "shadow_topic", "predictions_topic", "metrics_topic",
    "dead_letter_topic", "group_id", "start", "stop_when_idle", "redis_url", "recovery_dir", "epoch_seconds", "addresses", "process_id",
)  # fmt: skip
"""The flags (by dest) only a Kafka run reads (``--snapshot-seconds`` and ``--app``, in the same group, every run reads)."""

EMBEDDED_ONLY = ("out", "snapshot_dir", "rate")
"""The flags (by dest) only a file, dataset or synthetic run reads: a Kafka run writes to its topics, and its snapshots to Redis.

(``--predictions`` and ``--shadow-predictions`` with Kafka are refused with the settings, which name the topic to use instead.)
"""


def check_flags_fit_source(args: argparse.Namespace, source: str) -> None:
    """Refuse, in one line, the flags typed that a run of ``source`` would not read: a flag must never be ignored silently.

    Only flags count: a setting from the environment or a config file may serve other runs of the same deployment.

    >>> check_flags_fit_source(argparse.Namespace(recovery_dir="state", input_topic=None), "file:events.jsonl")
    Traceback (most recent call last):
    stream_learner.errors.ConfigError: --recovery-dir applies to --source kafka only (a file or synthetic run continues from its snapshots with --resume)
    """
    kafka = source == "kafka"
    typed = [name for name in (EMBEDDED_ONLY if kafka else KAFKA_ONLY) if getattr(args, name, None) not in (None, False)]
    if not typed:
        return
    flags = " and ".join(", ".join(f"--{name.replace('_', '-')}" for name in typed).rsplit(", ", 1))
    verb = "apply" if len(typed) > 1 else "applies"
    if kafka:
        raise ConfigError(f"{flags} {verb} to file, dataset and synthetic sources only (a Kafka run writes to its topics, its snapshots to Redis)")
    hint = " (a file or synthetic run continues from its snapshots with --resume)" if "recovery_dir" in typed else ""
    raise ConfigError(f"{flags} {verb} to --source kafka only{hint}")


def default_of(name: str) -> Any:
    """The default of run option ``name``, for help texts (the parser's own default is SUPPRESS).

    >>> default_of("window")
    1000
    """
    return RunSettings.model_fields[name].default


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The run's settings: the flags given, over ``STREAM_LEARNER_*`` variables, over ``--config``, over defaults.

    Raises :class:`~stream_learner.errors.ConfigError` (one line) on a missing or invalid file or value.
    """
    given = vars(args)
    overrides: dict[str, Any] = {"run": {name: given[name] for name in RunSettings.model_fields if name in given}}
    for dest, path in FLAG_SETTINGS.items():
        if given.get(dest) is not None:
            node = overrides
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = given[dest]
    return load_settings(given.get("config"), overrides)
