"""The JSONL sink's writers (a child process, or inline): byte-identical files, resume truncation, errors raised in the parent, no orphans."""

from __future__ import annotations

import datetime
import enum
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.files import JsonlSink, _JsonlPartition
from connectors.jsonl_writer import InlineJsonlWriter, JsonlWriter
from stream_learner.errors import SinkError
from stream_learner.predictions import Predictions

OPTION = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def _in_process(batches: list[list[Any]]) -> bytes:
    """What the in-process sink wrote: each record of each item of each batch, in order."""
    return b"".join(orjson.dumps(record, option=OPTION) for items in batches for item in items for record in item)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) if the block takes longer than ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still waiting after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Colour(enum.Enum):
    RED = "red"


class Label(str):
    """A str subclass: marshal refuses it, orjson writes it as a string."""


MIXED = [
    [
        Predictions("k1", 1.5, [("in:0:0", True, {False: 0.25, True: 0.75}, 3, 1), ("in:0:1", None, None, 0, 0)]),
        [{"type": "metrics", "key": "k1", "accuracy": 0.5, "nested": {"a": [1, 2.5, None, True], "é": "ü"}, 7: "int key", None: False}],
    ],
    [
        [],
        [{"float key": {0.5: 1, 2: [{}]}, "big": 2**62, "neg": -1e-300, "tuple": (1, "x")}, {"empty": {}}],
        Predictions("k2", 2.0, [("in:0:2", "cat", {"cat": 0.9, "dog": 0.1}, 1, 0)]),
        Predictions("k3", 3.0, []),
    ],
]


WRITERS = pytest.mark.parametrize("process", [True, False], ids=["process", "inline"])


@WRITERS
def test_the_file_is_byte_identical_to_in_process_encoding_and_snapshot_is_its_size(tmp_path: Path, process: bool) -> None:
    path = tmp_path / "sub" / "out.jsonl"  # the folder is created
    part = _JsonlPartition(path, None, process)
    assert type(part._writer) is (JsonlWriter if process else InlineJsonlWriter)
    sizes = []
    for items in MIXED:
        part.write_batch(items)
        sizes.append(part.snapshot())
        assert sizes[-1] == path.stat().st_size  # in the file when snapshot returns, before any close
    part.close()
    expected = _in_process(MIXED)
    assert path.read_bytes() == expected
    assert sizes == [len(_in_process(MIXED[:1])), len(expected)]


def test_a_batch_marshal_cannot_carry_is_encoded_in_the_parent_as_before(tmp_path: Path) -> None:
    odd = [[{"at": datetime.datetime(2024, 5, 6, 7, 8, 9, 10), "colour": Colour.RED, "label": Label("x"), Label("k"): 1}]]
    batches = [MIXED[0], odd, MIXED[1]]
    writer = JsonlWriter(tmp_path / "out.jsonl")
    for items in batches:
        writer.write(items)
    writer.close()
    expected = _in_process(batches)
    assert b'"at":"2024-05-06T07:08:09.000010"' in expected  # orjson's own datetime, not str()'s
    assert (tmp_path / "out.jsonl").read_bytes() == expected


@WRITERS
def test_resume_truncates_to_the_recovered_size_and_appends(tmp_path: Path, process: bool) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}\n{"written after the epoch":3}\n')
    part = _JsonlPartition(path, 16, process)
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'  # at once, as the in-process sink did
    assert part.snapshot() == 16
    part.write_batch([[{"c": 3}]])
    assert part.snapshot() == 24
    part.close()
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n{"c":3}\n'


