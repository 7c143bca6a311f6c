"""Argument helpers shared by the command's modules: the parser and the argparse types."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

EXIT_USAGE = 2


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


def byte_count(text: str) -> int:
    """An argparse type: a number of bytes, 1 or more."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected at least 1 byte")
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
