"""The Kafka security settings on the wire: TLS, SASL/PLAIN and SCRAM bytes.

The test broker (Tansu) speaks plaintext only, so each test puts a
:class:`~secure_proxy.SecureProxy` in front of a broker of its own that
advertises the proxy's port: every client connection (bootstrap, then the
broker's, from the CLI process and from its consumer and producer child
processes) goes through the proxy, which terminates TLS with a certificate
of a throwaway CA and/or runs the SASL exchange itself. The command-line
runs are configured only through ``STREAM_LEARNER_*`` variables, as a
deployment would be; the SCRAM checks run the connectors in process.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from secure_proxy import SecureProxy

from connectors.kafka import ensure_topics, make_producer
from stream_learner.settings import load_settings

pytestmark = pytest.mark.integration

trustme = pytest.importorskip("trustme")

EVENTS = 300
PASSWORD = "pl41n-s3cret-do-not-print"
CLI = [sys.executable, "-m", "stream_learner.app.cli"]


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: Any, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def server_tls(ca: Any) -> ssl.SSLContext:
    """The proxy's TLS side: a certificate for 127.0.0.1 signed by the throwaway CA (clients check the host name)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def secure_broker(broker_behind: Callable[[int], str]) -> Iterator[Callable[..., SecureProxy]]:
    """``start(tls=..., users=...)``: a proxy, and a broker behind it advertising the proxy; both stopped after the test."""
    proxies: list[SecureProxy] = []

    def start(**proxy: Any) -> SecureProxy:
        front = SecureProxy(("127.0.0.1", 0), **proxy).start()
        proxies.append(front)
        host, port = broker_behind(front.port).rsplit(":", 1)
        front.upstream = (host, int(port))
        return front

    try:
        yield start
    finally:
        for front in proxies:
            front.close()


def environment(bootstrap: str, redis_url: str, unique: str, **kafka: str) -> dict[str, str]:
    """The process environment of a deployment: everything in ``STREAM_LEARNER_*`` variables."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("STREAM_LEARNER_")}
    settings = {
        "KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA__INPUT_TOPIC": f"sec-in-{unique}",
        "KAFKA__PREDICTIONS_TOPIC": f"sec-pred-{unique}",
        "KAFKA__METRICS_TOPIC": f"sec-metrics-{unique}",
        "KAFKA__DEAD_LETTER_TOPIC": f"sec-dlq-{unique}",
        "KAFKA__GROUP_ID": f"sec-group-{unique}",
        "REDIS__URL": redis_url,
        "SNAPSHOT__SIGNING_KEY": "security-signing-key",
        "APP": f"sec-{unique}",
        **{f"KAFKA__{name.upper()}": value for name, value in kafka.items()},
    }
    return env | {f"STREAM_LEARNER_{name}": value for name, value in settings.items()}


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def summary_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def produce_then_run(env: dict[str, str], *options: str) -> tuple[dict[str, Any], list[subprocess.CompletedProcess[str]]]:
    """``produce`` a synthetic stream, then ``run --source kafka`` over it (``options`` before the command); the run's summary, and both processes."""
    produced = cli(env, *options, "produce", "--source", "synthetic:sea?every=150&concepts=2", "--max-events", str(EVENTS), "--json")
    assert summary_of(produced)["events"] == EVENTS
    done = cli(env, *options, "run", "--source", "kafka", "--stop-when-idle", "1.5", "--snapshot-every", "100", "--json")
    summary = summary_of(done)
    assert summary["events"] == summary["predictions"] == EVENTS and summary["dead_letters"] == 0
    assert summary["labelled"] == EVENTS and summary["snapshots"] >= 1  # Redis too
    return summary, [produced, done]


def committed_offset(env: dict[str, str]) -> int | None:
    """The input partition's offset committed by the run's consumer group, read through the same secured path."""
    settings = load_settings(environ=env)
    consumer = KafkaConsumer(group_id=settings.kafka.group_id, enable_auto_commit=False, **settings.kafka.client_config())
    try:
        return consumer.committed(TopicPartition(settings.kafka.input_topic, 0))
    finally:
        consumer.close()


def test_ssl_produce_and_run_through_tls(secure_broker: Callable[..., SecureProxy], server_tls: ssl.SSLContext, ca_file: str, redis_url: str, unique: str) -> None:
    proxy = secure_broker(tls=server_tls)
    env = environment(proxy.address, redis_url, unique, security_protocol="SSL", ssl_cafile=ca_file)

    produce_then_run(env)  # the proxy's CA is in no system store: the run verified it with ssl_cafile
    assert committed_offset(env) == EVENTS  # the group's offset, committed when the input ended (this used to fail the run)

    # every connection the proxy accepted completed a TLS handshake: bootstrap and broker
    # connections of the producer, of the run and of its consumer and producer children
    assert proxy.tls_handshakes >= 4
    assert proxy.connections == proxy.tls_handshakes


