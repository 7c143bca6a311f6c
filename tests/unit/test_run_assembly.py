"""The run assembly: what a run holds is closed in reverse order, whatever fails; exception chains walked once."""

from __future__ import annotations

import logging
import socket
from contextlib import ExitStack
from pathlib import Path

import pytest

from connectors.memory import MemorySource
from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.assembly import closing, rollback_reader, run_profile
from stream_learner.app.execution import exception_chain, our_error
from stream_learner.app.runner import EmbeddedProfile, RunOptions
from stream_learner.app.stores import PatientReads
from stream_learner.engine import EngineConfig
from stream_learner.errors import SinkError, SnapshotError, StreamLearnerError
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import load_latest_valid


def _closer(name: str, closed: list[str], fails: bool = False):  # noqa: ANN202
    def close() -> None:
        closed.append(name)
        if fails:
            raise OSError(f"{name} cannot close")

    return close


def test_every_resource_is_closed_in_reverse_order_even_when_an_earlier_close_raises() -> None:
    closed: list[str] = []
    with pytest.raises(OSError, match="third cannot close"):
        with ExitStack() as stack:
            closing(stack, _closer("first", closed), "first")
            closing(stack, _closer("second", closed, fails=True), "second")
            closing(stack, _closer("third", closed, fails=True), "third")
    assert closed == ["third", "second", "first"]  # the first failing close is the one raised; the others still ran


def test_a_close_that_fails_after_the_run_failed_is_logged_and_the_runs_own_error_is_raised(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []
    with pytest.raises(SinkError, match="the run's own error"):
        with ExitStack() as stack:
            closing(stack, _closer("store", closed), "the store")
            closing(stack, _closer("writer", closed, fails=True), "the writer")
            raise SinkError("the run's own error")
    assert closed == ["writer", "store"]
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line == "the writer could not be closed after the run failed: writer cannot close"


def test_an_embedded_run_that_fails_mid_stream_closes_what_it_opened_and_raises_its_own_error(tmp_path: Path) -> None:
    """Predictions the JSONL writer cannot encode (bytes labels) fail mid-run; a resource whose close fails too does not hide that."""
    closed: list[str] = []

    class Profile(EmbeddedProfile):
        def open(self, stack: ExitStack):  # noqa: ANN202
            closing(stack, _closer("opened first", closed), "opened first")
            closing(stack, _closer("opened second", closed, fails=True), "opened second")
            return super().open(stack)

    pairs = [({"x": float(i % 7)}, b"yes" if i % 2 else b"no") for i in range(3000)]
    options = RunOptions(engine=EngineConfig(learner=LearnerSpec("naive_bayes")), out=tmp_path / "out", progress=False, console=False)
    profile = Profile(options, None, MemorySource(pairs))
    with pytest.raises(SinkError, match="cannot encode a record for .*predictions.jsonl"):
        run_profile(profile)
    assert closed == ["opened second", "opened first"]


def test_the_chain_is_walked_once_through_a_cycle_cause_before_context() -> None:
    outer, cause, context = RuntimeError("outer"), KeyError("cause"), ValueError("context")
    outer.__cause__, outer.__context__ = cause, context
    cause.__cause__ = outer  # a cycle: ends instead of looping for ever
    assert list(exception_chain(outer)) == [outer, cause]
    assert our_error(outer) is None
    ours = StreamLearnerError("ours")
    cause.__cause__ = ours
    assert list(exception_chain(outer)) == [outer, cause, ours] and our_error(outer) is ours


def test_a_load_that_redis_never_answers_stops_with_one_line_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """A real client against a port where nothing listens: tried several times, said once, then one error line (never a fresh start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisSnapshotStore.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=1.0)
    patient = PatientReads(store, timeout_s=0.3, retry_s=0.05)
    with pytest.raises(SnapshotError) as caught:
        load_latest_valid(patient, "a", b"key")
    assert str(caught.value).startswith("cannot load the snapshot of model key 'a': Redis has not answered for 0.3 s (snapshot.outage_timeout_s): ")
    lines = [r.getMessage() for r in caplog.records if r.name == "stream_learner.app.stores"]
    assert len(lines) == 1 and lines[0].startswith("snapshot of model key 'a' not loaded ("), lines


def test_a_rollback_while_redis_does_not_answer_waits_then_is_refused_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """An operator's rollback reads the version it names through the run's patient reads: never a Redis error out of the dataflow."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisSnapshotStore.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=1.0)
    target = rollback_reader(PatientReads(store, timeout_s=0.3, retry_s=0.05), b"key")
    assert target("a", 3) is None  # answered as a version that cannot be read
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("snapshot of model key 'a' not loaded (") for line in lines), lines
    assert any("rollback of key 'a' to 3" in line and "Redis has not answered for 0.3 s" in line for line in lines), lines
