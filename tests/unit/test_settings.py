"""The settings tree: precedence, nesting, secrets, and one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stream_learner.errors import ConfigError
from stream_learner.settings import Settings, load_settings


def test_flags_win_over_environment_over_file(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('app = "from-file"\n[kafka]\ninput_topic = "file-in"\nmetrics_topic = "file-metrics"\n[snapshot]\nretain = 9\n')
    env = {"STREAM_LEARNER_KAFKA__INPUT_TOPIC": "env-in", "STREAM_LEARNER_KAFKA__PREDICTIONS_TOPIC": "env-pred", "OTHER": "x"}
    s = load_settings(config, {"kafka": {"predictions_topic": "flag-pred"}}, environ=env)
    assert s.app == "from-file" and s.snapshot.retain == 9
    assert (s.kafka.input_topic, s.kafka.predictions_topic, s.kafka.metrics_topic) == ("env-in", "flag-pred", "file-metrics")
    assert s.kafka.dead_letter_topic == "dead-letters"  # default


def test_json_config_files_and_nested_environment(tmp_path: Path) -> None:
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"recovery": {"dir": "/tmp/r", "epoch_seconds": 2}}))
    s = load_settings(config, environ={"STREAM_LEARNER_LABELS__WINDOW_SIZE": "50", "STREAM_LEARNER_KAFKA__CREATE_TOPICS": "false"})
    assert str(s.recovery.dir) == "/tmp/r" and s.recovery.epoch_seconds == 2
    assert s.labels.window_size == 50 and s.kafka.create_topics is False


def test_secrets_are_masked_everywhere_they_are_printed() -> None:
    env = {
        "STREAM_LEARNER_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "STREAM_LEARNER_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "STREAM_LEARNER_KAFKA__SASL_USERNAME": "svc",
        "STREAM_LEARNER_KAFKA__SASL_PASSWORD": "kafka-secret",
        "STREAM_LEARNER_REDIS__URL": "rediss://:redis-secret@cache:6380/0",
        "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": "hmac-secret",
    }
    s = load_settings(environ=env)
    for text in (repr(s), str(s), json.dumps(s.masked()), repr(s.kafka)):
        for secret in ("kafka-secret", "redis-secret", "hmac-secret"):
            assert secret not in text
    config = s.kafka.client_config()  # revealed only where a client needs them
    assert config["sasl_plain_password"] == "kafka-secret" and config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["security_protocol"] == "SASL_SSL"
    assert config["bootstrap_timeout_ms"] == 30_000  # kafka-python's own default, until set
    assert load_settings(environ={"STREAM_LEARNER_KAFKA__BOOTSTRAP_TIMEOUT_S": "2.5"}).kafka.client_config()["bootstrap_timeout_ms"] == 2500


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAM_LEARNER_KAFKA__START": "middle"}, "invalid setting kafka.start: Input should be 'earliest', 'latest' or 'committed'"),
        ({"STREAM_LEARNER_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "invalid setting kafka: security_protocol SASL_PLAINTEXT needs sasl_mechanism"),
        ({"STREAM_LEARNER_KAFKA__START": "committed"}, "invalid setting kafka: start=committed needs a group_id"),
        ({"STREAM_LEARNER_SNAPSHOT__RETAIN": "0"}, "invalid setting snapshot.retain: Input should be greater than or equal to 1"),
        ({"STREAM_LEARNER_KAFKA__TYPO": "1"}, "invalid setting kafka.typo: Extra inputs are not permitted"),
        ({"STREAM_LEARNER_KAFKA__GZIP_LEVEL": "10"}, "invalid setting kafka.gzip_level: Input should be less than or equal to 9"),
        ({"STREAM_LEARNER_KAFKA__BOOTSTRAP_TIMEOUT_S": "0"}, "invalid setting kafka.bootstrap_timeout_s: Input should be greater than 0"),
    ],
)
def test_bad_settings_are_one_readable_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_bad_config_files_are_one_readable_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(broken, environ={})


def test_the_cli_reports_bad_settings_in_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_learner.app.cli import main

    monkeypatch.setenv("STREAM_LEARNER_KAFKA__POLL_MAX_RECORDS", "zero")
    assert main(["run", "--source", "kafka", "--print-settings"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stream-learner: error: invalid setting kafka.poll_max_records") and "\n" not in err
    monkeypatch.delenv("STREAM_LEARNER_KAFKA__POLL_MAX_RECORDS")
    monkeypatch.setenv("STREAM_LEARNER_REDIS__PASSWORD", "pw-secret")
    assert main(["run", "--source", "kafka", "--print-settings", "--input-topic", "flagged"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["kafka"]["input_topic"] == "flagged" and "pw-secret" not in out


def test_the_gzip_level_defaults_to_the_fastest_and_is_settable() -> None:
    assert load_settings(environ={}).kafka.gzip_level == 1
    assert load_settings(environ={"STREAM_LEARNER_KAFKA__GZIP_LEVEL": "6"}).kafka.gzip_level == 6


@pytest.mark.parametrize("section", ['"oops"', "null", "[1, 2]", "3"])
def test_a_config_section_of_the_wrong_type_is_one_line_even_beside_a_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str) -> None:
    """A flag of the section used to replace the bad section whole, silently (the run went on with defaults)."""
    from stream_learner.app.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text(f'{{"kafka": {section}}}')
    for flags in (["--print-settings"], ["--input-topic", "x", "--print-settings"], ["--input-topic", "x"]):  # the last would run
        assert main(["run", "--source", "kafka", "--config", str(bad), *flags]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(f"stream-learner: error: invalid setting kafka in config file {bad}") and captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"oops"', "invalid setting kafka in the environment (STREAM_LEARNER_*): expected a table of settings, got str 'oops'"),
        ("oops", "invalid settings in the environment: STREAM_LEARNER_KAFKA is not a JSON object"),
    ],
)
def test_an_environment_section_of_the_wrong_type_is_one_line_even_beside_a_flag(value: str, message: str) -> None:
    env = {"STREAM_LEARNER_KAFKA": value}
    for overrides in ({}, {"kafka": {"input_topic": "x"}}):
        with pytest.raises(ConfigError) as caught:
            load_settings(overrides=overrides, environ=env)
        assert str(caught.value) == message


def test_a_section_given_whole_as_json_in_the_environment_still_works() -> None:
    s = load_settings(overrides={"kafka": {"input_topic": "x"}}, environ={"STREAM_LEARNER_KAFKA": '{"start": "latest"}'})
    assert (s.kafka.input_topic, s.kafka.start) == ("x", "latest")


def test_offsets_out_of_range_and_outages_have_safe_defaults_and_are_checked() -> None:
    s = load_settings(environ={})
    assert (s.kafka.offset_out_of_range, s.kafka.outage_timeout_s) == ("error", 600.0)
    s = load_settings(environ={"STREAM_LEARNER_KAFKA__OFFSET_OUT_OF_RANGE": "earliest", "STREAM_LEARNER_KAFKA__OUTAGE_TIMEOUT_S": "5"})
    assert (s.kafka.offset_out_of_range, s.kafka.outage_timeout_s) == ("earliest", 5.0)
    with pytest.raises(ConfigError, match="invalid setting kafka.offset_out_of_range: Input should be 'error', 'earliest' or 'latest'"):
        load_settings(environ={"STREAM_LEARNER_KAFKA__OFFSET_OUT_OF_RANGE": "skip"})
    with pytest.raises(ConfigError, match="invalid setting kafka.outage_timeout_s: Input should be greater than 0"):
        load_settings(environ={"STREAM_LEARNER_KAFKA__OUTAGE_TIMEOUT_S": "0"})


def test_a_lost_evicted_state_stops_the_run_unless_the_operator_chose_a_new_learner() -> None:
    assert load_settings(environ={}).snapshot.lost_state == "error"
    assert load_settings(environ={"STREAM_LEARNER_SNAPSHOT__LOST_STATE": "new_learner"}).snapshot.lost_state == "new_learner"
    with pytest.raises(ConfigError, match="invalid setting snapshot.lost_state: Input should be 'error' or 'new_learner'"):
        load_settings(environ={"STREAM_LEARNER_SNAPSHOT__LOST_STATE": "ignore"})


def test_every_run_option_layers_flag_over_environment_over_file(tmp_path: Path) -> None:
    """The run options were flags only: a model or strategy in the file or the environment was ignored."""
    from stream_learner.app.cli import build_parser
    from stream_learner.app.run_settings import settings_from_args

    config = tmp_path / "s.toml"
    config.write_text('[run]\nmodel = "arf"\nstrategy = "reset"\nwindow = 50\nstrategy_params = {lam = 1}\n[snapshot]\nevery_events = 7\n')
    parse = build_parser().parse_args

    def run(flags: list[str], env: dict[str, str]) -> Settings:
        with pytest.MonkeyPatch.context() as mp:
            for name in [n for n in os.environ if n.startswith("STREAM_LEARNER_")]:
                mp.delenv(name)
            for name, value in env.items():
                mp.setenv(name, value)
            return settings_from_args(parse(["run", "--config", str(config), *flags]))

    from_file = run([], {})
    assert (from_file.run.model, from_file.run.strategy, from_file.run.window, from_file.run.strategy_params, from_file.snapshot.every_events) == ("arf", "reset", 50, {"lam": 1}, 7)
    env = {"STREAM_LEARNER_RUN__MODEL": "hat", "STREAM_LEARNER_RUN__WINDOW": "60"}
    from_env = run([], env)
    assert (from_env.run.model, from_env.run.strategy, from_env.run.window) == ("hat", "reset", 60)
    flagged = run(["--model", "naive_bayes", "--strategy-param", "lam=2", "--snapshot-every", "9"], env)
    assert (flagged.run.model, flagged.run.window, flagged.run.strategy_params, flagged.snapshot.every_events) == ("naive_bayes", 60, {"lam": 2}, 9)
    assert run([], {}).run.model == "arf" and load_settings(environ={}).run.model == "hoeffding_tree"  # the default, where nothing names one
    with pytest.raises(ConfigError, match="invalid setting run.window: Input should be greater than or equal to 1"):
        run([], {"STREAM_LEARNER_RUN__WINDOW": "0"})


def test_max_batch_records_defaults_to_the_sources_batch_and_refuses_zero() -> None:
    assert load_settings(environ={}).kafka.max_batch_records is None  # the run uses connectors.base.DEFAULT_BATCH_SIZE
    assert load_settings(environ={"STREAM_LEARNER_KAFKA__MAX_BATCH_RECORDS": "100"}).kafka.max_batch_records == 100
    with pytest.raises(ConfigError, match="max_batch_records"):
        load_settings(overrides={"kafka": {"max_batch_records": 0}}, environ={})
