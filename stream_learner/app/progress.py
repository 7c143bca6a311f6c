"""A live one-line progress display on a terminal, and the lines printed above it."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, TextIO


class Progress:
    """Redraws ``render()`` on ``stream`` every ``interval`` seconds while running.

    On a non-terminal stream it draws nothing but still prints lines.
    """

    def __init__(self, render: Callable[[], str], stream: TextIO = sys.stderr, interval: float = 0.25, enabled: bool = True) -> None:
        self._render = render
        self._stream = stream
        self._interval = interval
        self._live = enabled and stream.isatty()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def __enter__(self) -> Progress:
        if self._live:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._live:
            self._thread.join()
            with self._lock:
                self._stream.write("\r\x1b[2K" + self._render() + "\n")
                self._stream.flush()

    def println(self, line: str) -> None:
        """Print a line above the progress bar."""
        with self._lock:
            prefix = "\r\x1b[2K" if self._live else ""
            self._stream.write(prefix + line + "\n")
            self._stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                self._stream.write("\r\x1b[2K" + self._render())
                self._stream.flush()


def render_stats(summary: dict[str, Any]) -> str:
    """One progress line from a run summary.

    >>> render_stats({"events": 1200, "events_per_second": 600.0, "accuracy": 0.8, "drifts": 1, "dead_letters": 0})
    '  1,200 events   600 ev/s   accuracy 0.8000   drifts 1   dead letters 0'
    """
    accuracy = summary.get("accuracy")
    quality = f"accuracy {accuracy:.4f}" if accuracy is not None else "accuracy -"
    rate = summary.get("events_per_second") or 0
    return (
        f"  {summary['events']:,} events   {rate:,.0f} ev/s   {quality}   "
        f"drifts {summary['drifts']}   dead letters {summary['dead_letters']}"
    )