def test_the_inline_writer_raises_what_the_process_reports_and_the_failure_sticks(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    part = JsonlSink(path, process=False).build_part("out", path.name, None)
    part.write_batch([[{"ok": 1}]])
    with pytest.raises(SinkError, match=r"cannot encode a record for .*metrics\.jsonl: Type is not JSON serializable: set"):
        part.write_batch([[{"a set": {1, 2}}]])
    with pytest.raises(SinkError, match="Type is not JSON serializable: set"):
        part.snapshot()  # the failure sticks
    part.close()
    assert path.read_bytes() == b'{"ok":1}\n'
    if Path("/dev/full").exists():
        writer = InlineJsonlWriter("/dev/full")
        with pytest.raises(SinkError, match="cannot write /dev/full: No space left on device"):
            writer.write([[{"x": "y" * 100_000}]])
            writer.size()
        writer.close()


def test_a_new_run_empties_the_file_and_a_sink_given_nothing_starts_no_process(tmp_path: Path) -> None:
    path = tmp_path / "dead_letters.jsonl"
    path.write_bytes(b"old\n")
    part = JsonlSink(path).build_part("out", path.name, None)
    assert path.read_bytes() == b""
    part.write_batch([])
    part.write_batch([[]])
    assert part.snapshot() == 0
    assert part._writer.pid is None
    part.close()


def test_a_record_orjson_refuses_fails_the_next_call_and_close_only_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "out.jsonl"
    part = _JsonlPartition(path, None)
    part.write_batch([[{"ok": 1}]])
    assert part.snapshot() == 9
    part.write_batch([[{"a set": {1, 2}}]])  # marshal carries it; orjson refuses it in the child
    with _deadline(10), pytest.raises(SinkError, match=r"cannot encode a record for .*out\.jsonl: Type is not JSON serializable: set"):
        part.snapshot()
    with pytest.raises(SinkError, match="Type is not JSON serializable: set"):
        part.write_batch([[{"ok": 2}]])  # the failure sticks
    with caplog.at_level(logging.ERROR):
        part.close()  # raised already: Bytewax calls close while unwinding, where raising aborts
    assert not caplog.records
    assert path.read_bytes() == b'{"ok":1}\n'


def test_a_failure_first_seen_by_close_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    part = _JsonlPartition(tmp_path / "out.jsonl", None)
    part.write_batch([[{"a set": {1}}]])
    with _deadline(10), caplog.at_level(logging.ERROR):
        part.close()
    assert [r.getMessage() for r in caplog.records] == [f"cannot encode a record for {tmp_path / 'out.jsonl'}: Type is not JSON serializable: set"]
    writer = JsonlWriter(tmp_path / "other.jsonl")
    writer.write([[{"a set": {1}}]])
    with _deadline(10), pytest.raises(SinkError, match="Type is not JSON serializable: set"):
        writer.close()  # the writer itself raises it


def test_a_numpy_value_still_fails_now_with_a_hint(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    writer = JsonlWriter(tmp_path / "out.jsonl")
    writer.write([[{"p": numpy.float64(0.5)}]])  # marshal carries it as its raw bytes; orjson refuses numpy without OPT_SERIALIZE_NUMPY anyway
    with _deadline(10), pytest.raises(SinkError, match="bytes .marshal carries numpy values"):
        writer.size()
    writer.close()


def test_an_os_error_in_the_child_is_raised_in_the_parent(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    writer = JsonlWriter("/dev/full")
    writer.write([[{"x": "y" * 100_000}]])
    with _deadline(10), pytest.raises(SinkError, match="cannot write /dev/full: No space left on device"):
        writer.size()
    writer.close()


def test_a_child_that_dies_while_the_parent_waits_on_its_full_pipe_fails_the_write(tmp_path: Path) -> None:
    part = _JsonlPartition(tmp_path / "out.jsonl", None)
    part.write_batch([[{"a": 1}]])
    pid = part._writer.pid
    os.kill(pid, signal.SIGSTOP)  # it reads nothing more: the pipe fills up and the write blocks
    killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
    killer.start()
    big = [[{"id": i, "text": f"{i:0100d}"} for i in range(30_000)]]  # 3 MB marshalled (distinct strings): more than the pipe holds
    try:
        with _deadline(10), pytest.raises(SinkError, match=r"the JSONL writer process of .*out\.jsonl exited unexpectedly \(exit code -9\)"):
            part.write_batch(big)
    finally:
        killer.join()
    with pytest.raises(SinkError, match="exited unexpectedly"):
        part.snapshot()  # the failure sticks
    part.close()


def test_a_dead_child_fails_the_next_call_without_hanging(tmp_path: Path) -> None:
    writer = JsonlWriter(tmp_path / "out.jsonl")
    writer.write([[{"a": 1}]])
    os.kill(writer.pid, signal.SIGKILL)
    with _deadline(10), pytest.raises(SinkError, match="exited unexpectedly"):
        writer.size()
    writer.close()

    writer = JsonlWriter(tmp_path / "other.jsonl")
    writer.write([[{"a": 1}]])
    pid = writer.pid
    os.kill(pid, signal.SIGKILL)
    assert _wait_gone(pid)
    with _deadline(10), pytest.raises(SinkError, match="exited unexpectedly"):
        writer.write([[{"b": 2}]])


def test_a_terminals_ctrl_c_does_not_reach_the_child(tmp_path: Path) -> None:
    """A terminal sends SIGINT to its foreground process group: the child runs in a session of its own, outside it."""
    writer = JsonlWriter(tmp_path / "out.jsonl")
    writer.write([[{"a": 1}]])
    assert writer.size() == 8
    assert os.getsid(writer.pid) == writer.pid and os.getpgid(writer.pid) != os.getpgid(0)
    writer.close()


def test_close_stops_the_child(tmp_path: Path) -> None:
    writer = JsonlWriter(tmp_path / "out.jsonl")
    writer.write([[{"a": 1}]])
    pid = writer.pid
    writer.close()
    writer.close()  # idempotent
    assert (tmp_path / "out.jsonl").read_bytes() == b'{"a":1}\n'  # flushed when close returns
    assert _wait_gone(pid, 5.0)  # the child's exit follows, reaped by a thread


PARENT = """
import subprocess, sys, time
from pathlib import Path
from connectors.files import _JsonlPartition
part = _JsonlPartition(Path(sys.argv[1]), None)
part.write_batch([[{"a": 1}]])
# another process holds the pipe's write end, so the child sees no EOF when this one dies: only its parent watch ends it
holder = subprocess.Popen(["sleep", "60"], pass_fds=[part._writer._commands.fileno()])
print(part._writer.pid, holder.pid, flush=True)
time.sleep(60)
"""


def test_the_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "out.jsonl")], stdout=subprocess.PIPE, cwd=repo)
    holder = None
    try:
        with _deadline(30):
            child, holder = map(int, parent.stdout.readline().split())  # type: ignore[union-attr]
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdout.close()  # type: ignore[union-attr]
    try:
        assert _wait_gone(child, 5.0), f"the writer process {child} outlived its SIGKILLed parent"
    finally:
        if holder is not None:
            os.kill(holder, signal.SIGKILL)


