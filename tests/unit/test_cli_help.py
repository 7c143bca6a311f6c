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
