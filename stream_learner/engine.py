"""The per-key learner step: predict, then learn, then measure.

One :class:`KeyedLearner` per model key. It takes events in order and
returns what should be published: predictions, metrics, drift events,
dead letters (for events the model itself rejects) and, every
``snapshot_every`` events, its own pickled state.

>>> step = KeyedLearner("default", EngineConfig(metrics_every=2))
>>> events = [Event(str(i), "default", {"x": float(i % 2)}, bool(i % 2), None, 0, i) for i in range(4)]
>>> out = step.process(events, now=0.0)
>>> len(out.predictions), [m["labelled"] for m in out.metrics]
(4, [2, 4])
>>> step.events, step.learned
(4, 4)
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from stream_learner.delayed import LabelRecord, PendingWindow
from stream_learner.drift import DriftMonitor, NewLabelWatch
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.events import MAX_RECORD_BYTES, DeadLetterReason, Event, EventBatch, EventRow, Origin, dead_letter
from stream_learner.forgetting import ForgettingTracker
from stream_learner.forked_pickle import ForkedPickle
from stream_learner.learners.base import Journal, Learner, LearnerSpec, forkable
from stream_learner.learners.factory import build_learner
from stream_learner.metrics import Prequential
from stream_learner.predictions import Predictions
from stream_learner.schema import Schema
from stream_learner.snapshot import Snapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """How each per-key learner is built and how often it reports.

    Attributes:
        learner: the model to build for each key.
        detector: drift detector name, or ``None`` for no drift detection.
        detector_params: keyword arguments of the detector.
        window: size of the sliding accuracy window.
        metrics_every: publish metrics every N labelled events (and at each
            boundary and at the end).
        snapshot_every: also snapshot every N events (0: by time only).
        with_proba: include class probabilities in predictions.
        source: the source's name, used in dead letters' origin.
        label_window: how many unlabelled predictions wait for a delayed
            label (0: delayed labels are not joined); see
            :mod:`stream_learner.delayed`.
        label_window_seconds: how long they wait, in seconds.
        snapshot_seconds: snapshot when this many seconds passed since the
            last snapshot and events came in (0: only every N events). Time,
            not throughput, sets the default cadence: a snapshot costs the
            same at any rate, and at 100k events/s "every 10,000 events"
            would be ten a second. The end of a stream always snapshots.
        forgetting_every: evaluate every concept's sample every N labelled
            events (0: only at boundaries and at the end); see
            :mod:`stream_learner.forgetting`.
        forgetting_sample: labelled events sampled per concept.
        forgetting_holdout: keep the sampled events out of training.
        new_label_gap: also mark a new concept where a label never seen
            before arrives, at least this many labelled events after the last
            boundary (class-incremental streams; 0: off); see
            :class:`~stream_learner.drift.NewLabelWatch`.
        max_record_bytes: the largest input record decoded; a larger one is
            a ``too_large`` dead letter (see :mod:`stream_learner.events`).
    """

    learner: LearnerSpec = field(default_factory=LearnerSpec)
    detector: str | None = "adwin"
    detector_params: dict[str, Any] = field(default_factory=dict)
    window: int = 1000
    metrics_every: int = 1000
    snapshot_every: int = 0
    with_proba: bool = True
    source: str = "source"
    label_window: int = 0
    label_window_seconds: float = 3600.0
    snapshot_seconds: float = 30.0
    forgetting_every: int = 10_000
    forgetting_sample: int = 100
    forgetting_holdout: bool = False
    new_label_gap: int = 0
    max_record_bytes: int = MAX_RECORD_BYTES


@dataclass
class StepOutput:
    """Everything one call of the learner step asks to publish."""

    predictions: Predictions | list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    snapshot: Snapshot | None = None


class KeyedLearner:
    """Test-then-train for one model key, with drift and concept tracking."""

    def __init__(
        self,
        key: str,
        config: EngineConfig,
        learner_factory: Callable[[LearnerSpec], Learner] = build_learner,
    ) -> None:
        self.key = key
        self.config = config
        self.learner = learner_factory(config.learner)
        self.metrics = Prequential(self.learner.task, config.window)
        if config.detector is not None and self.learner.task == "regression" and config.detector in ("ddm", "eddm"):
            raise ConfigError(f"drift detector {config.detector!r} needs a classification model")
        self.monitor = (
            DriftMonitor(config.detector, config.detector_params, seed=config.learner.seed) if config.detector else None
        )
        if config.new_label_gap and self.learner.task == "regression":
            raise ConfigError("new-label boundaries need a classification model")
        self.new_labels = NewLabelWatch(config.new_label_gap) if config.new_label_gap else None
        self.events = 0
        self.learned = 0
        self.drifts = 0
        self.concept = 0
        self.concepts = 1
        self.tasks: dict[str | int, int] = {}
        self.next_offsets: dict[int, int] = {}
        self._since_metrics = 0
        self._since_snapshot = 0
        self._snapshot_at = time.time()
        self.pending = PendingWindow(config.label_window, config.label_window_seconds) if config.label_window else None
        self.forgetting = ForgettingTracker(config.forgetting_sample, holdout=config.forgetting_holdout, seed=config.learner.seed, task=self.learner.task)
        self.schema = Schema(self.learner.task)
        self.failures = 0  # model failures outside an event's own step (a boundary, an evaluation), logged
        self.journal = Journal(lambda: learner_factory(config.learner))
        self._changes = 0  # counts replacements of the learner's model (boundaries, rollbacks): bound methods go stale

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["journal"]  # a second copy of the model and recent events: rebuilt on restore instead
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "schema" not in state:  # a snapshot of an earlier version: its forgetting samples are what is known of its schema
            self.schema = Schema(self.learner.task)
            for x in self.forgetting.sample_features():
                self.schema.learn_features(x)
            for y in self.forgetting.sample_labels():
                self.schema.learn_label(y)
        monitor = self.monitor
        if monitor is not None and not hasattr(monitor, "params"):  # a snapshot of an earlier version: reset builds from these
            config = self.config
            monitor.params = DriftMonitor(config.detector, config.detector_params, seed=config.learner.seed).params
        self.failures = state.get("failures", 0)
        self._changes = 0
        self.journal = Journal.at(self.learner)

    def process(self, events: list[Event | LabelRecord] | EventBatch, now: float) -> StepOutput:
        """Predict for each event, learn from the labelled ones, in order.

        ``events`` is a list of :class:`~stream_learner.events.Event` or an
        :class:`~stream_learner.events.EventBatch`. A list may also hold
        delayed labels (:class:`~stream_learner.delayed.LabelRecord`),
        joined to their pending prediction when ``config.label_window`` is set.
        """
        predictions = Predictions(self.key, now)
        out = StepOutput(predictions=predictions)
        pending = self.pending
        predict, learn = self.learner.predict, self.learner.learn
        changes = self._changes
        schema = self.schema
        known_class, known_numeric = schema.classes.get, schema.numeric.issuperset
        log_x, log_y = self.journal.xs.append, self.journal.ys.append  # Journal.record, inlined; a new log starts only after this loop
        observe = self.forgetting.observe
        append = predictions.rows.append
        with_proba = self.config.with_proba
        # what _score does, inlined below: a Python call per labelled event cost ~0.25 µs of a ~8 µs step
        record_error, error_of = self.metrics.pending.append, self.metrics.error
        classification = self.learner.task == "classification"
        monitor_update = self.monitor.update if self.monitor is not None else None
        metrics_every, forgetting_every = self.config.metrics_every, self.config.forgetting_every
        new_labels = self.new_labels
        if pending is not None:
            pending.expire(now)
        batch = type(events) is EventBatch
        lookahead = getattr(self.learner, "lookahead", None)  # optional: a learner that predicts in batches
        if lookahead is not None:
            lookahead([x for x, _ in events.pairs] if batch else [event.features for event in events if type(event) is not LabelRecord])
        if batch:
            start = self.next_offsets.get(events.partition, 0)  # what a restored learner has already learned is skipped
            rows = events.rows(start)
            self._since_snapshot += max(0, events.end_offset - max(start, events.first_offset))
            self.next_offsets[events.partition] = max(start, events.end_offset)
        else:
            rows = self._rows(events, out, now)
        for event_id, x, label, event in rows:
            if changes != self._changes:  # a boundary or a rollback (here or in _rows) may have replaced the model
                changes = self._changes
                predict, learn = self.learner.predict, self.learner.learn
            # the schema's quick, sufficient test, inlined (a call per event cost ~0.2 µs): the label a known class of its
            # type (a regression model's: a number), every feature a known numeric one, and no string among the values
            # (sum() raises on one); when it fails, problem() has the last word
            known = (
                label is None or (known_class(label) is type(label) if classification else (type(label) is float or type(label) is int))
            ) and known_numeric(x)
            if known:
                try:
                    sum(x.values())
                except (TypeError, OverflowError):
                    known = False
            if not known:
                problem = schema.problem(x, label)
                if problem is not None:
                    out.dead_letters.append(self._dead_letter(event or events.event(event_id), "schema", f"schema: {problem}", now))  # type: ignore[union-attr]
                    continue
            try:
                y_pred, proba = predict(x)
            except Exception as exc:  # a model rejecting an event must not stop the stream; predicting changed nothing
                out.dead_letters.append(self._model_error(event or events.event(event_id), exc, now))  # type: ignore[union-attr]
                continue
            if label is None and pending is not None:
                label = pending.add(event_id, x, y_pred, now)
                if label is not None:  # a delayed label that came before its event
                    known = False
                    problem = schema.label_problem(label)
                    if problem is not None:
                        out.dead_letters.append(self._dead_letter(Event(event_id, self.key, x, label, None, -1, -1), "schema", f"schema: {problem}", now))
                        pending.refuse(event_id, x, y_pred, now)  # as a label refused on arrival: not counted, the prediction waits
                        label = None
            if label is not None:
                if new_labels is not None and new_labels.update(label):
                    self._on_new_label(out, now)
                    changes = self._changes
                    predict, learn = self.learner.predict, self.learner.learn
                if not observe(self.concept, x, label):
                    try:
                        learn(x, label)
                    except Exception as exc:  # the model is put back as it was before this event
                        self._roll_back()
                        out.dead_letters.append(self._model_error(event or events.event(event_id), exc, now))  # type: ignore[union-attr]
                        continue
                    log_x(x)
                    log_y(label)
                if not known:
                    schema.learn(x, label)
            self.events += 1
            append((event_id, y_pred, proba if with_proba else None, self.learned, self.concept))
            if label is not None:
                learned = self.learned = self.learned + 1
                # Prequential.error, inlined for a classifier
                error = (0 if y_pred == label else 1) if classification else error_of(label, y_pred)
                record_error(error)
                since = self._since_metrics = self._since_metrics + 1
                if monitor_update is not None and monitor_update(error):
                    self._on_drift(self.config.detector or "none", out, now)
                elif since >= metrics_every:
                    out.metrics.append(self.metrics_record(now))
                if forgetting_every and learned % forgetting_every == 0:
                    self.evaluate_concepts()
        journal = self.journal
        journal.settle()  # the last checkpoint's child had this batch's time to finish
        if journal.due():
            journal.checkpoint(self.learner)
        every, seconds = self.config.snapshot_every, self.config.snapshot_seconds
        if self._since_snapshot and ((every and self._since_snapshot >= every) or (seconds and now - self._snapshot_at >= seconds)):
            self._snapshot_at = now
            out.snapshot = self.snapshot(background=True)
        return out

    def _rows(self, items: list[Event | LabelRecord], out: StepOutput, now: float) -> Iterator[EventRow]:
        """The rows :meth:`process` reads, one per event not learned yet, each once its place in the stream is reached.

        Lazily, in order: a delayed label is learned, and an event's task
        switches the concept, just before the events after it are read.
        """
        next_offsets, tasks = self.next_offsets, self.tasks
        for item in items:
            if type(item) is LabelRecord:
                self._learn_late(item, out, now)
                continue
            partition, offset = item.partition, item.offset
            if offset < next_offsets.get(partition, 0):
                continue  # already learned before the snapshot this learner was restored from
            next_offsets[partition] = offset + 1
            self._since_snapshot += 1
            task = item.task
            if task is not None and tasks.get(task) != self.concept:
                self._switch_task(task, out, now)
            yield item.id, item.features, item.label, item

    def finish(self, now: float) -> StepOutput:
        """The stream ended: final metrics and a final snapshot."""
        if self.pending is not None:
            self.pending.close()
        self.journal.settle()
        self.evaluate_concepts()
        return StepOutput(metrics=[self.metrics_record(now)], snapshot=self.snapshot())

    def evaluate_concepts(self) -> dict[int, float]:
        """Evaluate the model on every concept's sample: a new accuracy-matrix row.

        A learner with ``predict_many`` predicts the samples in one call.
        """
        try:
            predict_many = getattr(self.learner, "predict_many", None)
            if predict_many is None:
                predict = self.learner.predict
                return self.forgetting.evaluate(lambda x: predict(x)[0], current=self.concept)
            xs = self.forgetting.sample_features()
            predicted = {id(x): p for x, (p, _) in zip(xs, predict_many(xs))}
            return self.forgetting.evaluate(lambda x: predicted[id(x)], current=self.concept)
        except Exception as exc:  # the model cannot predict a sample: no row this time, the stream goes on
            self._failed("evaluating the concepts' samples", exc)
            return {}

    def metrics_record(self, now: float) -> dict[str, Any]:
        """The current metrics, in the shape of :class:`~stream_learner.events.MetricsRecord`."""
        self._since_metrics = 0
        m = self.metrics
        return {
            "type": "metrics",
            "key": self.key,
            "events": self.events,
            "labelled": m.labelled,
            "accuracy": m.accuracy,
            "accuracy_window": m.accuracy_window,
            "mae": m.mae,
            "rmse": m.rmse,
            "concept": self.concept,
            "concepts": self.concepts,
            "drifts": self.drifts,
            "forgetting": self.forgetting.summary(),
            "ts": now,
            **({"delayed_labels": self.pending.counts()} if self.pending is not None else {}),
            **({"failures": self.failures} if self.failures else {}),
        }

    def snapshot(self, background: bool = False) -> Snapshot:
        """Pickle this learner (model, metrics, detector, counters).

        ``background``: pickle it in a forked child (see
        :mod:`stream_learner.forked_pickle`), where the platform allows and
        the model is not on a GPU; the stream then pays for ``fork()`` only.
        """
        self._since_snapshot = 0
        forked = background and forkable(self.learner)
        return Snapshot(
            key=self.key,
            learner_kind=self.learner.family,
            strategy=self.config.learner.strategy or "none",
            events_seen=self.events,
            source_offsets=dict(self.next_offsets),
            pickled=ForkedPickle.start(self) if forked else pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL),
        )

    @classmethod
    def restore(cls, payload: bytes, config: EngineConfig) -> KeyedLearner:
        """Unpickle a *verified* snapshot payload and apply the current reporting settings.

        The model must be the one the configuration asks for.
        """
        learner = pickle.loads(payload)
        if not isinstance(learner, cls):
            raise SnapshotError(f"snapshot holds a {type(learner).__name__}, not a learner")
        if learner.config.learner != config.learner:
            raise SnapshotError(
                f"snapshot of key {learner.key!r} holds model {learner.config.learner.model!r} "
                f"{learner.config.learner.params}, but this run asks for {config.learner.model!r} {config.learner.params}"
            )
        learner.config = config
        learner.new_labels = _restored_watch(learner, config.new_label_gap)
        if getattr(learner, "pending", None) is None:
            learner.pending = PendingWindow(config.label_window, config.label_window_seconds) if config.label_window else None
        return learner

    def _learn_late(self, record: LabelRecord, out: StepOutput, now: float) -> None:
        """A delayed label: learn from its pending prediction, if it is still in the window."""
        if self.pending is None:
            origin = Origin(self.config.source, -1, -1)
            raw = orjson.dumps({"id": record.id, "key": record.key, "label": record.label}).decode()
            out.dead_letters.append(dead_letter("unjoinable_label", "delayed label, but this run joins none (no label window)", raw, origin, now))
            return
        event = Event(record.id, record.key, {}, record.label, None, -1, -1)
        problem = self.schema.label_problem(record.label)
        if problem is not None:  # before joining: the prediction stays pending for a label that fits
            out.dead_letters.append(self._dead_letter(event, "schema", f"schema: {problem}", now))
            return
        found = self.pending.label(record.id, record.label, now)
        if found is None:
            return
        x, y_pred = found
        event.features = x
        problem = self.schema.problem(x, record.label)  # the features fitted when predicted; the schema may have grown since
        if problem is not None:
            out.dead_letters.append(self._dead_letter(event, "schema", f"schema: {problem}", now))
            return
        if self.new_labels is not None and self.new_labels.update(record.label):
            self._on_new_label(out, now)
        if not self.forgetting.observe(self.concept, x, record.label):
            try:
                self.learner.learn(x, record.label)
            except Exception as exc:  # the model is put back as it was before this label
                self._roll_back()
                out.dead_letters.append(self._model_error(event, exc, now))
                return
            self.journal.record(x, record.label)
        self.schema.learn(x, record.label)
        self._score(record.label, y_pred, out, now)

    def _score(self, label: Any, y_pred: Any, out: StepOutput, now: float) -> None:
        """A labelled example was learned: prequential metrics, drift, and the metrics and forgetting cadences.

        For a delayed label; :meth:`process` runs the same steps inline.
        """
        self.learned += 1
        error = self.metrics.update(label, y_pred)
        self._since_metrics += 1
        monitor = self.monitor
        if monitor is not None and monitor.update(error):
            self._on_drift(self.config.detector or "none", out, now)
        elif self._since_metrics >= self.config.metrics_every:
            out.metrics.append(self.metrics_record(now))
        every = self.config.forgetting_every
        if every and self.learned % every == 0:
            self.evaluate_concepts()

    def _on_drift(self, detector: str, out: StepOutput, now: float) -> None:
        self.drifts += 1
        if not self.tasks:  # explicit tasks, when present, own the concept boundaries
            self._new_concept(self.concepts)
        out.metrics.append(self._drift_record(detector, now))
        out.metrics.append(self.metrics_record(now))

    def _on_new_label(self, out: StepOutput, now: float) -> None:
        """A label never seen before: a new concept, which this event's label is the first to be learned in."""
        if self.monitor is not None:
            self.monitor.reset()  # the error detector starts on the new concept, not amid its first errors
        self._on_drift("new_label", out, now)

    def _switch_task(self, task: str | int, out: StepOutput, now: float) -> None:
        if not self.tasks:
            self.tasks[task] = self.concept  # the first task names the current concept
            return
        if task not in self.tasks:
            self.tasks[task] = self.concepts
        self._new_concept(self.tasks[task])
        out.metrics.append(self._drift_record("task", now))

    def _new_concept(self, concept: int) -> None:
        self.evaluate_concepts()  # the last row of the concept that ends here
        self.concept = concept
        self.concepts = max(self.concepts, concept + 1)
        if self.new_labels is not None:
            self.new_labels.boundary()
        self._changes += 1  # a strategy may replace the model here
        try:
            self.learner.on_boundary(concept)
        except Exception as exc:  # the model is put back as it was before the boundary, which it then skips
            self._roll_back()
            self._failed(f"the boundary of concept {concept}", exc)
            return
        self.journal.record(None, concept)

    def _drift_record(self, detector: str, now: float) -> dict[str, Any]:
        return {"type": "drift", "key": self.key, "detector": detector, "at_event": self.events, "concept": self.concept, "ts": now}

    def _model_error(self, event: Event, exc: Exception, now: float) -> dict[str, Any]:
        return self._dead_letter(event, "model_error", f"model error: {type(exc).__name__}: {exc}", now)

    def _dead_letter(self, event: Event, reason: DeadLetterReason, error: str, now: float) -> dict[str, Any]:
        origin = Origin(self.config.source, event.partition, event.offset)
        raw = event.raw
        if raw is None:
            rebuilt = {"id": event.id, "key": event.key, "features": event.features, "label": event.label, "task": event.task}
            raw = orjson.dumps(rebuilt, option=orjson.OPT_NON_STR_KEYS, default=str)
        return dead_letter(reason, error, raw, origin, now)

    def _roll_back(self) -> None:
        """The model raised mid-step: put it back as it was before that step (see :class:`~stream_learner.learners.base.Journal`)."""
        try:
            self.learner = self.journal.rollback()
        except Exception as exc:  # the checkpoint cannot be rebuilt or replayed: the model stays as the failed step left it
            self._failed("rolling the model back", exc)
            return
        self._changes += 1

    def _failed(self, what: str, exc: Exception) -> None:
        """A model failure no event carries (a boundary, an evaluation): logged and counted (``failures`` in the metrics)."""
        self.failures += 1
        logger.warning("model key %r: %s failed (%s: %s); the stream goes on", self.key, what, type(exc).__name__, exc)


def _restored_watch(learner: KeyedLearner, gap: int) -> NewLabelWatch | None:
    """The restored learner's new-label watch under this run's gap.

    A snapshot taken without one knows its labels only from its forgetting
    samples: those count as seen, so an old label is not taken for a new one;
    its last boundary is the stream's start if it had none, else taken to be
    ``gap`` events back.
    """
    if not gap:
        return None
    watch = getattr(learner, "new_labels", None)
    if watch is None:
        watch = NewLabelWatch(gap, seen=learner.forgetting.sample_labels())
        watch.since = learner.learned if learner.concepts == 1 else gap
    watch.gap = gap
    return watch
