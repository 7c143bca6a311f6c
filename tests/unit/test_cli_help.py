"""Help texts are plain text: no reStructuredText markup from the docstrings they come from."""

from __future__ import annotations

import pytest

from stream_learner.app.cli import main


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
