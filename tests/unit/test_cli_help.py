"""Help texts are plain text: no reStructuredText markup from the docstrings they come from."""

from __future__ import annotations

import re

import pytest

from stream_learner.app.cli import main
from stream_learner.app.run_settings import KAFKA_ONLY


@pytest.mark.parametrize("command", [[], ["run"], ["produce"], ["strategies"], ["dashboard"], ["bench", "forgetting"]])
def test_help_has_no_backticks(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    text = capsys.readouterr().out
    assert exited.value.code == 0 and "usage: stream-learner" in text
    assert "`" not in text, text


def test_importing_the_cli_stays_light() -> None:
    """Every spawned child (Kafka producer, consumer) imports the command's module again: the heavy libraries wait until a command needs them."""
    import subprocess
    import sys

    code = "import sys, stream_learner.app.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'pydantic_settings', 'bytewax', 'river', 'torch'}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert loaded == "[]"


def test_every_flag_of_the_kafka_group_is_known_to_be_kafka_only_or_read_by_every_run(capsys: pytest.CaptureFixture[str]) -> None:
    """A new flag in that group must be classified, or an embedded run would ignore it silently."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    section = text.split("Kafka deployment (--source kafka):", 1)[1].split("\n\n", 2)[1]  # after the group's description
    flags = set(re.findall(r"^  (--[a-z-]+)", section, flags=re.MULTILINE))
    assert flags == {f"--{name.replace('_', '-')}" for name in KAFKA_ONLY} | {"--snapshot-seconds", "--app"}
