"""Prometheus metrics and the live history behind the dashboard page.

A :class:`Telemetry` owns its own ``CollectorRegistry``: nothing is
registered when this module is imported, and two runs in one process do
not share counters. The dataflow feeds it through :class:`RunStats`'s
listener hooks (``on_read``, ``on_outputs``, ``on_step``, ``on_latency``, ``on_snapshot``,
and a bounded resident set's ``on_evicted``, ``on_restored``, ``on_resident``).
A key's figures are its champion's; where it has challengers, each
candidate's windowed accuracy has its own series and line on the page.

Labels stay bounded: the model key (the first ``top_keys`` keys seen; any
later one is counted under ``key="other"``), the dead-letter reason (a fixed
set), the drift detector, the Kafka topic and partition, the concepts kept in
the (bounded) accuracy matrix, and the first :data:`MAX_FEATURE_LABELS`
feature names seen drifting (any later one is ``other``); never an event id.
The first keys rather than the busiest: a key's series never changes its
label, so counters only go up and ``rate()`` stays right.

The page's history is bounded the same way: the labelled keys keep their whole
history, the page's last :data:`MAX_WATCHED` other keys theirs from when it
showed them, and every other key only its latest figures. A key with a
history also has fine accuracy points (:mod:`stream_learner.app.accuracy_points`),
each line of points kept within :data:`MAX_POINTS` to :data:`MAX_POINTS` x 2 (at half the
resolution each time it fills).

>>> from stream_learner.engine import StepOutput
>>> t = Telemetry(top_keys=1)
>>> t.on_outputs([StepOutput(predictions=[{"key": k}]) for k in ("a", "b", "c")])
>>> t.sample("stream_learner_predictions_total", key="a"), t.sample("stream_learner_predictions_total", key="other")
(1.0, 2.0)
>>> t.search_keys("b")
{'keys': ['b'], 'matches': 1, 'total': 3}
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict, deque
from functools import partial
from typing import Any, Iterable, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import HistogramMetricFamily

from stream_learner.app.accuracy_points import AccuracyPoints
from stream_learner.app.latency import LatencyHistogram, quantile
from stream_learner.app.run_stats import drift_is_recent, is_champions, rank_keys
from stream_learner.engine import EngineConfig
from stream_learner.errors import ConfigError
from stream_learner.records import DelayedLabelState, DriftDict, FeatureDriftDict, MetricsDict, PromotionDict

PER_EVENT_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

MAX_POINTS = 2000
MAX_DRIFTS = 500
MAX_THROUGHPUT = 600
MAX_RECENT_DEAD = 20
THROUGHPUT_EVERY = 0.5
DELAYED_LABEL_STATES: tuple[DelayedLabelState, ...] = get_args(DelayedLabelState)
MAX_FEATURES_PER_DRIFT = 3
"""The features of a feature-drift record that are counted (the record ranks them, highest first)."""
MAX_FEATURE_LABELS = 50
"""Distinct ``feature`` label values of the feature-drift counter; features beyond them are counted as :data:`OTHER_FEATURE`."""
OTHER_FEATURE = "other"
TOP_KEYS = 100
"""Keys with their own ``key`` label (and a whole history on the page), by default; later keys count as :data:`OTHER_KEY`."""
OTHER_KEY = "other"
MAX_WATCHED = 10
"""Keys beyond the labelled ones whose history the page keeps, from the moment it shows them (the least recently shown go first)."""
SEARCH_LIMIT = 50
PAGE_TOP_KEYS = 10
"""Keys the page lists as the busiest and as the least accurate."""
RANK_EVERY = 5.0
"""Seconds between two rankings of the keys for the page (a ranking goes over every key)."""
EVICTION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_METRIC = "stream_learner_event_latency_seconds"


class _LatencyCollector:
    """Exports a :class:`LatencyHistogram` as a Prometheus histogram (no labels).

    Not prometheus-client's ``Histogram``: that takes one observation per call,
    and a batch's events share one latency, added at once.
    """

    def __init__(self, histogram: LatencyHistogram) -> None:
        self.histogram = histogram

    def collect(self) -> Iterable[HistogramMetricFamily]:
        counts, total = self.histogram.counts()
        cumulative, buckets = 0, []
        for bound, n in zip([*map(repr, map(float, self.histogram.bounds)), "+Inf"], counts):
            cumulative += n
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            LATENCY_METRIC,
            "Per-event latency: from the source handing the event's batch to the dataflow (a Kafka run: the consumer's batch reached this process) "
            "to its prediction handed to the predictions sinks (_count: predictions).",
            buckets=buckets, sum_value=total,
        )


class _Series:
    """The series of one ``key`` label that every batch touches (looked up once, not per batch)."""

    __slots__ = ("label", "predictions", "step", "step_per_event", "snapshots")

    def __init__(self, telemetry: Telemetry, label: str) -> None:
        self.label = label
        self.predictions = telemetry.predictions.labels(label)
        self.step = telemetry.step.labels(label)
        self.step_per_event = telemetry.step_per_event.labels(label)
        self.snapshots = telemetry.snapshots.labels(label)  # (not the last snapshot's time: a 0 there would read as a snapshot in 1970)


class _Key:
    """What the telemetry keeps of every key: its series (its own, or those of ``key="other"``), its counts and its latest figures (no history)."""

    __slots__ = ("series", "predictions", "figures", "events", "concept", "ts", "last_drift_at", "drift_count", "feature_drift_count", "snapshot_at")

    def __init__(self, series: _Series) -> None:
        self.series = series
        self.predictions = 0
        self.figures: tuple[Any, ...] | None = None  # the latest metrics record's figures, in the order of Telemetry._aggregated
        self.events = 0
        self.concept = 0
        self.ts: float | None = None
        self.last_drift_at: int | None = None
        self.drift_count = 0  # drift records seen (task switches included: the page marks both)
        self.feature_drift_count = 0
        self.snapshot_at: float | None = None

    @property
    def label(self) -> str:
        return self.series.label

    def in_drift(self) -> bool:
        return drift_is_recent(self.events, self.last_drift_at)


def _figures(record: MetricsDict) -> tuple[Any, ...]:
    """A metrics record's figures that ``key="other"`` aggregates (the order of ``Telemetry._aggregated``)."""
    forgetting = record["forgetting"]
    delayed = record.get("delayed_labels")
    return (
        record["accuracy"], record["accuracy_window"], record["mae"], forgetting["average"], forgetting["bwt"],
        forgetting["average_accuracy"], forgetting["average_mae"], record["labelled"], record["concepts"],
        *((delayed[state] if delayed is not None else None) for state in DELAYED_LABEL_STATES),
    )  # fmt: skip


