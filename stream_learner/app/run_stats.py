"""The counts of one run, shared by the dataflow's workers, and the summary made of them.

A fleet has many keys (100,000 and more), so nothing here costs O(keys) per
event or per progress line: each key keeps a few figures from its latest
metrics record (not the record itself), the run's totals are kept up to date
as records arrive, and only :meth:`RunStats.summary` ranks the keys.

>>> stats = RunStats(top_keys=2)
>>> stats.observe([StepOutput(predictions=[{"key": "a"}] * 3, metrics=[
...     {"type": "metrics", "key": "a", "events": 3, "labelled": 3, "accuracy": 0.5, "drifts": 0, "concepts": 1, "forgetting": {}}])])
[StepOutput(...)]
>>> summary = stats.summary()
>>> summary["keys"], summary["accuracy_min"], summary["top_keys"]["by_events"]
(1, 0.5, [{'key': 'a', 'events': 3, 'accuracy': 0.5, 'labelled': 3}])
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any, Iterable

from stream_learner.app.latency import LatencyHistogram
from stream_learner.engine import StepOutput

TOP_KEYS = 10
"""Keys the summary names in each ranking (the busiest, the least accurate)."""
WORST_MIN_LABELLED = 100
"""The least accurate keys are ranked among keys with this many labelled events, or the mean key's where fewer."""
DRIFT_RECENT_EVENTS = 1000
"""A key is *in drift* while its latest detected drift is fewer than this many of its own events ago."""
FORGETTING_FIGURES = ("average_accuracy", "average_mae", "average", "bwt")


def drift_is_recent(events: int, last_drift_at: int | None, recent: int = DRIFT_RECENT_EVENTS) -> bool:
    """Whether a key whose latest metrics record counted ``events`` is *in drift*: its latest detected drift is fewer than ``recent`` events old.

    >>> drift_is_recent(1500, 600), drift_is_recent(1500, 400), drift_is_recent(1500, None)
    (True, False, False)
    """
    return last_drift_at is not None and events - last_drift_at < recent


def is_champions(record: Any) -> bool:
    """Whether a record on the metrics output is a key's own figures: metrics, drift or feature drift of its champion (or of its only model).

    A key with challengers publishes every candidate's figures, each naming its
    ``candidate`` and whether it is the ``champion``.

    >>> is_champions({"type": "metrics"}), is_champions({"type": "metrics", "champion": False}), is_champions({"type": "control"})
    (True, False, False)
    """
    return record["type"] in ("metrics", "drift", "feature_drift") and record.get("champion", True) is not False


class _Key:
    """One key's figures: its predictions so far and what its latest metrics and drift records said."""

    __slots__ = ("predictions", "events", "labelled", "accuracy", "mae", "drifts", "failures", "concepts", "forgetting", "delayed_labels", "last_drift_at")

    def __init__(self) -> None:
        self.predictions = 0
        self.events = 0
        self.labelled = 0
        self.accuracy: float | None = None
        self.mae: float | None = None
        self.drifts = 0
        self.failures = 0
        self.concepts = 0
        self.forgetting: tuple[Any, ...] = (None,) * len(FORGETTING_FIGURES) + (0,)  # FORGETTING_FIGURES, then its concepts
        self.delayed_labels: dict[str, int] | None = None
        self.last_drift_at: int | None = None  # the key's event count at its latest detected drift (task switches aside)

    def note_metrics(self, record: Any) -> None:
        """Keep what a metrics record says that the summary uses (its forgetting figures without the matrix)."""
        self.events = record.get("events", self.events)
        self.labelled = record["labelled"]
        self.accuracy = record["accuracy"]
        self.mae = record.get("mae")
        self.drifts = record["drifts"]
        self.failures = record.get("failures", 0)
        self.concepts = record["concepts"]
        forgetting = record["forgetting"]
        self.forgetting = (*(forgetting.get(name) for name in FORGETTING_FIGURES), forgetting.get("concepts", 0))
        self.delayed_labels = record.get("delayed_labels")

    def in_drift(self, recent: int) -> bool:
        return drift_is_recent(self.events, self.last_drift_at, recent)

    def weighted(self) -> tuple[float, int, int]:
        """What this key adds to the progress line's running totals: accuracy x labelled, labelled where scored, drifts."""
        if self.accuracy is None:
            return 0.0, 0, self.drifts
        return self.accuracy * self.labelled, self.labelled, self.drifts

    def figures(self) -> dict[str, Any]:
        figures = {
            "events": max(self.events, self.predictions), "labelled": self.labelled, "accuracy": self.accuracy, "mae": self.mae,
            "drifts": self.drifts, "failures": self.failures, "concepts": self.concepts,
            "forgetting": {**dict(zip(FORGETTING_FIGURES, self.forgetting)), "concepts": self.forgetting[-1]},
        }  # fmt: skip
        if self.delayed_labels is not None:
            figures["delayed_labels"] = dict(self.delayed_labels)
        return figures


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


