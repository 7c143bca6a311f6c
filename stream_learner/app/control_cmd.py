"""``stream-learner control ACTION KEY [ARG]``: sign an operator's command, send it to the control topic, wait for the engine's answer.

The engine reads the control topic (``kafka.control_topic``), checks each
command's signature (``control.signing_key``, else the snapshot signing
key), applies it at its place in the key's stream and answers with a
``control`` record on the metrics topic: ``applied``, ``refused`` (with the
reason) or ``duplicate``. This command prints that answer; its exit status is
0 when applied, 1 otherwise (refused, or no answer within ``--wait``).
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import orjson

from stream_learner.app.args import plain
from stream_learner.control import ACTIONS, Command, decode_command, sign_command
from stream_learner.errors import ConfigError
from stream_learner.events import Origin
from stream_learner.settings import Settings, load_settings


def add_parser(commands: Any) -> None:
    """The ``control`` subcommand."""
    p = commands.add_parser("control", help="send an operator's command to a running engine (promote, rollback, pause-learning, resume-learning, snapshot)", description=plain(__doc__.split("\n\n")[0]))
    p.add_argument("action", choices=ACTIONS, help="promote KEY CANDIDATE, rollback KEY VERSION|concept:N, pause-learning KEY, resume-learning KEY, snapshot KEY")
    p.add_argument("key", metavar="KEY", help="the model key")
    p.add_argument("arg", nargs="?", default=None, metavar="ARG", help="the candidate to promote, or what to roll back to: a snapshot version, or concept:N (the model that served concept N when it last ended)")
    p.add_argument("--config", default=None, metavar="FILE", help="settings file (TOML or JSON), as the engine's")
    p.add_argument("--bootstrap-servers", default=None, metavar="HOST:PORT[,...]")
    p.add_argument("--control-topic", default=None, help="the engine's control topic (default: the settings' kafka.control_topic)")
    p.add_argument("--metrics-topic", default=None, help="where the engine answers (default: the settings' kafka.metrics_topic)")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS", help="how long to wait for the engine's answer, 0 to send and not wait (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the answer record as JSON")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"kafka": {}}
    for flag, name in (("bootstrap_servers", "bootstrap_servers"), ("control_topic", "control_topic"), ("metrics_topic", "metrics_topic")):
        if getattr(args, flag) is not None:
            overrides["kafka"][name] = getattr(args, flag)
    settings = load_settings(args.config, overrides)
    if args.wait < 0:
        raise ConfigError(f"--wait must not be negative, not {args.wait}")
    command = command_of(args.action, args.key, args.arg)
    answer = send(settings, command, wait=args.wait)
    if answer is None:
        print(f"sent command {command.id} ({command.action} {command.key}{'' if command.arg is None else ' ' + str(command.arg)}); no answer " + ("awaited" if not args.wait else f"within {args.wait:g} s: is the engine running and reading {settings.kafka.control_topic}?"))
        return 0 if not args.wait else 1
    print(orjson.dumps(answer).decode() if args.json else describe_answer(answer))
    return 0 if answer["status"] == "applied" else 1


def command_of(action: str, key: str, arg: str | None, now: float | None = None) -> Command:
    """The command the arguments describe, with a fresh id (one :class:`ConfigError` line when they do not fit).

    >>> command_of("rollback", "k", "3", now=5.0).arg, command_of("rollback", "k", "concept:1", now=5.0).arg
    (3, 'concept:1')
    >>> command_of("rollback", "k", None)
    Traceback (most recent call last):
    ...
    stream_learner.errors.ConfigError: rollback needs a snapshot version (an integer >= 1) or 'concept:N' (N >= 0) as arg, not None
    """
    value: str | int | None = arg
    if action == "rollback" and arg is not None and arg.isdigit():
        value = int(arg)
    command = Command(uuid.uuid4().hex, key, action, value, time.time() if now is None else now)  # type: ignore[arg-type]  # the action is checked below, as the engine checks it
    checked = decode_command(sign_command(command, b"check"), Origin("control", 0, 0), b"check", now=command.issued_at)
    if isinstance(checked, dict):
        raise ConfigError(checked["error"].removeprefix("invalid control command: "))
    return command


def describe_answer(answer: dict[str, Any]) -> str:
    """The engine's answer as one line.

    >>> describe_answer({"type": "control", "key": "k", "id": "c1", "action": "rollback", "arg": 3, "status": "refused", "reason": "no version 3 of key 'k'", "at_event": 10, "ts": 0.0})
    "rollback k 3: refused (no version 3 of key 'k') at event 10"
    >>> describe_answer({"type": "control", "key": "k", "id": "c2", "action": "rollback", "arg": "concept:1", "status": "applied", "version": 7, "at_event": 12, "ts": 0.0})
    'rollback k concept:1: applied (version 7 installed) at event 12'
    """
    arg = "" if answer.get("arg") is None else f" {answer['arg']}"
    reason = f" ({answer['reason']})" if answer.get("reason") else ""
    if answer.get("version") is not None:
        reason = f" (version {answer['version']} installed)"
    return f"{answer['action']} {answer['key']}{arg}: {answer['status']}{reason} at event {answer['at_event']}"


def send(settings: Settings, command: Command, wait: float) -> dict[str, Any] | None:
    """Send ``command`` signed; the engine's answer to it within ``wait`` seconds, else ``None``."""
    from kafka import KafkaConsumer, TopicPartition

    from connectors.kafka import ensure_topics, make_producer
    k = settings.kafka
    if not k.control_topic:
        raise ConfigError("no control topic: set --control-topic or kafka.control_topic (STREAM_LEARNER_KAFKA__CONTROL_TOPIC), the one the engine reads")
    signing_key = control_signing_key(settings)
    client = k.client_config()
    if k.create_topics:
        ensure_topics(client, [k.control_topic, k.metrics_topic], k.topic_partitions, k.replication_factor)
    consumer = None
    if wait:  # at the metrics topic's end before sending, so the answer cannot slip by
        consumer = KafkaConsumer(enable_auto_commit=False, **client)
        partitions = [TopicPartition(k.metrics_topic, p) for p in sorted(consumer.partitions_for_topic(k.metrics_topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        for tp in partitions:
            consumer.position(tp)
    try:
        producer = make_producer(client, None, 0)
        try:
            producer.send(k.control_topic, key=command.key.encode(), value=sign_command(command, signing_key))
            producer.flush()
        finally:
            producer.close()
        return None if consumer is None else _answer(consumer, command.id, time.monotonic() + wait)
    finally:
        if consumer is not None:
            consumer.close()


def control_signing_key(settings: Settings) -> bytes:
    """The key operators' commands are signed with: ``control.signing_key``, else the snapshot signing key (one line when neither is set)."""
    key = settings.control.signing_key or settings.snapshot.signing_key
    if key is None or not key.get_secret_value():
        raise ConfigError("control commands need a signing key: set STREAM_LEARNER_CONTROL__SIGNING_KEY (or the snapshot signing key, STREAM_LEARNER_SNAPSHOT__SIGNING_KEY)")
    return key.get_secret_value().encode()


def _answer(consumer: Any, command_id: str, deadline: float) -> dict[str, Any] | None:
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                try:
                    document = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue
                found = _find(document, command_id)
                if found is not None:
                    return found
    return None


def _find(document: Any, command_id: str) -> dict[str, Any] | None:
    """The answer to ``command_id`` in a metrics-topic record (a record, or a list of records), if there."""
    for record in document if isinstance(document, list) else [document]:
        if isinstance(record, dict) and record.get("type") == "control" and record.get("id") == command_id:
            return record
    return None
