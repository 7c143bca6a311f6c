"""The settings tree: flags > environment > config file > defaults.

Every ``run`` option is here (section ``run``), with the deployment's
Kafka, Redis, snapshot, recovery and label-window sections.

Environment variables use the prefix ``STREAM_LEARNER_`` and ``__`` between
levels (``STREAM_LEARNER_KAFKA__BOOTSTRAP_SERVERS``). Secrets are
:class:`~pydantic.SecretStr` and print masked. Core classes never take this
object: the wiring (``stream_learner.app``) maps it to plain arguments.

>>> s = load_settings(overrides={"kafka": {"sasl_password": "hunter2"}}, environ={})
>>> s.kafka.bootstrap_servers, s.kafka.sasl_password
('localhost:9092', SecretStr('**********'))
>>> "hunter2" in repr(s) or "hunter2" in str(s.masked())
False
>>> load_settings(overrides={"kafka": {"start": "middle"}}, environ={})
Traceback (most recent call last):
...
stream_learner.errors.ConfigError: invalid setting kafka.start: Input should be 'earliest', 'latest' or 'committed'
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from stream_learner.errors import ConfigError
from stream_learner.learners.base import DEFAULT_MODEL

ENV_PREFIX = "STREAM_LEARNER_"
ENV_DELIMITER = "__"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Where events come from and outputs go, and how to reach the cluster."""

    bootstrap_servers: str = Field("localhost:9092", min_length=1)
    input_topic: str = Field("events", min_length=1)
    labels_topic: str | None = None
    control_topic: str | None = None  # operators' signed commands (stream-learner control); None: the engine reads none
    shadow_topic: str | None = None  # every challenger's predictions; None: only the champion's are published
    predictions_topic: str = Field("predictions", min_length=1)
    metrics_topic: str = Field("metrics", min_length=1)
    dead_letter_topic: str = Field("dead-letters", min_length=1)
    client_id: str = "stream-learner"
    group_id: str | None = None
    start: Literal["earliest", "latest", "committed"] = "earliest"
    create_topics: bool = True
    topic_partitions: int = Field(1, ge=1)
    replication_factor: int = Field(1, ge=1)
    poll_max_records: int = Field(1000, ge=1)
    # most records a partition hands the learners at once: every fetch that waits, up to this many
    # (None: the embedded sources' batch; poll_max_records: one fetch at a time)
    max_batch_records: int | None = Field(None, ge=1)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "gzip"
    gzip_level: int = Field(1, ge=1, le=9)
    linger_ms: int = Field(5, ge=0)
    idle_timeout_s: float | None = Field(None, gt=0)
    bootstrap_timeout_s: float = Field(30.0, gt=0)  # how long a client tries to reach the cluster when it starts
    # a stored (recovery, snapshot or committed) offset the partition no longer holds: stop, or restart from an end (with a warning)
    offset_out_of_range: Literal["error", "earliest", "latest"] = "error"
    outage_timeout_s: float = Field(600.0, gt=0)  # how long a running service waits for a lost cluster to come back
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        if self.start == "committed" and not self.group_id:
            raise ValueError("start=committed needs a group_id")
        return self

    def client_config(self) -> dict[str, Any]:
        """Keyword arguments common to kafka-python clients (secrets revealed here only)."""
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": round(self.bootstrap_timeout_s * 1000),
        }
        if self.sasl_mechanism is not None:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                config[name] = getattr(self, name)
        if self.ssl_password is not None:
            config["ssl_password"] = self.ssl_password.get_secret_value()
        return config


class RedisSettings(_Section):
    """The snapshot store. The URL may carry a password, so it is a secret too."""

    url: SecretStr = SecretStr("redis://localhost:6379/0")
    password: SecretStr | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    socket_timeout_s: float = Field(5.0, gt=0)


class SnapshotSettings(_Section):
    """When snapshots are taken and how they are kept and signed."""

    every_events: int = Field(0, ge=0)
    every_seconds: float = Field(30.0, ge=0)
    retain: int = Field(5, ge=1)
    signing_key: SecretStr | None = None
    resume: bool = True
    outage_timeout_s: float = Field(600.0, gt=0)  # how long a model key's first event waits for Redis to load its snapshot
    lost_state: Literal["error", "new_learner"] = "error"  # an evicted key whose every version the store lost: stop, or start it afresh


class ControlSettings(_Section):
    """Operators' commands on the control topic (see :mod:`stream_learner.control`)."""

    signing_key: SecretStr | None = None  # the operators' key; None: the snapshot signing key
    max_age_s: float = Field(3600.0, gt=0)  # a command older than this when read is refused


class RecoverySettings(_Section):
    """Bytewax recovery: learner state and source offsets stored together, per epoch."""

    dir: Path | None = None
    partitions: int = Field(1, ge=1)
    epoch_seconds: float = Field(1.0, gt=0)


class LabelSettings(_Section):
    """The bounded window joining delayed labels to earlier predictions."""

    window_size: int = Field(10_000, ge=1)
    window_seconds: float = Field(3600.0, gt=0)