class RunStats:
    """Counts of one run, shared by the dataflow's workers (thread-safe).

    ``listener`` (e.g. :class:`~stream_learner.app.telemetry.Telemetry`) sees
    the same reads, outputs, learner steps and snapshots, and, where it has
    the hooks, evictions, restores and the resident keys.

    Args:
        listener: told of each count as it happens.
        top_keys: keys the summary names in each ranking.
        drift_recent_events: a key is in drift while its latest detected drift
            is fewer than this many of its own events ago. Counted in events,
            not seconds, so a replayed file and a live stream agree.
    """

    def __init__(self, listener: Any = None, top_keys: int = TOP_KEYS, drift_recent_events: int = DRIFT_RECENT_EVENTS) -> None:
        self.listener = listener
        self.top_keys = top_keys
        self.drift_recent_events = drift_recent_events
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.events = 0
        self.predictions = 0
        self.dead_letters = 0
        self.snapshots = 0
        self.snapshot_failures = 0
        self.feature_drifts = 0  # input drifts found, over every key
        self.concepts_reused = 0  # earlier concepts' models brought back, over every key
        self.promotions = 0  # challengers that replaced their key's champion
        self.promotion_recommendations = 0  # challengers that won while auto-promotion is off
        self.evictions = _Timings()
        self.restores = _Timings()
        self.lost_states = 0  # evicted keys started afresh: the store had lost every version of them
        self.resident = 0  # keys in memory at the latest report
        self.resident_max = 0
        self.latency = LatencyHistogram()  # each prediction's, from its event's source batch to the predictions sinks
        self._keys: dict[str, _Key] = {}
        self._running = [0.0, 0, 0]  # the progress line's totals over keys: accuracy x labelled, labelled where scored, drifts

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
                if out.predictions:  # one key's step: its predictions share the key
                    self._key(out.predictions[0]["key"]).predictions += len(out.predictions)
                for record in out.metrics:
                    if record["type"] == "promotion":
                        self.promotions += 1 if record["applied"] else 0
                        self.promotion_recommendations += 0 if record["applied"] else 1
                    elif not is_champions(record):
                        continue  # a challenger's figures are not its key's (the champion's are), nor are control answers
                    elif record["type"] == "feature_drift":
                        self.feature_drifts += 1
                    elif record["type"] == "drift" and record["detector"] == "recurring":  # an earlier concept's model back: no drift
                        self.concepts_reused += 1
                    elif record["type"] == "metrics" or (record["type"] == "drift" and record["detector"] != "task"):  # a task switch is no detected drift
                        self._note(record)
        if self.listener is not None:
            self.listener.on_outputs(outputs)
        return outputs

    def predictions_handed(self, latencies: list[tuple[float, int]]) -> None:
        """Predictions were handed to the sinks: each ``(seconds, count)`` is ``count`` of them, ``seconds`` after their source batch was handed over."""
        if not latencies:
            return
        self.latency.add(latencies)
        self._tell("on_latency", latencies)

    def wants_accuracy_points(self, key: str) -> bool:
        """Whether the listener draws fine accuracy points of ``key`` (:mod:`stream_learner.app.accuracy_points`)."""
        wants = getattr(self.listener, "wants_accuracy_points", None)
        return wants is not None and bool(wants(key))

    def accuracy_scored(self, key: str, scored: list[tuple[int, float]]) -> None:
        """``key``'s learner step published these labelled predictions: ``(event position, error)`` each."""
        self._tell("on_accuracy_scored", key, scored)

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

    def key_lost(self, key: str) -> None:
        """``key``'s evicted learner was lost with the store's data: it starts afresh."""
        with self._lock:
            self.lost_states += 1
        self._tell("on_lost", key)

    def resident_keys(self, n: int) -> None:
        """``n`` keys' learners are in memory now."""
        with self._lock:
            self.resident = n
            self.resident_max = max(self.resident_max, n)
        self._tell("on_resident", n)

    @property
    def latest_metrics(self) -> dict[str, dict[str, Any]]:
        """Each key's figures from its latest metrics record (a copy, built on each call: O(keys))."""
        with self._lock:
            return {name: key.figures() for name, key in self._keys.items()}

    def progress(self) -> dict[str, Any]:
        """The figures of a progress line, in constant time (:meth:`summary` goes over every key)."""
        with self._lock:
            seconds = time.perf_counter() - self.started
            weighted, scored_labelled, drifts = self._running
            return {
                "events": self.events, "events_per_second": round(self.events / seconds, 1) if seconds > 0 else None,
                "accuracy": weighted / scored_labelled if scored_labelled else None, "drifts": drifts, "dead_letters": self.dead_letters,
                "keys": len(self._keys),
            }  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """The run's figures (accuracy weighted by labelled events across keys), the fleet's aggregates and its top keys."""
        with self._lock:
            seconds = time.perf_counter() - self.started
            keys = list(self._keys.values())
            scored = [k for k in keys if k.accuracy is not None]
            regression = [k for k in keys if k.mae is not None]
            return {
                "events": self.events,
                "labelled": sum(k.labelled for k in keys),
                "predictions": self.predictions,
                "dead_letters": self.dead_letters,
                "accuracy": _weighted_mean(scored, "accuracy"),
                "mae": _weighted_mean(regression, "mae"),
                "drifts": sum(k.drifts for k in keys),
                "failures": sum(k.failures for k in keys),  # model failures at boundaries and evaluations
                "feature_drifts": self.feature_drifts,
                "concepts_reused": self.concepts_reused,
                "promotions": self.promotions,
                "promotion_recommendations": self.promotion_recommendations,
                "concepts": sum(k.concepts for k in keys),
                "forgetting": _forgetting_summary(keys),
                "keys": len(keys),
                "resident_keys": self.resident,
                "resident_keys_max": self.resident_max,
                "evictions": self.evictions.summary(),
                "restores": self.restores.summary(),
                "lost_states": self.lost_states,
                "accuracy_mean": sum(k.accuracy for k in scored) / len(scored) if scored else None,  # type: ignore[misc]  # each key once
                "accuracy_min": min((k.accuracy for k in scored), default=None),  # type: ignore[type-var]
                "keys_in_drift": sum(k.in_drift(self.drift_recent_events) for k in keys),
                "top_keys": self._top_keys(),
                "snapshots": self.snapshots,
                "snapshot_failures": self.snapshot_failures,
                "latency": self.latency.summary(),
                "seconds": round(seconds, 3),
                "events_per_second": round(self.events / seconds, 1) if seconds > 0 else None,
            }

    # --- internals (the caller holds the lock) -----------------------------------------------

    def _tell(self, hook: str, *args: Any) -> None:
        """Call the listener's ``hook`` where it has one (the fleet hooks are optional for listeners)."""
        method = getattr(self.listener, hook, None)
        if method is not None:
            method(*args)

    def _key(self, name: str) -> _Key:
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = _Key()
        return key

    def _note(self, record: Any) -> None:
        """Keep what a metrics or drift record says of its key; the progress line's totals move by the difference."""
        key = self._key(record["key"])
        if record["type"] != "metrics":
            key.last_drift_at = record["at_event"]
            return
        before = key.weighted()
        key.note_metrics(record)
        self._running = [total - b + a for total, b, a in zip(self._running, before, key.weighted())]

    def _top_keys(self) -> dict[str, list[dict[str, Any]]]:
        return rank_keys(((name, max(k.events, k.predictions), k.accuracy, k.labelled) for name, k in self._keys.items()), self.top_keys)


