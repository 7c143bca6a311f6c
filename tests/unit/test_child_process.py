"""The connectors' child-process supervisor: messages both ways, stop then kill, one line for a silent death, Ctrl-C and the parent's death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.child_process import ChildProcess, bounded_queue

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _echo(commands: Any, results: Any, prefix: str) -> None:
    """A child: answers each command with ``prefix`` + it, stops on ``None``."""
    while (message := commands.recv() if hasattr(commands, "recv") else commands.get()) is not None:
        results.send(prefix + message)


def _deaf(commands: Any, results: Any) -> None:
    """A child that never stops by itself."""
    results.send("ready")
    while True:
        time.sleep(1)


def _dies(commands: Any, results: Any, code: int) -> None:
    os._exit(code)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_messages_go_both_ways_and_a_child_told_to_stop_exits_cleanly() -> None:
    child = ChildProcess.spawn("the echo process", _echo, ("re: ",), name="echo")
    child.commands.send("a")
    assert child.results.recv() == "re: a"
    child.commands.send(None)
    assert child.stop(10.0) == 0
    with pytest.raises(EOFError):  # the child held the only writer of its results
        child.results.recv()


def test_a_channel_of_the_callers_own_replaces_the_commands_pipe() -> None:
    queue = bounded_queue(2)
    child = ChildProcess.spawn("the echo process", _echo, ("re: ",), name="echo", commands=queue)
    assert child.commands is queue
    queue.put("b")
    assert child.results.recv() == "re: b"
    queue.put(None)
    assert child.stop(10.0) == 0
    queue.close()


def test_a_child_that_does_not_stop_is_killed_after_the_timeout_and_reaped() -> None:
    child = ChildProcess.spawn("the deaf process", _deaf, (), name="deaf")
    assert child.results.recv() == "ready"
    assert child.stop(0.2) == -signal.SIGKILL
    assert not _alive(child.pid)


def test_a_child_that_dies_without_a_word_is_said_in_one_line() -> None:
    child = ChildProcess.spawn("the test process", _dies, (7,), name="dies")
    with pytest.raises(EOFError):
        child.results.recv()
    assert child.exit_message() == "the test process exited unexpectedly (exit code 7)"


def test_ctrl_c_is_the_parents_to_handle() -> None:
    child = ChildProcess.spawn("the deaf process", _deaf, (), name="deaf")
    assert child.results.recv() == "ready"
    os.kill(child.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole process group
    assert child.exit_code(0.3) is None
    assert child.stop(0.0) == -signal.SIGKILL


PARENT = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from test_child_process import _deaf
from connectors.child_process import ChildProcess

if __name__ == "__main__":
    child = ChildProcess.spawn("the deaf process", _deaf, (), name="deaf")
    child.results.recv()
    fork = os.fork()  # holds every descriptor of this process, the child's pipes and its sentinel too
    if fork == 0:
        time.sleep(60)
        os._exit(0)
    print(child.pid, fork, flush=True)
    time.sleep(60)
"""


def test_the_child_exits_with_its_parent_even_while_a_fork_of_the_parent_lives(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    repo = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, str(script), str(Path(__file__).parent)], stdout=subprocess.PIPE, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    fork = None
    try:
        child, fork = map(int, parent.stdout.readline().split())  # type: ignore[union-attr]
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdout.close()  # type: ignore[union-attr]
    try:
        assert _wait_gone(child, 5.0), f"the child {child} outlived its SIGKILLed parent while the parent's fork {fork} lived"
    finally:
        if fork is not None:
            os.kill(fork, signal.SIGKILL)