class Telemetry:
    """The engine's Prometheus metrics (in a registry of its own) and the dashboard's recent history.

    Args:
        registry: where the metrics are registered (a new one by default).
        clock: Unix time (tests pass their own).
        top_keys: keys that get their own ``key`` label and a whole history
            on the page, the first ones seen; the others are counted under
            ``key="other"``.
    """

    def __init__(self, registry: CollectorRegistry | None = None, clock: Any = time.time, top_keys: int = TOP_KEYS) -> None:
        if top_keys < 0:
            raise ConfigError(f"metrics_top_keys must be 0 or more, got {top_keys}")
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.top_keys = top_keys
        self._clock = clock
        r = self.registry
        self.events = Counter("stream_learner_events", "Input records read from the source (valid or not).", registry=r)
        self.predictions = Counter("stream_learner_predictions", "Predictions published.", ["key"], registry=r)
        self.dead_letters = Counter("stream_learner_dead_letters", "Records sent to the dead-letter output.", ["reason"], registry=r)
        self.drifts = Counter("stream_learner_drifts", "Concept drifts detected.", ["key", "detector"], registry=r)
        self.feature_drifts = Counter(
            "stream_learner_feature_drifts",
            f"Input (feature) drifts, counted once for each of a drift's {MAX_FEATURES_PER_DRIFT} top features "
            f"(past {MAX_FEATURE_LABELS} distinct features, feature=\"{OTHER_FEATURE}\").",
            ["key", "feature"], registry=r,
        )
        self.task_switches = Counter("stream_learner_task_switches", "Explicit task switches (events with a new task).", ["key"], registry=r)
        self.concepts_reused = Counter("stream_learner_concepts_reused", "Earlier concepts' models brought back (--reuse-concepts).", ["key"], registry=r)
        self.step_per_event = Histogram(
            "stream_learner_step_per_event_seconds",
            "Learner step time per event: each batch's step time divided by its events, one observation per batch (a batch average, not a per-event latency).",
            ["key"], buckets=PER_EVENT_BUCKETS, registry=r,
        )
        self.step = Histogram(
            "stream_learner_learner_batch_duration_seconds", "Time the learner step spent on one batch of events.",
            ["key"], buckets=STEP_BUCKETS, registry=r,
        )
        self.accuracy = Gauge("stream_learner_accuracy_ratio", "Prequential accuracy since the start.", ["key"], registry=r)
        self.accuracy_window = Gauge("stream_learner_accuracy_window_ratio", "Prequential accuracy over the sliding window.", ["key"], registry=r)
        self.mae = Gauge("stream_learner_mean_absolute_error", "Prequential mean absolute error (regression).", ["key"], registry=r)
        self.labelled = Gauge("stream_learner_labelled_events", "Labelled events the model has learned from (at the last metrics record).", ["key"], registry=r)
        self.concept = Gauge("stream_learner_concept", "Current concept index.", ["key"], registry=r)
        self.concepts = Gauge("stream_learner_concepts", "Concepts seen so far.", ["key"], registry=r)
        self.forgetting = Gauge("stream_learner_forgetting_average_ratio", "Average forgetting over past concepts (accuracy lost; a regression model: mean absolute error gained).", ["key"], registry=r)
        self.bwt = Gauge("stream_learner_backward_transfer_ratio", "Backward transfer (BWT); negative means forgetting.", ["key"], registry=r)
        self.average_accuracy = Gauge("stream_learner_average_accuracy_ratio", "Mean accuracy over every seen concept's sample, at the latest evaluation.", ["key"], registry=r)
        self.average_mae = Gauge("stream_learner_average_mae", "A regression model's mean absolute error over every seen concept's sample, at the latest evaluation.", ["key"], registry=r)
        self.matrix = Gauge(
            "stream_learner_concept_accuracy_ratio",
            "A classifier's accuracy on each concept's sample at the latest evaluation: the matrix's newest row (over time, the matrix).",
            ["key", "concept"], registry=r,
        )
        self.matrix_mae = Gauge(
            "stream_learner_concept_mae",
            "A regression model's mean absolute error on each concept's sample at the latest evaluation: the matrix's newest row (over time, the matrix).",
            ["key", "concept"], registry=r,
        )
        self.delayed_labels = Gauge(
            "stream_learner_delayed_labels",
            "The delayed-label window at the last metrics record: labels received, matched, expired and unmatched since the start; labels waiting and predictions pending now.",
            ["key", "state"], registry=r,
        )
        self.last_drift_at = Gauge(
            "stream_learner_last_drift_at_event", "The key's event count at its latest detected drift (where a remote page places the marker).", ["key"], registry=r
        )
        self.candidate_accuracy_window = Gauge(
            "stream_learner_candidate_accuracy_window_ratio",
            "Each candidate's prequential accuracy over the sliding window, where a key has challengers (labelled keys only: a candidate is one key's).",
            ["key", "candidate"], registry=r,
        )
        self.promotions = Counter(
            "stream_learner_promotions", "Challengers that beat their key's champion: applied=\"true\" replaced it, \"false\" recommended it (auto-promotion off).",
            ["key", "applied"], registry=r,
        )
        self.snapshots = Counter("stream_learner_snapshots", "Snapshots saved.", ["key"], registry=r)
        self.snapshot_failures = Counter("stream_learner_snapshot_failures", "Snapshots that failed to save.", ["key"], registry=r)
        self.snapshot_time = Gauge("stream_learner_last_snapshot_timestamp_seconds", "Unix time of the last saved snapshot.", ["key"], registry=r)
        self.lag = Gauge("stream_learner_kafka_consumer_lag_messages", "Messages behind the partition's end offset.", ["topic", "partition"], registry=r)
        self.offset_resets = Counter(
            "stream_learner_kafka_offset_resets", "Stored offsets a partition no longer held, moved by kafka.offset_out_of_range.", ["topic", "partition", "policy"], registry=r
        )
        self.started = Gauge("stream_learner_start_time_seconds", "Unix time the run started.", registry=r)
        self.started.set(clock())
        self.finished = Gauge("stream_learner_end_time_seconds", "Unix time the run's source ended; 0 while it runs.", registry=r)
        self.run_info = Gauge(
            "stream_learner_run_info", "What this run learns: its source, model, strategy and drift detector as labels (the value is 1).",
            ["source", "model", "strategy", "detector"], registry=r,
        )
        self.keys = Gauge("stream_learner_keys", "Model keys seen so far.", registry=r)
        self.resident = Gauge("stream_learner_resident_keys", "Model keys whose learners are in memory (a bounded resident set evicts the others).", registry=r)
        self.keys_in_drift = Gauge(
            "stream_learner_keys_in_drift", "Model keys whose latest detected drift is fewer than 1,000 of their own events old.", registry=r
        )
        self.eviction_time = Histogram(
            "stream_learner_key_eviction_seconds", "Time to write one evicted key's learner to the snapshot store (_count: evictions).",
            buckets=EVICTION_BUCKETS, registry=r,
        )
        self.restore_time = Histogram(
            "stream_learner_key_restore_seconds", "Time to load one key's learner back from the snapshot store on its next event (_count: restores).",
            buckets=EVICTION_BUCKETS, registry=r,
        )
        self.lost_states = Counter(
            "stream_learner_lost_states",
            "Evicted model keys started afresh because the snapshot store had lost every version of them (snapshot.lost_state=new_learner).",
            registry=r,
        )
        self.latency = LatencyHistogram()
        r.register(_LatencyCollector(self.latency))
        # the per-key gauges key="other" aggregates over the keys without a label of their own: ratios by their mean, counts by their sum
        self._aggregated: list[tuple[Gauge, tuple[str, ...], bool]] = [
            *((gauge, (), False) for gauge in (self.accuracy, self.accuracy_window, self.mae, self.forgetting, self.bwt, self.average_accuracy, self.average_mae)),
            (self.labelled, (), True), (self.concepts, (), True),
            *((self.delayed_labels, (state,), True) for state in DELAYED_LABEL_STATES),
        ]  # fmt: skip
        self._other_gauges = [False] * len(self._aggregated)  # whether key="other" has the series yet (made when first given a value)
        self._other_sums = [0.0] * len(self._aggregated)
        self._other_counts = [0] * len(self._aggregated)

        self._lock = threading.Lock()
        self._matrix_cells: dict[str, set[str]] = {}
        self._feature_labels: set[str] = set()
        self._keys: dict[str, _Key] = {}
        self._labelled = 0
        self._other: _Series | None = None  # the series of key="other", from the first key past top_keys
        self._histories: dict[str, dict[str, Any]] = {}  # the labelled keys', and the watched ones'
        self._watched: OrderedDict[str, None] = OrderedDict()  # keys the page showed, beyond the labelled ones; the latest shown last
        self._in_drift = 0
        self._resident: int | None = None  # None: the run bounds no resident set
        self._evictions = self._restores = self._lost_states = 0
        self._ranking: dict[str, Any] = {"at": None, "by_events": [], "worst_accuracy": []}
        self._throughput: deque[list[float]] = deque(maxlen=MAX_THROUGHPUT)
        self._latency_points: deque[list[float | None]] = deque(maxlen=MAX_THROUGHPUT)  # [time, p50, p99, events] of each sample's interval
        self._latency_seen = [0] * (len(self.latency.bounds) + 1)  # the bucket counts at the last sample
        self._totals = {"events": 0, "predictions": 0, "dead_letters": 0}
        self._reasons: dict[str, int] = {}
        self._recent_dead: deque[dict[str, Any]] = deque(maxlen=MAX_RECENT_DEAD)
        self._last_sample = 0.0
        self._started = clock()
        self._finished: dict[str, Any] | None = None
        self._run: dict[str, str] | None = None

    # --- the RunStats listener hooks -------------------------------------------------------

    def on_read(self, n: int) -> None:
        """``n`` records were read from the source."""
        self.events.inc(n)
        with self._lock:
            self._totals["events"] += n
            self._sample_throughput(force=False)

    def on_outputs(self, outputs: Iterable[Any]) -> None:
        """A batch of learner outputs (``StepOutput``) on their way to the sinks."""
        now = self._clock()
        with self._lock:
            for out in outputs:
                if out.predictions:  # one key's step: its predictions share the key
                    key = self._key(out.predictions[0]["key"])
                    key.series.predictions.inc(len(out.predictions))
                    self._totals["predictions"] += len(out.predictions)
                    key.predictions += len(out.predictions)
                for dead in out.dead_letters:
                    reason = dead["reason"]  # one of stream_learner.records.REASONS
                    self.dead_letters.labels(reason).inc()
                    self._totals["dead_letters"] += 1
                    self._reasons[reason] = self._reasons.get(reason, 0) + 1
                    self._recent_dead.append(
                        {"reason": reason, "error": dead["error"][:300], "origin": dead.get("origin"), "ts": dead.get("ts", now)}
                    )
                for record in out.metrics:
                    if record["type"] == "promotion":
                        self._on_promotion(record)
                        continue
                    if record["type"] == "metrics":
                        self._on_candidate(record)
                    if not is_champions(record):
                        continue  # a challenger's figures are not its key's (the champion's are), nor are control answers
                    if record["type"] == "metrics":
                        self._on_metrics(record)
                    elif record["type"] == "drift":
                        self._on_drift(record)
                    elif record["type"] == "feature_drift":
                        self._on_feature_drift(record)
            self._sample_throughput(force=False)

    def on_step(self, key: str, events: int, seconds: float) -> None:
        """The learner step of ``key`` took ``seconds`` for a batch of ``events``."""
        with self._lock:
            series = self._key(key).series
        series.step.observe(seconds)
        if events:
            series.step_per_event.observe(seconds / events)

    def wants_accuracy_points(self, key: str) -> bool:
        """Whether ``key``'s labelled predictions should be scored for its fine accuracy points: it has a history (a key seen now for the first time is counted now)."""
        with self._lock:
            self._key(key)
            return key in self._histories

    def on_accuracy_scored(self, key: str, scored: list[tuple[int, float]]) -> None:
        """``key``'s labelled predictions of one step, ``(event position, error)`` each: its fine accuracy points."""
        with self._lock:
            h = self._histories.get(key)
            if h is None:
                return
            points = h["fine_points"]
            points.extend(h["towards_point"].add(scored))
            if len(points) >= 2 * MAX_POINTS:  # the whole run, at half the resolution
                h["fine_points"] = points[1::2]

    def on_latency(self, latencies: list[tuple[float, int]]) -> None:
        """Predictions were handed to the sinks: each ``(seconds, count)`` is ``count`` of them, ``seconds`` after their source batch."""
        self.latency.add(latencies)

    def on_snapshot(self, key: str, version: int | None) -> None:
        """A snapshot of ``key`` was saved (``version``) or failed (``None``)."""
        with self._lock:
            k = self._key(key)
            if version is None:
                self.snapshot_failures.labels(k.label).inc()
            else:
                k.snapshot_at = self._clock()
                k.series.snapshots.inc()
                self.snapshot_time.labels(k.label).set(k.snapshot_at)  # key="other": the latest of those keys'

    def on_evicted(self, key: str, seconds: float) -> None:
        """``key``'s learner was written to the snapshot store to free memory, in ``seconds``."""
        self.eviction_time.observe(seconds)
        with self._lock:
            self._evictions += 1

    def on_restored(self, key: str, seconds: float) -> None:
        """``key``'s learner was loaded back from the snapshot store, in ``seconds``."""
        self.restore_time.observe(seconds)
        with self._lock:
            self._restores += 1

    def on_lost(self, key: str) -> None:
        """``key``'s evicted learner was lost with the snapshot store's data: it starts afresh."""
        self.lost_states.inc()
        with self._lock:
            self._lost_states += 1

    def on_resident(self, n: int) -> None:
        """``n`` keys' learners are in memory."""
        self.resident.set(n)
        with self._lock:
            self._resident = n

    def set_consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        """Kafka sources report how far each partition is behind its end offset."""
        self.lag.labels(topic, str(partition)).set(lag)

    def on_offset_reset(self, topic: str, partition: int, policy: str) -> None:
        """A stored offset of ``topic:partition`` was out of range and moved to its ``policy`` end."""
        self.offset_resets.labels(topic, str(partition), policy).inc()

    def describe_run(self, source: str, engine: EngineConfig) -> None:
        """What the run learns (its source, model, strategy, detector), for the page and ``stream_learner_run_info``."""
        run = {
            "source": source,
            "model": engine.learner.model,
            "strategy": engine.learner.strategy or "none",
            "detector": engine.detector or "none",
        }
        self.run_info.labels(**run).set(1)
        with self._lock:
            self._run = run

    def mark_finished(self, summary: dict[str, Any]) -> None:
        """The run ended (the page shows it, the servers may linger)."""
        with self._lock:
            self._sample_throughput(force=True)
            self._finished = dict(summary)
            self._ranking["at"] = None  # the page's next ranking is the run's last
        self.finished.set(self._clock())

    # --- reading it back ---------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: str) -> float | None:
        """One sample's value (tests and the CLI)."""
        return self.registry.get_sample_value(name, labels)

    def metric_names(self) -> set[str]:
        """Every metric family name this telemetry exports (e.g. ``stream_learner_drifts_total``)."""
        names = set()
        for family in self.registry.collect():
            names.add(family.name + "_total" if family.type == "counter" else family.name)
        return names

    def state(self, key: str | None = None) -> dict[str, Any]:
        """What the dashboard page draws, as plain JSON-able data: the run, and one key (``key``, else the first seen).

        A key beyond the labelled ones is watched from then on: the page
        keeps its history while it is among the last :data:`MAX_WATCHED` shown.
        """
        now = self._clock()
        with self._lock:
            if self._finished is None:
                self._sample_throughput(force=False)
            name = key if key in self._keys else next(iter(self._keys), None)
            if name is not None and name not in self._histories:
                self._watch(name)
            elif name is not None and name in self._watched:
                self._watched.move_to_end(name)
            return {
                "now": now,
                "started": self._started,
                "finished": self._finished,
                "run": self._run,
                "totals": dict(self._totals),
                "throughput": [list(s) for s in self._throughput],
                "latency": {**self.latency.summary(), "points": [list(p) for p in self._latency_points]},
                "dead_letters": {"by_reason": dict(self._reasons), "recent": list(self._recent_dead)},
                "fleet": self._fleet(),
                "keys": {name: self._entry(name)} if name is not None else {},
            }

    def search_keys(self, query: str = "", limit: int = SEARCH_LIMIT) -> dict[str, Any]:
        """The first ``limit`` keys (in order) containing ``query`` (any case), how many do, and how many keys there are."""
        needle = query.lower()
        with self._lock:
            names = list(self._keys)
        matching = [name for name in names if needle in name.lower()] if needle else names
        return {"keys": heapq.nsmallest(limit, matching), "matches": len(matching), "total": len(names)}

    # --- internals (the caller holds the lock) -------------------------------------------------

    def _key(self, name: str) -> _Key:
        """The key's record; a new key gets its own label (and a history) while fewer than ``top_keys`` have one."""
        key = self._keys.get(name)
        if key is None:
            if self._labelled < self.top_keys:
                self._labelled += 1
                key = self._keys[name] = _Key(_Series(self, name))
                self._histories[name] = self._new_history()
            else:
                if self._other is None:
                    self._other = _Series(self, OTHER_KEY)
                key = self._keys[name] = _Key(self._other)
            self.keys.set(len(self._keys))
        return key

    @staticmethod
    def _new_history() -> dict[str, Any]:
        return {
            "points": [], "drifts": deque(maxlen=MAX_DRIFTS), "feature_drifts": deque(maxlen=MAX_DRIFTS), "latest": None,
            "evaluations": deque(maxlen=MAX_POINTS), "candidates": {}, "promotions": deque(maxlen=MAX_DRIFTS),
            "fine_points": [], "towards_point": AccuracyPoints(),
        }  # fmt: skip

    def _watch(self, name: str) -> None:
        """Keep ``name``'s history from now on, dropping the least recently shown watched key's past :data:`MAX_WATCHED`."""
        self._histories[name] = self._new_history()
        self._watched[name] = None
        if len(self._watched) > MAX_WATCHED:
            gone, _ = self._watched.popitem(last=False)
            del self._histories[gone]

    def _entry(self, name: str) -> dict[str, Any]:
        key = self._keys[name]
        h = self._histories[name]
        return {
            "predictions": key.predictions,
            "points": [list(p) for p in h["points"]],
            "fine_points": [list(p) for p in h["fine_points"]],
            "drifts": list(h["drifts"]),
            "feature_drifts": list(h["feature_drifts"]),
            "drift_count": key.drift_count,
            "feature_drift_count": key.feature_drift_count,
            "snapshot_at": key.snapshot_at,
            "evaluations": list(h["evaluations"]),
            "candidates": {candidate: [list(p) for p in points] for candidate, points in h["candidates"].items()},
            "promotions": list(h["promotions"]),
            "latest": h["latest"] or self._light_latest(name, key),
            "history": "whole run" if key.label != OTHER_KEY else "since shown",
        }

    @staticmethod
    def _light_latest(name: str, key: _Key) -> dict[str, Any] | None:
        """A watched key's latest figures until its next metrics record (the matrix is not kept for unlabelled keys)."""
        if key.figures is None:
            return None
        accuracy, window, mae, average, bwt, average_accuracy, average_mae, labelled, concepts, *delayed = key.figures
        latest = {
            "key": name, "events": key.events, "labelled": labelled, "accuracy": accuracy, "accuracy_window": window, "mae": mae,
            "concept": key.concept, "concepts": concepts, "ts": key.ts,
            "forgetting": {"average": average, "bwt": bwt, "average_accuracy": average_accuracy, "average_mae": average_mae, "matrix": [], "columns": []},
        }  # fmt: skip
        if delayed[0] is not None:
            latest["delayed_labels"] = dict(zip(DELAYED_LABEL_STATES, delayed))
        return latest

    def _fleet(self) -> dict[str, Any]:
        now = self._clock()
        ranked_at = self._ranking["at"]
        if ranked_at is None or now - ranked_at >= RANK_EVERY:
            figures = ((name, k.predictions, *((k.figures[0], k.figures[7]) if k.figures else (None, 0))) for name, k in self._keys.items())
            self._ranking = {"at": now, **rank_keys(figures, PAGE_TOP_KEYS)}
        return {
            "top_keys": {"by_events": self._ranking["by_events"], "worst_accuracy": self._ranking["worst_accuracy"], "ranked_at": self._ranking["at"]},
            "keys": len(self._keys),
            "labelled_keys": self._labelled,
            "resident": self._resident,
            "in_drift": self._in_drift,
            "evictions": self._evictions,
            "restores": self._restores,
            "lost_states": self._lost_states,
        }

    def _on_metrics(self, record: MetricsDict) -> None:
        name = record["key"]
        key = self._key(name)
        was_in_drift = key.in_drift()
        before, key.figures = key.figures, _figures(record)
        key.events, key.concept, key.ts = record["events"], record["concept"], record["ts"]
        self._tally_drift(was_in_drift, key)
        if key.label == OTHER_KEY:
            self._aggregate_other(before, key.figures)
        else:
            self._set_key_gauges(record)
        h = self._histories.get(name)
        if h is None:
            return
        self._note_evaluation(h["evaluations"], record)
        h["latest"] = {k: v for k, v in record.items() if k != "type"}
        points = h["points"]
        points.append([record["events"], record["accuracy"], record["accuracy_window"], record["concept"], record["ts"]])
        if len(points) >= 2 * MAX_POINTS:  # keep the whole run, at half the resolution
            h["points"] = points[1::2]

    def _set_key_gauges(self, record: MetricsDict) -> None:
        """A labelled key's gauges, from its metrics record."""
        key = record["key"]
        forgetting = record["forgetting"]
        for gauge, value in (
            (self.accuracy, record["accuracy"]),
            (self.accuracy_window, record["accuracy_window"]),
            (self.mae, record["mae"]),
            (self.forgetting, forgetting["average"]),
            (self.bwt, forgetting["bwt"]),
            (self.average_accuracy, forgetting["average_accuracy"]),
            (self.average_mae, forgetting["average_mae"]),
        ):
            if value is not None:  # a null (not measured yet) leaves the gauge unset
                gauge.labels(key).set(value)
        self.labelled.labels(key).set(record["labelled"])
        self.concept.labels(key).set(record["concept"])
        self.concepts.labels(key).set(record["concepts"])
        if forgetting["matrix"]:
            gauge = self.matrix_mae if forgetting["metric"] == "mae" else self.matrix
            self._set_matrix_row(gauge, key, forgetting["matrix"][-1], forgetting["columns"])
        delayed = record.get("delayed_labels")
        if delayed is not None:
            for state in DELAYED_LABEL_STATES:
                self.delayed_labels.labels(key, state).set(delayed[state])

    def _aggregate_other(self, before: tuple[Any, ...] | None, after: tuple[Any, ...]) -> None:
        """Move key="other"'s sums by what one of its keys' figures changed from ``before`` to ``after`` (its gauges read them when scraped)."""
        sums, counts = self._other_sums, self._other_counts
        for i, new in enumerate(after):
            old = before[i] if before is not None else None
            if old == new:
                continue
            if old is not None:
                sums[i] -= old
                counts[i] -= 1
            if new is not None:
                sums[i] += new
                counts[i] += 1
                if not self._other_gauges[i]:
                    gauge, labels, is_sum = self._aggregated[i]
                    gauge.labels(OTHER_KEY, *labels).set_function(partial(self._other_value, i, is_sum))
                    self._other_gauges[i] = True

    def _other_value(self, i: int, is_sum: bool) -> float:
        """key="other"'s value of the ``i``-th aggregated gauge: its keys' sum, or their mean (NaN while none has one)."""
        with self._lock:
            count = self._other_counts[i]
            return self._other_sums[i] if is_sum else (self._other_sums[i] / count if count else math.nan)

    def _tally_drift(self, was_in_drift: bool, key: _Key) -> None:
        now_in_drift = key.in_drift()
        if now_in_drift != was_in_drift:
            self._in_drift += 1 if now_in_drift else -1
            self.keys_in_drift.set(self._in_drift)

    @staticmethod
    def _note_evaluation(evaluations: deque[dict[str, Any]], record: MetricsDict) -> None:
        """The record's newest matrix row, placed at the record's event count, unless it is the row noted last.

        A metrics record follows every boundary (where concepts are evaluated),
        so its event count places the row; two evaluations between two records
        show as the later one. These rows are the page's forgetting curves and
        its matrix with a position per row.
        """
        forgetting = record["forgetting"]
        if not forgetting["matrix"]:
            return
        row = {"columns": forgetting["columns"], "row": forgetting["matrix"][-1]}
        if not evaluations or {k: evaluations[-1][k] for k in row} != row:
            evaluations.append({"at_event": record["events"], **row})

    def _set_matrix_row(self, gauge: Gauge, key: str, row: list[float | None], columns: list[int]) -> None:
        """The newest row on ``gauge`` (accuracy or a regression model's error: a key's model is one or the other for good)."""
        cells: set[str] = set()
        for concept, value in zip(columns, row):
            if value is not None:
                cells.add(str(concept))
                gauge.labels(key, str(concept)).set(value)
        for gone in self._matrix_cells.get(key, set()) - cells:  # concepts that dropped out of the bounded matrix
            gauge.remove(key, gone)
        self._matrix_cells[key] = cells

    def _on_candidate(self, record: MetricsDict) -> None:
        """One candidate's metrics record, where the key has challengers: its gauge and its line on the page."""
        name, candidate = record["key"], record.get("candidate")
        if candidate is None:
            return
        if self._key(name).label != OTHER_KEY and record["accuracy_window"] is not None:
            self.candidate_accuracy_window.labels(name, candidate).set(record["accuracy_window"])
        h = self._histories.get(name)
        if h is not None:
            points = h["candidates"].setdefault(candidate, [])
            points.append([record["events"], record["accuracy_window"]])
            if len(points) >= 2 * MAX_POINTS:  # the whole run, at half the resolution
                h["candidates"][candidate] = points[1::2]

    def _on_promotion(self, record: PromotionDict) -> None:
        key = self._key(record["key"])
        self.promotions.labels(key.label, "true" if record["applied"] else "false").inc()
        h = self._histories.get(record["key"])
        if h is not None:
            h["promotions"].append({k: record[k] for k in ("at_event", "champion", "challenger", "applied", "ts")})

    def _on_drift(self, record: DriftDict) -> None:
        key = self._key(record["key"])
        key.drift_count += 1
        if record["detector"] == "recurring":  # an earlier concept's model back, inside the concept: no drift
            self.concepts_reused.labels(key.label).inc()
            return
        if record["detector"] == "task":
            self.task_switches.labels(key.label).inc()
        else:
            self.drifts.labels(key.label, record["detector"]).inc()
            was_in_drift = key.in_drift()
            key.last_drift_at = record["at_event"]
            self._tally_drift(was_in_drift, key)
            if key.label != OTHER_KEY:  # an event position of one key's stream: no sum or mean of them means anything
                self.last_drift_at.labels(key.label).set(record["at_event"])
        h = self._histories.get(record["key"])
        if h is not None:
            h["drifts"].append({"at_event": record["at_event"], "concept": record["concept"], "detector": record["detector"], "ts": record["ts"]})

    def _on_feature_drift(self, record: FeatureDriftDict) -> None:
        key = self._key(record["key"])
        key.feature_drift_count += 1
        for feature in record["features"][:MAX_FEATURES_PER_DRIFT]:
            self.feature_drifts.labels(key.label, self._feature_label(feature["name"])).inc()
        h = self._histories.get(record["key"])
        if h is not None:
            h["feature_drifts"].append(
                {"at_event": record["at_event"], "concept": record["concept"], "features": record["features"][:MAX_FEATURES_PER_DRIFT], "ts": record["ts"]}
            )

    def _feature_label(self, name: str) -> str:
        """``name`` while fewer than :data:`MAX_FEATURE_LABELS` features have drifted (or it is one of them), else :data:`OTHER_FEATURE`."""
        if name not in self._feature_labels and len(self._feature_labels) < MAX_FEATURE_LABELS:
            self._feature_labels.add(name)
        return name if name in self._feature_labels else OTHER_FEATURE

    def _sample_throughput(self, force: bool) -> None:
        now = self._clock()
        if force or now - self._last_sample >= THROUGHPUT_EVERY:
            self._last_sample = now
            t = self._totals
            self._throughput.append([now, t["events"], t["predictions"], t["dead_letters"]])
            self._sample_latency(now)

    def _sample_latency(self, now: float) -> None:
        """The median and 99th percentile of the latencies measured since the last sample, where there are any."""
        counts, _ = self.latency.counts()
        new = [n - seen for n, seen in zip(counts, self._latency_seen)]
        self._latency_seen = counts
        if any(new):
            bounds = self.latency.bounds
            self._latency_points.append([now, quantile(bounds, new, 0.5), quantile(bounds, new, 0.99), sum(new)])


class MetricsServer:
    """``/metrics`` over HTTP for one :class:`Telemetry` (prometheus-client's exposition server)."""

    def __init__(self, telemetry: Telemetry, port: int, host: str = "0.0.0.0") -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=telemetry.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); is another engine using it?") from None
        self.port = self._server.server_address[1]
        self.host = host

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