def rank_keys(keys: Iterable[tuple[str, int, float | None, int]], n: int = TOP_KEYS) -> dict[str, list[dict[str, Any]]]:
    """The ``n`` busiest of ``(name, events, accuracy, labelled)`` keys, and the ``n`` least accurate (ties by name).

    The least accurate are ranked among keys with at least as many labelled
    events as the mean key (:data:`WORST_MIN_LABELLED` at most): a key wrong on
    its only event would otherwise head the list.

    >>> ranked = rank_keys([("a", 10, 0.9, 10), ("b", 30, 0.5, 30), ("c", 1, 0.0, 1)], n=1)
    >>> [e["key"] for e in ranked["by_events"]], [e["key"] for e in ranked["worst_accuracy"]]
    (['b'], ['b'])
    """
    keys = list(keys)
    busiest = heapq.nsmallest(n, keys, key=lambda k: (-k[1], k[0]))
    scored = [k for k in keys if k[2] is not None]
    enough = min(WORST_MIN_LABELLED, sum(k[3] for k in scored) / len(scored)) if scored else 0
    worst = heapq.nsmallest(n, (k for k in scored if k[3] >= enough), key=lambda k: (k[2], k[0]))

    def entry(key: tuple[str, int, float | None, int]) -> dict[str, Any]:
        return {"key": key[0], "events": key[1], "accuracy": key[2], "labelled": key[3]}

    return {"by_events": [entry(k) for k in busiest], "worst_accuracy": [entry(k) for k in worst]}


def _weighted_mean(keys: list[_Key], figure: str) -> float | None:
    """``figure`` averaged over ``keys``, weighted by their labelled events; one key's own figure exactly."""
    if len(keys) == 1:
        return getattr(keys[0], figure)
    labelled = sum(k.labelled for k in keys)
    return sum(getattr(k, figure) * k.labelled for k in keys) / labelled if labelled else None


def _forgetting_summary(keys: list[_Key]) -> dict[str, Any]:
    """The latest forgetting figures, averaged over model keys that have them."""

    def mean(i: int) -> float | None:
        values = [k.forgetting[i] for k in keys if k.forgetting[i] is not None]
        return sum(values) / len(values) if values else None

    average_accuracy, average_mae, average, bwt = (mean(i) for i in range(len(FORGETTING_FIGURES)))
    return {
        "average_accuracy": average_accuracy,
        "average_mae": average_mae,
        "average_forgetting": average,
        "bwt": bwt,
        "concepts": sum(k.forgetting[-1] for k in keys),
    }
