"""One exception root, one subclass per area."""


class StreamLearnerError(Exception):
    """Root of every error stream-learner raises on purpose."""


class ConfigError(StreamLearnerError):
    """A setting, CLI argument or model/source specification is invalid."""


class SchemaError(StreamLearnerError):
    """An input record does not match the event contract."""


class SnapshotError(StreamLearnerError):
    """A snapshot is missing, corrupt, tampered with, or incompatible."""


class StrategyLoadError(StreamLearnerError):
    """A continual-learning strategy plug-in cannot be loaded or used."""


class SourceError(StreamLearnerError):
    """A source cannot be opened or read."""


class SinkError(StreamLearnerError):
    """An output cannot be written (e.g. the Kafka broker refused or lost records)."""
