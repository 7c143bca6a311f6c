from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from stream_learner.app.execution import execute


def _flow(step, out: list) -> Dataflow:
    flow = Dataflow("t")
    op.output("out", op.map("step", op.input("in", flow, TestingSource(range(5))), step), TestingSink(out))
    return flow


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dataflow_runs_to_its_end_on_one_or_more_workers(workers: int) -> None:
    out: list[int] = []
    execute(_flow(lambda x: x * 2, out), epoch_seconds=1.0, workers=workers)
    assert sorted(out) == [0, 2, 4, 6, 8]


def test_ctrl_c_inside_an_operator_is_a_keyboard_interrupt_not_a_bytewax_error() -> None:
    def interrupted(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(_flow(interrupted, []), epoch_seconds=1.0)


def test_other_errors_keep_their_bytewax_wrapper() -> None:
    def broken(x: int) -> int:
        raise ValueError("boom")

    with pytest.raises(Exception, match="boom|step") as caught:
        execute(_flow(broken, []), epoch_seconds=1.0)
    assert not isinstance(caught.value, KeyboardInterrupt)


def test_a_signal_inside_graceful_signals_sets_stop_and_a_second_one_meets_the_previous_handler() -> None:
    import os
    import signal
    import threading

    from stream_learner.app.execution import graceful_signals

    stop = threading.Event()
    before = signal.getsignal(signal.SIGINT)
    with graceful_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)  # handled on the main thread before the next bytecode
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # Python's own handler again
    assert signal.getsignal(signal.SIGINT) is before


def test_a_stopped_source_ends_the_stream_after_the_batch_it_read() -> None:
    from connectors.memory import MemorySource

    source = MemorySource([({"x": i}, i) for i in range(10)], batch_size=3)
    read: list[int] = []

    def on_read(n: int) -> None:
        read.append(n)
        if sum(read) >= 6:
            source.stop.set()

    source.on_read = on_read
    out: list = []
    flow = Dataflow("stopped")
    op.output("out", op.input("in", flow, source), TestingSink(out))
    execute(flow, epoch_seconds=1.0)
    assert read == [3, 3] and sum(len(pairs) for batch in out for pairs in batch.items) == 6  # both batches read went on; no third was read


@pytest.mark.parametrize("cut", range(1, 60, 7))
def test_the_panic_filter_hides_a_report_however_the_writes_split_it(cut: int) -> None:
    from stream_learner.app.execution import PanicFilter

    text = b"metrics key=a\n\r  1,000 events\nthread '<unnamed>' panicked at src/outputs.rs:1:2:\nBox<dyn Any>\nnote: run with RUST_BACKTRACE=1\nmore\n"
    f = PanicFilter()
    passed = f.feed(text[:cut]) + f.feed(text[cut:]) + f.rest()
    assert passed == b"metrics key=a\n\r  1,000 events\n" and f.panicked


def test_the_panic_filter_passes_lines_that_only_look_like_a_report() -> None:
    from stream_learner.app.execution import PanicFilter

    f = PanicFilter()
    text = b"thread 'x' is fine\nthread 'x' panicked\nthe thread 'y' panic\nthread"
    assert f.feed(text) + f.rest() == text and not f.panicked


def test_the_panic_filter_hides_a_report_that_starts_after_a_progress_line() -> None:
    from stream_learner.app.execution import PanicFilter

    f = PanicFilter()
    passed = f.feed(b"\r\x1b[2K  1,200 events   600 ev/s") + f.feed(b"thread '<unnamed>' panicked at src/operators.rs:1:2:\nBox<dyn Any>\n")
    assert passed == b"\r\x1b[2K  1,200 events   600 ev/s" and f.panicked


def test_rust_panics_hidden_passes_on_stderr_until_a_report_and_all_of_it_again_after(capfd: pytest.CaptureFixture[str]) -> None:
    import os
    import sys

    from stream_learner.app.execution import rust_panics_hidden

    with rust_panics_hidden():
        print("from python", file=sys.stderr)
        os.write(2, b"straight to fd 2\n")
        os.write(2, b"thread '<unnamed>' panicked at src/outputs.rs:364:37:\nBox<dyn Any>\n")
        os.write(2, b"unwinding\n")
    os.write(2, b"stream-learner: error: the cause\n")
    assert capfd.readouterr().err == "from python\nstraight to fd 2\nstream-learner: error: the cause\n"


_PEER = """
import sys, time, pathlib
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, TestingSink
from stream_learner.app.execution import execute
from stream_learner.errors import ClusterError

addresses, process_id, mark = sys.argv[1].split(","), int(sys.argv[2]), pathlib.Path(sys.argv[3])

def step(x):
    mark.write_text(str(x))
    time.sleep(0.01)
    return x

flow = Dataflow("peers")
keyed = op.key_on("key", op.map("step", op.input("in", flow, TestingSource(range(100_000))), step), lambda x: str(x % 7))
op.output("out", op.stateful_map("count", keyed, lambda n, x: ((n or 0) + 1, x)), TestingSink([]))
try:
    execute(flow, epoch_seconds=1.0, addresses=addresses, process_id=process_id)
except ClusterError as exc:
    print(exc)
    sys.exit(3)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("killed", [0, 1])
def test_a_killed_cluster_peer_is_one_cluster_error_in_the_other_process(killed: int, tmp_path) -> None:
    """A real two-process Bytewax cluster; SIGKILL one mid-stream: the other recognises the lost peer (:func:`peer_lost`) and stops."""
    import signal
    import subprocess
    import sys
    import time

    ports = {_free_port(), _free_port()}
    assert len(ports) == 2
    addresses = ",".join(f"127.0.0.1:{port}" for port in ports)
    marks = [tmp_path / f"mark-{i}" for i in range(2)]
    processes = [
        subprocess.Popen([sys.executable, "-c", _PEER, addresses, str(i), str(marks[i])], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for i in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while not any(mark.exists() for mark in marks):  # the stream is flowing: both processes joined
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
            time.sleep(0.05)
        processes[killed].send_signal(signal.SIGKILL)
        out, _ = processes[1 - killed].communicate(timeout=60)
    finally:
        for p in processes:
            p.kill()
            p.communicate()
    assert processes[1 - killed].returncode == 3, out
    line = out.decode().splitlines()[-1]  # timely's "retrying" lines may come first
    assert line.startswith(f"process {1 - killed} lost its connection to the cluster (") and " thread panic" in line, out


def test_only_bytewaxs_connection_panic_is_a_lost_peer() -> None:
    from stream_learner.app.execution import peer_lost

    assert not peer_lost(RuntimeError("Send thread panic"))  # the text alone: not Bytewax's panic
    assert not peer_lost(ValueError("boom"))
    assert not peer_lost(KeyboardInterrupt())
