"""Two services on one recovery (or snapshot) directory: the second stops before any work, naming the first.

Real processes, a real broker: the lock is an ``flock`` the OS releases when
its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_crash_recovery import _command, _messages
from test_kafka_e2e import read_topic

from connectors.kafka import ensure_topics, make_producer
from connectors.private_dir import LOCK_FILE

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "stream_learner.app.cli"]


def _env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "STREAM_LEARNER_REDIS__URL": redis_url, "STREAM_LEARNER_SNAPSHOT__SIGNING_KEY": "lock-signing-key"}


def _wait_for_lock(directory: Path, service: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until ``service`` holds the directory's lock (its pid in the lock file)."""
    deadline = time.monotonic() + timeout
    while not ((directory / LOCK_FILE).exists() and (directory / LOCK_FILE).read_text().strip() == str(service.pid)):
        assert service.poll() is None and time.monotonic() < deadline, "the first service never locked its directory"
        time.sleep(0.05)


def _topics_holding_the_stream(kafka_bootstrap: str, name: str) -> tuple[dict[str, str], list[tuple[bytes, bytes]]]:
    """A run's topics (input, predictions, metrics, dead letters), the input holding the crash tests' stream; and that stream."""
    topics = {topic: f"{topic}-{name}" for topic in ("in", "pred", "metrics", "dlq")}
    client = {"bootstrap_servers": [kafka_bootstrap]}
    ensure_topics(client, list(topics.values()), partitions=2)
    messages = _messages()
    producer = make_producer(client)
    for key, value in messages:
        producer.send(topics["in"], key=key, value=value)
    producer.flush()
    producer.close()
    return topics, messages


def test_a_second_kafka_service_on_one_recovery_dir_stops_and_the_first_processes_everything_once(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path
) -> None:
    topics, messages = _topics_holding_the_stream(kafka_bootstrap, f"lock-{unique}")
    recovery = tmp_path / "recovery"
    command = _command(kafka_bootstrap, f"lock-{unique}", topics, recovery)  # stops 4 s after the last event
    env = _env(redis_url)

    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_lock(recovery, first)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        out, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert second.returncode == 2 and second.stdout == ""
    assert second.stderr.splitlines() == [
        f"stream-learner: error: the recovery directory {recovery} is in use by process {first.pid}: each service needs a recovery directory of its own"
    ]
    assert first.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["events"] == len(messages)
    ids = [p["id"] for p in read_topic(kafka_bootstrap, topics["pred"])]
    assert len(ids) == len(set(ids)) == len(messages)  # every event predicted once: the second service did nothing

    # a SIGKILLed holder leaves no stale lock: the next service on the directory runs
    killed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_lock(recovery, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    after = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout.splitlines()[-1])["events"] == 0  # the recovery state says everything was done


def test_a_second_embedded_run_on_one_output_folder_stops_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [*CLI, "run", "--source", "synthetic:sea", "--max-events", "3000", "--rate", "600", "--out", str(out), "--json", "--quiet"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_lock(out / "snapshots", first)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        out_text, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert second.returncode == 2
    assert second.stderr.splitlines() == [
        f"stream-learner: error: the snapshot directory {out / 'snapshots'} is in use by process {first.pid}: each service needs a snapshot directory of its own"
    ]
    assert first.returncode == 0, err
    assert json.loads(out_text.splitlines()[-1])["predictions"] == 3000
    assert len((out / "predictions.jsonl").read_bytes().splitlines()) == 3000  # the second run wrote nothing


def test_a_recovery_dir_others_may_write_is_refused_before_any_work(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> None:
    topics = {name: f"{name}-trust-{unique}" for name in ("in", "pred", "metrics", "dlq")}
    ensure_topics({"bootstrap_servers": [kafka_bootstrap]}, [topics["in"]], partitions=1)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    recovery.chmod(0o777)
    done = subprocess.run(_command(kafka_bootstrap, f"trust-{unique}", topics, recovery), env=_env(redis_url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"stream-learner: error: the recovery directory {recovery} is writable by group or others (mode 0777): "
        f"whoever can write it runs code in this service; make it private (chmod 700 {recovery})"
    ]
    assert list(recovery.iterdir()) == []  # no recovery state was created or read


def test_a_damaged_recovery_dir_stops_the_service_in_one_line_and_moved_away_every_key_resumes_from_its_snapshot(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path
) -> None:
    """Bytewax itself stops with a Rust panic and a Python traceback on a damaged recovery database."""
    topics, messages = _topics_holding_the_stream(kafka_bootstrap, f"damaged-{unique}")
    recovery = tmp_path / "recovery"
    command = _command(kafka_bootstrap, f"damaged-{unique}", topics, recovery)
    env = {**_env(redis_url), "STREAM_LEARNER_SNAPSHOT__RESUME": "true"}
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    [part] = sorted(recovery.glob("part-*.sqlite3"))
    damaged = bytearray(part.read_bytes())
    for i in range(100, len(damaged), 509):  # a disk that flipped bits all over the file
        damaged[i] ^= 0xFF
    part.write_bytes(bytes(damaged))

    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
    assert refused.stderr.splitlines() == [
        f"stream-learner: error: the recovery directory {recovery} is damaged: {part.name}: database disk image is malformed; restore it from a"
        " backup, or move the directory away to resume every model key from its latest snapshot (outputs since that snapshot are sent again)"
    ]
    assert len(read_topic(kafka_bootstrap, topics["pred"])) == len(messages)  # nothing was predicted again

    recovery.rename(tmp_path / "recovery.damaged")  # what the line says to do
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert sorted(summary["restored_keys"]) == sorted({json.loads(value)["key"] for _, value in messages})  # from their snapshots
    ids = [p["id"] for p in read_topic(kafka_bootstrap, topics["pred"])]
    assert set(ids) == {json.loads(value)["id"] for _, value in messages}  # every input predicted, some of them twice
