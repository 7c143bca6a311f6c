"""Argument helpers shared by the command's modules: the parser and the argparse types."""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any, Callable, NoReturn

from stream_learner.errors import ConfigError, parse_json_object

EXIT_USAGE = 2
STDIO = "-"
"""A file argument that means stdin (``--source file:-``) or stdout (``--predictions -``)."""


class Parser(argparse.ArgumentParser):
    """Wrong arguments give one readable line, not usage plus a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer, 0 or more.

    >>> non_negative_int("0")
    0
    >>> non_negative_int("-1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected a non-negative integer, got -1
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer, 1 or more (a window, a sample or a period of 0 has nothing to report).

    >>> positive_int("3")
    3
    >>> positive_int("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected a positive integer, got 0
    """
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def byte_count(text: str) -> int:
    """An argparse type: a number of bytes, 1 or more."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected at least 1 byte")
    return value


def ratio_argument(text: str) -> float:
    """An argparse type: a fraction from 0 to 1.

    >>> ratio_argument("0.5")
    0.5
    >>> ratio_argument("50")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected a fraction from 0 to 1, got 50
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text}")
    return value


def seconds_argument(text: str) -> float:
    """An argparse type: a finite, non-negative number (seconds, or a rate).

    >>> seconds_argument("1.5")
    1.5
    >>> seconds_argument("inf")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected a non-negative number, got inf
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


def json_object_argument(what: str, example: str) -> Callable[[str], dict[str, Any]]:
    """An argparse type: a JSON object (``what`` and ``example`` name it in the error).

    >>> json_object_argument("model parameters", '{"l2": 0.01}')('{"l2": 1}')
    {'l2': 1}
    >>> json_object_argument("model parameters", '{"l2": 0.01}')("[1]")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: model parameters must be a JSON object, e.g. '{"l2": 0.01}'
    """

    def parse(text: str) -> dict[str, Any]:
        try:
            return parse_json_object(text, what, example)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def strategy_param(text: str) -> tuple[str, Any]:
    """An argparse type: ``K=V``, the value JSON when it parses (``100``, ``true``, ``[1, 2]``), else a string.

    >>> strategy_param("ewc_lambda=100"), strategy_param("mode=online"), strategy_param("replay.mem_size=50")
    (('ewc_lambda', 100), ('mode', 'online'), ('replay.mem_size', 50))
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


class MergeParams(argparse.Action):
    """Collects repeated ``K=V`` flags into one dict (the later of two equal keys wins)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        key, value = values
        setattr(namespace, self.dest, {**getattr(namespace, self.dest, {}), key: value})


def plain(text: str) -> str:
    """A docstring's text for ``--help``: reStructuredText roles and literals as plain words, lines joined.

    >>> plain("``stream-learner produce``: send a stream to\\nthe :class:`~connectors.kafka.KafkaSink`'s `topic`")
    "stream-learner produce: send a stream to the KafkaSink's topic"
    """
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text)  # :class:`~a.b.C` -> C
    text = re.sub(r"``([^`]+)``|`([^`]+)`", lambda m: m.group(1) or m.group(2), text)
    return " ".join(text.split())
