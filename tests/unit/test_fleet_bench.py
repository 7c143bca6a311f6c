"""benchmarks/fleet.py's plain river loop: the library's own cost of many keys, over the events a fleet run reads."""

from __future__ import annotations

from pathlib import Path

from benchmarks.fleet import in_child, plain_loop, write_events


def test_the_plain_loop_runs_a_model_per_key_over_every_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 300, keys=7)
    row = plain_loop(path, "logreg")
    assert (row["source"], row["model"], row["keys"], row["events"]) == ("plain", "logreg", 7, 300)
    assert row["cpu_us_per_event"] > 0


def test_the_plain_loop_runs_in_a_fresh_interpreter(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 100, keys=3)
    assert in_child(plain_loop, path, "logreg")["keys"] == 3