class RunSettings(_Section):
    """The options of ``stream-learner run`` (each has a flag of the same name, ``--model-params`` for ``model_params``)."""

    source: str = Field("synthetic:sea", min_length=1)
    model: str = Field(DEFAULT_MODEL, min_length=1)
    model_params: dict[str, Any] = {}
    strategy: str | None = None
    strategy_params: dict[str, Any] = {}
    drift_detector: str = "adwin"  # a name of stream_learner.drift.DETECTORS, or "none"
    drift_params: dict[str, Any] = {}
    new_label_gap: int = Field(0, ge=0)
    max_events: int | None = Field(None, ge=0)
    max_record_bytes: int = Field(1 << 20, ge=1)  # events.MAX_RECORD_BYTES
    max_features: int = Field(1000, ge=1)  # events.MAX_FEATURES
    max_keys: int = Field(100_000, ge=1)  # events.MAX_KEYS
    seed: int = 42
    out: str = Field("out", min_length=1)
    predictions: str | None = None  # where predictions go: a JSONL file, "-" for stdout (default: OUT/predictions.jsonl)
    snapshot_dir: str | None = None
    resume: bool = False
    workers: int = Field(1, ge=1)
    window: int = Field(1000, ge=1)
    metrics_every: int = Field(1000, ge=1)
    no_proba: bool = False
    forgetting_every: int = Field(10_000, ge=0)
    forgetting_sample: int = Field(100, ge=0)  # 0: forgetting tracking off
    holdout: bool = False
    feature_drift: dict[str, Any] | None = None  # the input-drift monitor's parameters; None: off
    boundaries: Literal["error", "feature", "both"] = "error"
    max_dead_letter_ratio: float | None = Field(None, ge=0, le=1)
    max_resident_keys: int = Field(0, ge=0)  # per worker; 0: no bound
    challengers: list[str] = []  # more learners per key in shadow: "MODEL" or "MODEL+STRATEGY"
    challenger_params: list[dict[str, Any]] = []  # the challengers' model parameters, in their order
    promotion_window: int = Field(500, ge=1)
    promotion_alpha: float = Field(0.01, gt=0, lt=1)
    min_champion_events: int = Field(1000, ge=0)
    auto_promote: bool = True
    shadow_predictions: bool = False  # embedded runs: every challenger's predictions in OUT/shadow_predictions.jsonl
    reuse_concepts: int = Field(0, ge=0)  # earlier concepts' models kept and tried at each boundary; 0: off
    reuse_window: int = Field(200, ge=1)
    reuse_alpha: float = Field(0.05, gt=0, lt=1)
    reuse_looks: int = Field(8, ge=1)
    reuse_checkpoint_every: int = Field(0, ge=0)
    metrics_top_keys: int = Field(100, ge=1)  # keys with their own Prometheus "key" label; later ones count as "other"
    quiet: bool = False
    json_summary: bool = False  # --json


class Settings(BaseSettings):
    """Everything a deployed service reads; one tree, validated once."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    app: str = Field("stream-learner", min_length=1)
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    snapshot: SnapshotSettings = SnapshotSettings()
    recovery: RecoverySettings = RecoverySettings()
    labels: LabelSettings = LabelSettings()
    control: ControlSettings = ControlSettings()
    run: RunSettings = RunSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings hands over flags, environment and config file already merged (one call's own data, no shared state)
        return (init_settings,)

    def masked(self) -> dict[str, Any]:
        """The settings as plain JSON-able data, secrets shown as ``**********``."""
        return json.loads(self.model_dump_json())


def _sections_checked(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` if each of its sections is a table: one that is not would be replaced whole by any flag of the section, unseen.

    >>> _sections_checked({"kafka": "oops"}, "config file x.json")
    Traceback (most recent call last):
    ...
    stream_learner.errors.ConfigError: invalid setting kafka in config file x.json: expected a table of settings, got str 'oops'
    """
    for name, value in data.items():
        field = Settings.model_fields.get(name)
        if field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, _Section) and not isinstance(value, dict):
            raise ConfigError(f"invalid setting {name} in {where}: expected a table of settings, got {type(value).__name__} {value!r:.60}")
    return data


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings in ``environ`` (default ``os.environ``), read by pydantic-settings' environment source, sections checked.

    >>> read_environment({"STREAM_LEARNER_KAFKA__GZIP_LEVEL": "6", "HOME": "/root"})
    {'kafka': {'gzip_level': '6'}}
    """
    source = EnvSettingsSource(Settings)
    if environ is not None:
        source.env_vars = {k.lower(): v for k, v in environ.items()}  # the variables it reads, as it keeps them (case-insensitive)
    try:
        data = source()
    except SettingsError as exc:  # a section's variable that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        variable = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "a variable"
        raise ConfigError(f"invalid settings in the environment: {variable} is not a JSON object") from None
    return _sections_checked(data, f"the environment ({ENV_PREFIX}*)")


def merged(lower: Mapping[str, Any], higher: Mapping[str, Any]) -> dict[str, Any]:
    """``higher`` over ``lower``, tables merged key by key (as pydantic-settings merges its sources).

    >>> merged({"kafka": {"start": "latest", "linger_ms": 5}, "app": "a"}, {"kafka": {"linger_ms": 0}})
    {'kafka': {'start': 'latest', 'linger_ms': 0}, 'app': 'a'}
    """
    out = dict(lower)
    for name, value in higher.items():
        below = out.get(name)
        out[name] = merged(below, value) if isinstance(value, Mapping) and isinstance(below, Mapping) else value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML (``.toml``) or JSON config file as a dict."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text.decode()) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold an object of settings")
    return data


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings: ``overrides`` (CLI flags) > environment > config file > defaults.

    ``environ`` replaces ``os.environ`` (tests). Invalid values raise
    :class:`ConfigError` naming the setting.
    """
    file_data = _sections_checked(read_config_file(config_file), f"config file {config_file}") if config_file is not None else {}
    values = merged(merged(file_data, read_environment(environ)), overrides or {})
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {loc}: {msg}{more}" if loc else f"invalid settings: {msg}{more}"