SCRIPT = """
import sys
from pathlib import Path
from connectors.files import _JsonlPartition

print("top level", flush=True)  # no __main__ guard: a child that ran this script again would print it twice, then fail
part = _JsonlPartition(Path(sys.argv[1]), None)
part.write_batch([[{"a": 1}]])
print(part.snapshot(), flush=True)
part.close()
"""


def test_the_child_does_not_run_the_main_script_again(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out.jsonl")], capture_output=True, text=True, env=env, timeout=60)
    assert (done.returncode, done.stdout) == (0, "top level\n8\n"), done.stderr


def test_a_run_starts_one_writer_process_for_its_predictions_and_writes_metrics_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_learner.app.runner import RunOptions, run

    started: list[str] = []
    popen = subprocess.Popen

    def recording_popen(args: list[str], **kwargs: Any) -> Any:
        started.append(args[-2])  # the file
        return popen(args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    summary = run(RunOptions(source="synthetic:sea?every=500&concepts=3", out=tmp_path, progress=False, console=False))
    assert started == [str((tmp_path / "predictions.jsonl").resolve())]
    assert len((tmp_path / "predictions.jsonl").read_bytes().splitlines()) == summary["predictions"] == 1500
    metrics = [orjson.loads(line) for line in (tmp_path / "metrics.jsonl").read_bytes().splitlines()]
    assert metrics[-1]["type"] == "metrics" and metrics[-1]["labelled"] == 1500
