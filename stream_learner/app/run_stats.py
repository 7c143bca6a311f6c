"""The counts of one run, shared by the dataflow's workers, and the summary made of them."""

from __future__ import annotations

import threading
import time
from typing import Any

from stream_learner.engine import StepOutput


class RunStats:
    """Counts of one run, shared by the dataflow's workers (thread-safe).

    ``listener`` (e.g. :class:`~stream_learner.app.telemetry.Telemetry`) sees
    the same reads, outputs, learner steps and snapshots.
    """

    def __init__(self, listener: Any = None) -> None:
        self.listener = listener
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.events = 0
        self.predictions = 0
        self.dead_letters = 0
        self.snapshots = 0
        self.snapshot_failures = 0
        self.feature_drifts = 0  # input drifts found, over every key
        self.latest_metrics: dict[str, dict[str, Any]] = {}
        self.evictions = _Timings()
        self.restores = _Timings()
        self.resident = 0  # keys in memory at the latest report
        self.resident_max = 0

    def add_read(self, n: int) -> None:
        """Records read from the source."""
        with self._lock:
            self.events += n
        if self.listener is not None:
            self.listener.on_read(n)

    def observe(self, outputs: list[StepOutput]) -> list[StepOutput]:
        """Count a batch of learner outputs on their way to the sinks."""
        with self._lock:
            for out in outputs:
                self.predictions += len(out.predictions)
                self.dead_letters += len(out.dead_letters)
                for record in out.metrics:
                    if record["type"] == "metrics":
                        self.latest_metrics[record["key"]] = dict(record)  # a plain dict: the summary reads it as one
                    elif record["type"] == "feature_drift":
                        self.feature_drifts += 1
        if self.listener is not None:
            self.listener.on_outputs(outputs)
        return outputs

    def step_done(self, key: str, events: int, seconds: float) -> None:
        """The learner step of ``key`` took ``seconds`` over ``events`` events."""
        if self.listener is not None:
            self.listener.on_step(key, events, seconds)

    def snapshot_saved(self, key: str, version: int | None) -> None:
        with self._lock:
            if version is None:
                self.snapshot_failures += 1
            else:
                self.snapshots += 1
        if self.listener is not None:
            self.listener.on_snapshot(key, version)

    def key_evicted(self, key: str, seconds: float) -> None:
        """``key``'s learner left memory for the snapshot store, which took ``seconds``."""
        with self._lock:
            self.evictions.add(seconds)
        self._tell("on_evicted", key, seconds)

    def key_restored(self, key: str, seconds: float) -> None:
        """``key``'s learner came back from the snapshot store on its next event, which took ``seconds``."""
        with self._lock:
            self.restores.add(seconds)
        self._tell("on_restored", key, seconds)

    def resident_keys(self, n: int) -> None:
        """``n`` keys' learners are in memory now."""
        with self._lock:
            self.resident = n
            self.resident_max = max(self.resident_max, n)
        self._tell("on_resident", n)

    def _tell(self, hook: str, *args: Any) -> None:
        """Call the listener's ``hook`` where it has one (the fleet hooks are optional for listeners)."""
        method = getattr(self.listener, hook, None)
        if method is not None:
            method(*args)

    def summary(self) -> dict[str, Any]:
        """The run's figures (accuracy weighted by labelled events across keys)."""
        with self._lock:
            metrics = list(self.latest_metrics.values())
            seconds = time.perf_counter() - self.started
            labelled = sum(m["labelled"] for m in metrics)
            scored = [m for m in metrics if m["accuracy"] is not None]
            scored_labelled = sum(m["labelled"] for m in scored)
            accuracy = sum(m["accuracy"] * m["labelled"] for m in scored) / scored_labelled if scored_labelled else None
            if len(scored) == 1:
                accuracy = scored[0]["accuracy"]
            mae = [m for m in metrics if m.get("mae") is not None]
            return {
                "events": self.events,
                "labelled": labelled,
                "predictions": self.predictions,
                "dead_letters": self.dead_letters,
                "accuracy": accuracy,
                "mae": sum(m["mae"] * m["labelled"] for m in mae) / sum(m["labelled"] for m in mae) if mae else None,
                "drifts": sum(m["drifts"] for m in metrics),
                "failures": sum(m.get("failures", 0) for m in metrics),  # model failures at boundaries and evaluations
                "feature_drifts": self.feature_drifts,
                "concepts": sum(m["concepts"] for m in metrics),
                "forgetting": _forgetting_summary(metrics),
                "keys": len(metrics),
                "resident_keys": self.resident,
                "resident_keys_max": self.resident_max,
                "evictions": self.evictions.summary(),
                "restores": self.restores.summary(),
                "snapshots": self.snapshots,
                "snapshot_failures": self.snapshot_failures,
                "seconds": round(seconds, 3),
                "events_per_second": round(self.events / seconds, 1) if seconds > 0 else None,
            }


class _Timings:
    """How often something happened, and its total and longest time in seconds."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.max_seconds = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds)

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "seconds": round(self.seconds, 6), "max_seconds": round(self.max_seconds, 6)}


def _forgetting_summary(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest forgetting figures, averaged over model keys that have them."""

    def mean(name: str) -> float | None:
        values = [m["forgetting"][name] for m in metrics if m["forgetting"].get(name) is not None]
        return sum(values) / len(values) if values else None

    return {
        "average_accuracy": mean("average_accuracy"),
        "average_mae": mean("average_mae"),
        "average_forgetting": mean("average"),
        "bwt": mean("bwt"),
        "concepts": sum(m["forgetting"].get("concepts", 0) for m in metrics),
    }
