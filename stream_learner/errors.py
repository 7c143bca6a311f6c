"""One exception root, one subclass per area."""

import json


class StreamLearnerError(Exception):
    """Root of every error stream-learner raises on purpose."""


class ConfigError(StreamLearnerError):
    """A setting, CLI argument or model/source specification is invalid."""


class SnapshotError(StreamLearnerError):
    """A snapshot is missing, corrupt, tampered with, or incompatible."""


class StrategyLoadError(StreamLearnerError):
    """A continual-learning strategy plug-in cannot be loaded or used."""


def parse_json_object(text: str | None, what: str, example: str) -> dict:
    """A CLI argument holding a JSON object (empty when not given); anything else is a :class:`ConfigError`.

    >>> parse_json_object('{"delta": 0.01}', "drift detector parameters", '{"delta": 0.001}')
    {'delta': 0.01}
    >>> parse_json_object("[1]", "model parameters", '{"l2": 0.01}')
    Traceback (most recent call last):
    ...
    stream_learner.errors.ConfigError: model parameters must be a JSON object, e.g. '{"l2": 0.01}'
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} are not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, e.g. '{example}'")
    return value


class SourceError(StreamLearnerError):
    """A source cannot be opened or read."""


class SinkError(StreamLearnerError):
    """An output cannot be written (e.g. the Kafka broker refused or lost records)."""


class ClusterError(StreamLearnerError):
    """A process of a Bytewax cluster stopped or could not be reached: the whole cluster stops."""


class OffsetOutOfRangeError(SourceError):
    """A stored Kafka offset (recovery state, snapshot, committed) lies outside what its partition holds."""


class KafkaUnavailableError(StreamLearnerError):
    """The Kafka cluster stayed unreachable for longer than ``kafka.outage_timeout_s``."""
