"""Prometheus metrics and the live history behind the dashboard page.

A :class:`Telemetry` owns its own ``CollectorRegistry``: nothing is
registered when this module is imported, and two runs in one process do
not share counters. The dataflow feeds it through :class:`RunStats`'s
listener hooks (``on_read``, ``on_outputs``, ``on_step``, ``on_snapshot``).

Labels stay bounded: the model key, the dead-letter reason (a fixed set),
the drift detector, the Kafka topic and partition, the concepts kept in
the (bounded) accuracy matrix, and the first :data:`MAX_FEATURE_LABELS`
feature names seen drifting (any later one is ``other``); never an event id.

>>> t = Telemetry()
>>> t.on_read(3)
>>> t.sample("stream_learner_events_total")
3.0
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Iterable, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from stream_learner.engine import EngineConfig
from stream_learner.errors import ConfigError
from stream_learner.records import DelayedLabelState, DriftDict, FeatureDriftDict, MetricsDict

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


class Telemetry:
    """The engine's Prometheus metrics (in a registry of its own) and the dashboard's recent history."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Any = time.time) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
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

        self._lock = threading.Lock()
        self._matrix_cells: dict[str, set[str]] = {}
        self._feature_labels: set[str] = set()
        self._keys: dict[str, dict[str, Any]] = {}
        self._throughput: deque[list[float]] = deque(maxlen=MAX_THROUGHPUT)
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
                if out.predictions:
                    key = out.predictions[0]["key"]
                    self.predictions.labels(key).inc(len(out.predictions))
                    self._totals["predictions"] += len(out.predictions)
                    self._history(key)["predictions"] += len(out.predictions)
                for dead in out.dead_letters:
                    reason = dead["reason"]  # one of stream_learner.records.REASONS
                    self.dead_letters.labels(reason).inc()
                    self._totals["dead_letters"] += 1
                    self._reasons[reason] = self._reasons.get(reason, 0) + 1
                    self._recent_dead.append(
                        {"reason": reason, "error": dead["error"][:300], "origin": dead.get("origin"), "ts": dead.get("ts", now)}
                    )
                for record in out.metrics:
                    if record["type"] == "metrics":
                        self._on_metrics(record)
                    elif record["type"] == "drift":
                        self._on_drift(record)
                    elif record["type"] == "feature_drift":
                        self._on_feature_drift(record)
            self._sample_throughput(force=False)

    def on_step(self, key: str, events: int, seconds: float) -> None:
        """The learner step of ``key`` took ``seconds`` for a batch of ``events``."""
        self.step.labels(key).observe(seconds)
        if events:
            self.step_per_event.labels(key).observe(seconds / events)

    def on_snapshot(self, key: str, version: int | None) -> None:
        """A snapshot of ``key`` was saved (``version``) or failed (``None``)."""
        if version is None:
            self.snapshot_failures.labels(key).inc()
        else:
            now = self._clock()
            self.snapshots.labels(key).inc()
            self.snapshot_time.labels(key).set(now)
            with self._lock:
                self._history(key)["snapshot_at"] = now

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

    def state(self) -> dict[str, Any]:
        """What the dashboard page draws, as plain JSON-able data."""
        now = self._clock()
        with self._lock:
            if self._finished is None:
                self._sample_throughput(force=False)
            return {
                "now": now,
                "started": self._started,
                "finished": self._finished,
                "run": self._run,
                "totals": dict(self._totals),
                "throughput": [list(s) for s in self._throughput],
                "dead_letters": {"by_reason": dict(self._reasons), "recent": list(self._recent_dead)},
                "keys": {
                    key: {
                        "predictions": h["predictions"],
                        "points": [list(p) for p in h["points"]],
                        "drifts": list(h["drifts"]),
                        "feature_drifts": list(h["feature_drifts"]),
                        "snapshot_at": h["snapshot_at"],
                        "evaluations": list(h["evaluations"]),
                        "latest": h["latest"],
                    }
                    for key, h in sorted(self._keys.items())
                },
            }

    # --- internals ---------------------------------------------------------------------------

    def _history(self, key: str) -> dict[str, Any]:
        h = self._keys.get(key)
        if h is None:
            h = self._keys[key] = {
                "predictions": 0, "points": [], "drifts": deque(maxlen=MAX_DRIFTS), "feature_drifts": deque(maxlen=MAX_DRIFTS), "latest": None,
                "snapshot_at": None, "evaluations": deque(maxlen=MAX_POINTS),
            }  # fmt: skip
        return h

    def _on_metrics(self, record: MetricsDict) -> None:
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
        h = self._history(key)
        self._note_evaluation(h["evaluations"], record)
        h["latest"] = {k: v for k, v in record.items() if k != "type"}
        points = h["points"]
        points.append([record["events"], record["accuracy"], record["accuracy_window"], record["concept"], record["ts"]])
        if len(points) >= 2 * MAX_POINTS:  # keep the whole run, at half the resolution
            h["points"] = points[1::2]

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

    def _on_drift(self, record: DriftDict) -> None:
        key = record["key"]
        if record["detector"] == "task":
            self.task_switches.labels(key).inc()
        else:
            self.drifts.labels(key, record["detector"]).inc()
            self.last_drift_at.labels(key).set(record["at_event"])
        self._history(key)["drifts"].append(
            {"at_event": record["at_event"], "concept": record["concept"], "detector": record["detector"], "ts": record["ts"]}
        )

    def _on_feature_drift(self, record: FeatureDriftDict) -> None:
        key = record["key"]
        for feature in record["features"][:MAX_FEATURES_PER_DRIFT]:
            self.feature_drifts.labels(key, self._feature_label(feature["name"])).inc()
        self._history(key)["feature_drifts"].append(
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
