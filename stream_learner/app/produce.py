"""``stream-learner produce``: send a synthetic drift stream or a JSONL file to Kafka.

Synthetic events go out as ``{"id", "features", "label", "key"}`` keyed by
their model key (so one key's events share a partition and keep their
order). A fraction of them can go out unlabelled, with their label sent
later to the labels topic (``--delayed-fraction``, ``--label-delay``).
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from collections import deque
from typing import Any, Iterator

import orjson

from stream_learner.app.args import plain
from stream_learner.errors import ConfigError
from stream_learner.settings import Settings, load_settings


def add_parser(commands: Any) -> None:
    """The ``produce`` subcommand."""
    p = commands.add_parser("produce", help="send a synthetic stream or a JSONL file to the input topic", description=plain(__doc__.split("\n\n")[0]))
    p.add_argument("--source", default="synthetic:sea?every=5000&concepts=4", help="synthetic:NAME[?every=N&concepts=K] or file:PATH (default: %(default)s)")
    p.add_argument("--config", default=None, metavar="FILE", help="settings file (TOML or JSON)")
    p.add_argument("--bootstrap-servers", default=None, metavar="HOST:PORT[,...]")
    p.add_argument("--topic", default=None, help="input topic (default: the settings' kafka.input_topic)")
    p.add_argument("--labels-topic", default=None, help="topic for delayed labels (default: the settings' kafka.labels_topic)")
    p.add_argument("--rate", type=float, default=0.0, metavar="EVENTS/S", help="events per second, 0 for as fast as possible (default: %(default)s)")
    p.add_argument("--max-events", type=int, default=None, metavar="N", help="send at most N events")
    p.add_argument("--seed", type=int, default=42, help="seed of the stream and of the label choices (default: %(default)s)")
    p.add_argument("--key", default="default", help="model key of synthetic events (default: %(default)s)")
    p.add_argument("--unlabelled-fraction", type=float, default=0.0, metavar="F", help="send this fraction without any label")
    p.add_argument("--delayed-fraction", type=float, default=0.0, metavar="F", help="send this fraction without label, the label later on the labels topic")
    p.add_argument("--label-delay", type=int, default=100, metavar="N", help="a delayed label follows its event N events later (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON summary line")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"kafka": {}}
    for flag, name in (("bootstrap_servers", "bootstrap_servers"), ("topic", "input_topic"), ("labels_topic", "labels_topic")):
        if getattr(args, flag) is not None:
            overrides["kafka"][name] = getattr(args, flag)
    settings = load_settings(args.config, overrides)
    summary = produce(
        settings,
        args.source,
        rate=args.rate,
        max_events=args.max_events,
        seed=args.seed,
        key=args.key,
        unlabelled_fraction=args.unlabelled_fraction,
        delayed_fraction=args.delayed_fraction,
        label_delay=args.label_delay,
    )
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(
            f"sent {summary['events']:,} events ({summary['delayed']:,} with delayed labels) and {summary['labels']:,} labels "
            f"to {summary['topic']} in {summary['seconds']:.2f}s"
        )
    return 0


def produce(
    settings: Settings,
    source: str,
    *,
    rate: float = 0.0,
    max_events: int | None = None,
    seed: int = 42,
    key: str = "default",
    unlabelled_fraction: float = 0.0,
    delayed_fraction: float = 0.0,
    label_delay: int = 100,
) -> dict[str, Any]:
    """Send the events of ``source`` to the input topic; return counts and time taken."""
    from connectors.kafka import ensure_topics, make_producer

    k = settings.kafka
    if not 0 <= unlabelled_fraction + delayed_fraction <= 1 or unlabelled_fraction < 0 or delayed_fraction < 0:
        raise ConfigError("--unlabelled-fraction and --delayed-fraction must be fractions adding up to at most 1")
    if delayed_fraction and not k.labels_topic:
        raise ConfigError("--delayed-fraction needs a labels topic (--labels-topic)")
    if rate < 0 or label_delay < 0:
        raise ConfigError("--rate and --label-delay must not be negative")
    client = k.client_config()
    if k.create_topics:
        ensure_topics(client, [k.input_topic, k.labels_topic or ""], k.topic_partitions, k.replication_factor)
    producer = make_producer(client, None if k.compression == "none" else k.compression, k.linger_ms)
    choose = random.Random(seed)
    waiting: deque[tuple[int, bytes | None, bytes]] = deque()
    sent = labels = delayed = 0
    started = time.perf_counter()
    try:
        for message_key, value, label_doc in _messages(source, seed, key, max_events):
            if label_doc is not None:
                draw = choose.random()
                if draw < unlabelled_fraction + delayed_fraction:
                    value = orjson.dumps({**orjson.loads(value), "label": None})
                    if draw >= unlabelled_fraction:
                        waiting.append((sent + label_delay, message_key, orjson.dumps(label_doc)))
                        delayed += 1
            producer.send(k.input_topic, key=message_key, value=value)
            sent += 1
            while waiting and waiting[0][0] <= sent:
                _, label_key, label_value = waiting.popleft()
                producer.send(k.labels_topic, key=label_key, value=label_value)
                labels += 1
            if rate:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        for _, label_key, label_value in waiting:
            producer.send(k.labels_topic, key=label_key, value=label_value)
            labels += 1
        producer.flush()
    finally:
        producer.close()
    return {
        "events": sent,
        "delayed": delayed,
        "labels": labels,
        "topic": k.input_topic,
        "labels_topic": k.labels_topic,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _messages(source: str, seed: int, key: str, max_events: int | None) -> Iterator[tuple[bytes | None, bytes, dict[str, Any] | None]]:
    """``(message key, value, {"id", "label", "key"} or None)`` for each event of the source."""
    kind, _, rest = source.partition(":")
    if kind == "file":
        try:
            lines = open(rest, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConfigError(f"cannot read {rest}: {exc.strerror or exc}") from None
        with lines:
            for line in itertools.islice(lines, max_events):
                line = line.rstrip(b"\r\n")
                yield _file_message(line)
        return
    from connectors.base import PairSource
    from connectors.sources import parse_source

    src = parse_source(source, seed=seed, max_events=max_events)
    if not isinstance(src, PairSource):  # the other sources (files) are read above, line by line
        raise ConfigError(f"cannot produce from {source!r}")
    for event in itertools.islice(src.read_from(0), src.max_events):  # max_events None: endless
        document = {"id": event.id, "features": event.features, "label": event.label, "key": key}
        label_doc = {"id": event.id, "label": event.label, "key": key} if event.label is not None else None
        yield key.encode(), orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS), label_doc


def _file_message(line: bytes) -> tuple[bytes | None, bytes, dict[str, Any] | None]:
    """A JSONL line as is; its ``key``, ``id`` and ``label`` (if readable) for the message key and delayed labels."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, line, None
    if not isinstance(document, dict):
        return None, line, None
    key = document.get("key") if isinstance(document.get("key"), str) else None
    label_doc = None
    if document.get("label") is not None and isinstance(document.get("id"), str):
        label_doc = {"id": document["id"], "label": document["label"], **({"key": key} if key else {})}
    return key.encode() if key else None, line, label_doc