def test_sasl_ssl_plain_with_the_right_password(
    secure_broker: Callable[..., SecureProxy], server_tls: ssl.SSLContext, ca_file: str, redis_url: str, unique: str
) -> None:
    proxy = secure_broker(tls=server_tls, users={"alice": PASSWORD})
    env = environment(
        proxy.address, redis_url, unique, security_protocol="SASL_SSL", ssl_cafile=ca_file, sasl_mechanism="PLAIN", sasl_username="alice", sasl_password=PASSWORD
    )

    summary, processes = produce_then_run(env, "--verbose")  # debug logs too: kafka-python's would print the password

    assert proxy.tls_handshakes >= 4 and proxy.connections == proxy.tls_handshakes
    assert proxy.authenticated == ["alice"] * proxy.connections and proxy.refused == []  # every connection authenticated
    assert all(PASSWORD not in done.stdout + done.stderr for done in processes) and PASSWORD not in json.dumps(summary)
    logs = processes[1].stderr  # the run logged debug details, and kafka-python's records from INFO up only
    assert "DEBUG connectors.kafka" in logs and "INFO kafka." in logs and "DEBUG kafka." not in logs
    shown = cli(env, "run", "--source", "kafka", "--print-settings")
    assert shown.returncode == 0 and PASSWORD not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["kafka"]["sasl_password"] == "**********"


def test_sasl_with_a_wrong_password_fails_in_one_line(
    secure_broker: Callable[..., SecureProxy], server_tls: ssl.SSLContext, ca_file: str, redis_url: str, unique: str
) -> None:
    proxy = secure_broker(tls=server_tls, users={"alice": PASSWORD})
    wrong = "not-the-password"
    env = environment(
        proxy.address, redis_url, unique, security_protocol="SASL_SSL", ssl_cafile=ca_file, sasl_mechanism="PLAIN", sasl_username="alice", sasl_password=wrong,
        bootstrap_timeout_s="3",
    )

    started = time.monotonic()
    done = cli(env, "run", "--source", "kafka", "--stop-when-idle", "1.5", "--json", timeout=90)
    took = time.monotonic() - started

    assert done.returncode != 0 and proxy.authenticated == [] and "alice" in proxy.refused
    assert wrong not in done.stdout + done.stderr
    [line] = done.stderr.splitlines()  # one line, which names the cause: no retry logs, no traceback
    assert line.startswith(f"stream-learner: error: cannot reach Kafka at {proxy.address}: ")
    assert "SaslAuthenticationFailedError" in line and "invalid credentials for user alice" in line
    assert took < 20  # kafka-python retries until kafka.bootstrap_timeout_s (30 s by default) ends


def test_an_unreachable_cluster_is_one_line_also_when_no_topics_are_created(redis_url: str, unique: str) -> None:
    """Without topic creation the run's first contact is the input topic's partitions: still one line, before the dataflow starts."""
    with socket.socket() as s:  # a loopback port where nothing listens
        s.bind(("127.0.0.1", 0))
        address = "127.0.0.1:%d" % s.getsockname()[1]
    env = environment(address, redis_url, unique, create_topics="false", bootstrap_timeout_s="2")

    done = cli(env, "run", "--source", "kafka", "--json", timeout=60)

    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()  # no panic of the dataflow, no traceback, no retry logs
    assert line.startswith(f"stream-learner: error: cannot reach Kafka at {address}: ") and "ECONNREFUSED" in line


@pytest.mark.parametrize(("protocol", "mechanism"), [("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512")])
def test_scram_round_trip(
    secure_broker: Callable[..., SecureProxy], server_tls: ssl.SSLContext, ca_file: str, unique: str, protocol: str, mechanism: str
) -> None:
    tls = server_tls if protocol == "SASL_SSL" else None
    proxy = secure_broker(tls=tls, users={"bob": PASSWORD}, mechanism=mechanism)
    security = {"security_protocol": protocol, "sasl_mechanism": mechanism, "sasl_username": "bob", "sasl_password": PASSWORD}
    settings = load_settings(
        overrides={"kafka": {"bootstrap_servers": proxy.address, "input_topic": f"scram-{unique}", **security, **({"ssl_cafile": ca_file} if tls else {})}},
        environ={},
    )
    config, topic = settings.kafka.client_config(), settings.kafka.input_topic
    values = [f"event-{i}".encode() for i in range(50)]

    ensure_topics(config, [topic])
    producer = make_producer(config)
    for value in values:
        producer.send(topic, value=value)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(enable_auto_commit=False, **config)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        read: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(read) < len(values) and time.monotonic() < deadline:
            read += [m.value for batch in consumer.poll(timeout_ms=500).values() for m in batch]
    finally:
        consumer.close()

    assert read == values
    assert proxy.authenticated == ["bob"] * proxy.connections and proxy.refused == []
    assert proxy.tls_handshakes == (proxy.connections if tls else 0)
    # and the proxy's SCRAM check refuses a wrong password (a short bootstrap: kafka-python retries until it ends)
    wrong = {**config, "sasl_plain_password": "not-the-password", "bootstrap_timeout_ms": 1500}
    with pytest.raises(KafkaError):
        KafkaAdminClient(**wrong)
    assert "bob" in proxy.refused
