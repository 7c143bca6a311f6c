"""The console follows the published model: one line per concept boundary, promotions, commands, and an earlier concept's model coming back."""

from __future__ import annotations

from stream_learner.app.console import ConsoleLines


def test_the_console_shows_boundaries_once_reuse_promotions_and_commands_and_not_a_challengers_figures() -> None:
    lines: list[str] = []
    console = ConsoleLines(lines.append)
    evidence = {"test": "mcnemar_exact", "statistic": 1.0, "p_value": 0.001, "n": 150, "alpha": 0.002, "live_error": 0.2, "stored_error": 0.1}
    console.show(
        [
            {"type": "drift", "key": "k", "detector": "task", "at_event": 100, "concept": 1, "ts": 0.0},
            {"type": "drift", "key": "k", "detector": "adwin", "at_event": 150, "concept": 1, "ts": 0.0},  # inside the task's concept
            {"type": "drift", "key": "k", "detector": "recurring", "at_event": 400, "concept": 1, "reused_concept": 0, "evidence": evidence, "ts": 0.0},
            {"type": "drift", "key": "k", "detector": "adwin", "at_event": 450, "concept": 2, "champion": False, "candidate": "arf", "ts": 0.0},
            {"type": "control", "key": "k", "id": "c1", "action": "pause-learning", "arg": None, "status": "applied", "at_event": 500, "ts": 0.0},
        ]
    )
    assert len(lines) == 3
    assert "concept 0's model is back" in lines[1] and lines[2].startswith("control  key=k")
