"""The per-key learner step: predict, then learn, then measure.

One :class:`KeyedLearner` per model key. It takes events in order and
returns what should be published: predictions, metrics, drift events,
dead letters (for events the model itself rejects) and, every
``snapshot_every`` events, its state (:meth:`KeyedLearner.state_dict`).

>>> step = KeyedLearner("default", EngineConfig(metrics_every=2))
>>> events = [Event(str(i), "default", {"x": float(i % 2)}, bool(i % 2), None, 0, i) for i in range(4)]
>>> out = step.process(events, now=0.0)
>>> len(out.predictions), [m["labelled"] for m in out.metrics]
(4, [2, 4])
>>> step.events, step.learned
(4, 4)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, get_args

from stream_learner.control import Command, control_answer, no_version_kept
from stream_learner.delayed import LabelRecord, PendingWindow
from stream_learner.drift import BINARY_ONLY, DriftMonitor, NewLabelWatch
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.events import MAX_FEATURES, MAX_KEYS, MAX_RECORD_BYTES, Event, EventBatch, EventRow
from stream_learner.feature_drift import Drift, FeatureDriftMonitor
from stream_learner.forgetting import ForgettingTracker
from stream_learner.learners.base import Journal, Learner, LearnerSpec, forkable
from stream_learner.learners.factory import build_learner
from stream_learner.learners.from_state import learner_from_state
from stream_learner.metrics import Prequential
from stream_learner.predictions import Predictions
from stream_learner.records import ControlDict, ControlStatus, DeadLetterDict, DriftDict, FeatureDriftDict, FeatureScoreDict, MetricsDict, PromotionDict, ShadowPredictionDict
from stream_learner.schema import Schema
from stream_learner.snapshot import Snapshot, SnapshotPart
from stream_learner.state import decode, encode, learner_step_state
from stream_learner.step.cadence import Cadence
from stream_learner.step.concepts import ConceptTracker
from stream_learner.step.dead_letters import DeadLetters
from stream_learner.step.guarded import GuardedLearner, LearnFailure
from stream_learner.step.operator import Operator
from stream_learner.step.recurring import ConceptReuse, RecurringConcepts
from stream_learner.step.resume import ResumeFilter

Boundaries = Literal["error", "feature", "both"]


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
            same at any rate. The end of a stream always snapshots. In a
            run, a snapshot that comes due by time waits for its worker's
            next round, at most one more interval (see
            :class:`~stream_learner.app.dataflow.SnapshotRounds`).
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
        max_features: the most features a key learns; an event whose new
            features would take it past them is a ``schema`` dead letter
            (see :mod:`stream_learner.schema`).
        max_keys: the most model keys one worker of a run holds, in memory
            or evicted; the events of a key beyond them are ``too_many_keys``
            dead letters (see :mod:`stream_learner.app.dataflow`).
        feature_drift: watch the features' distribution with these
            :class:`~stream_learner.feature_drift.FeatureDriftMonitor`
            parameters (``None``: off); each drift is a ``feature_drift`` record.
        boundaries: which signals start a concept: ``"error"`` (the error
            detector's drifts), ``"feature"`` (the features' drifts; the error
            detector is not run) or ``"both"``. Explicit tasks and new labels
            mark boundaries whatever this says.
        concept_reuse: keep earlier concepts' models and reinstate one when
            its concept comes back (``None``: off); see
            :mod:`stream_learner.step.recurring`.
        challengers: more learners for each key, in shadow: each predicts
            and learns every event, only the champion's predictions are
            published (see :mod:`stream_learner.slot`); empty: the
            ``learner`` alone, at no cost.
        promotion_window: the N labelled events both learners predicted on
            which a challenger is compared with the champion, each N once.
        promotion_alpha: the significance a challenger must be better at
            (paired two-sided test, see :mod:`stream_learner.evidence`),
            shared among the challengers.
        min_champion_events: labelled events a champion holds before any
            challenger may replace it.
        auto_promote: replace the champion when a challenger is better
            (``False``: publish the recommendation only).
        shadow_predictions: also publish every challenger's predictions,
            each naming its candidate (:attr:`StepOutput.shadow_predictions`).
        snapshot_rounds: the caller snapshots many keys together
            (:meth:`~stream_learner.snapshot.Snapshot.round`: one fork for a
            fleet's due keys, not one per key): a step whose snapshot is due
            only says so (:attr:`StepOutput.snapshot_due`) and the caller
            takes it with :meth:`KeyedLearner.snapshot_part`. The dataflow sets it.
        boundary_versions: at each concept boundary (an explicit task, a
            drift, a new label, a stored concept's model back), the outgoing
            model's state becomes a ``boundary`` snapshot version
            (:attr:`StepOutput.boundary_snapshots`; see
            :data:`~stream_learner.snapshot.VersionKind`), kept for a rollback
            (``rollback KEY concept:N``). A run sets it; off, a boundary costs
            no snapshot.
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
    max_features: int = MAX_FEATURES
    max_keys: int = MAX_KEYS
    feature_drift: dict[str, Any] | None = None
    boundaries: Boundaries = "error"
    concept_reuse: ConceptReuse | None = None
    challengers: tuple[LearnerSpec, ...] = ()
    promotion_window: int = 500
    promotion_alpha: float = 0.01
    min_champion_events: int = 1000
    auto_promote: bool = True
    shadow_predictions: bool = False
    snapshot_rounds: bool = False
    boundary_versions: bool = False


@dataclass
class StepOutput:
    """Everything one call of the learner step asks to publish.

    ``snapshot_due``: the step's snapshot is due, for its caller to take in
    a round (``EngineConfig.snapshot_rounds``; else it is in ``snapshot``).
    ``shadow_predictions``: a key's challengers' predictions
    (``EngineConfig.shadow_predictions``, see :mod:`stream_learner.slot`).
    ``boundary_snapshots``: the outgoing model at each concept boundary of
    the call, in order (``EngineConfig.boundary_versions``): each to be saved
    as a version of its own, before ``snapshot``.
    """

    predictions: Predictions | list[dict[str, Any]] = field(default_factory=list)
    metrics: list[MetricsDict | DriftDict | FeatureDriftDict | PromotionDict | ControlDict] = field(default_factory=list)
    dead_letters: list[DeadLetterDict] = field(default_factory=list)
    snapshot: Snapshot | None = None
    snapshot_due: bool = False
    shadow_predictions: list[ShadowPredictionDict] = field(default_factory=list)
    boundary_snapshots: list[Snapshot] = field(default_factory=list)


VERSION = 1
"""The layout of :meth:`KeyedLearner.state_dict`."""


class KeyedLearner:
    """Test-then-train for one model key, with drift and concept tracking.

    Its parts, one job each: the model with undo (:attr:`guard`), the
    prequential :attr:`metrics`, the error drift :attr:`monitor`, the
    :attr:`feature_monitor`, the concepts
    (:attr:`concept_tracker`), the :attr:`forgetting` tracker, the
    :attr:`schema`, the delayed labels' :attr:`pending` window, the
    :attr:`resume` filter and the reporting :attr:`cadence`.
    """

    def __init__(
        self,
        key: str,
        config: EngineConfig,
        learner_factory: Callable[[LearnerSpec], Learner] = build_learner,
        learner: Learner | None = None,
    ) -> None:
        """``learner``: the model to start from (a restored one); ``None``: a new one from ``learner_factory``."""
        if learner is None:
            learner = learner_factory(config.learner)
        _check(config, learner.task)
        self.key = key
        self.config = config
        self.guard = GuardedLearner(key, learner, Journal(lambda: learner_factory(config.learner)))
        self.metrics = Prequential(learner.task, config.window)
        self.monitor = DriftMonitor(config.detector, config.detector_params, seed=config.learner.seed) if config.detector and config.boundaries != "feature" else None
        self.feature_monitor = _feature_monitor(config.feature_drift)
        self.concept_tracker = ConceptTracker(NewLabelWatch(config.new_label_gap) if config.new_label_gap else None)
        self.forgetting = ForgettingTracker(config.forgetting_sample, holdout=config.forgetting_holdout, seed=config.learner.seed, task=learner.task)
        self.schema = Schema(learner.task, config.max_features)
        self.pending = PendingWindow(config.label_window, config.label_window_seconds) if config.label_window else None
        self.resume = ResumeFilter()
        self.cadence = Cadence(*_cadence_settings(config))
        self.dead_letters = DeadLetters(config.source)
        self.operator = Operator()
        self.reuse = RecurringConcepts(config.concept_reuse, config.learner, learner.task) if config.concept_reuse else None
        self.events = 0
        self.learned = 0

    @property
    def learner(self) -> Learner:
        """The model now (a boundary or a rollback may replace it)."""
        return self.guard.learner

    @property
    def failures(self) -> int:
        """Model failures no event carries (a boundary, an evaluation), logged and counted."""
        return self.guard.failures

    @property
    def concept(self) -> int:
        return self.concept_tracker.concept

    @property
    def concepts(self) -> int:
        return self.concept_tracker.concepts

    @property
    def drifts(self) -> int:
        return self.concept_tracker.drifts

    @property
    def next_offsets(self) -> dict[int, int]:
        """Per source partition, the offset after the last event this learner took."""
        return self.resume.next_offsets

    def process(self, events: Sequence[Event | LabelRecord] | EventBatch, now: float) -> StepOutput:
        """Predict for each event, learn from the labelled ones, in order.

        ``events`` is a list of :class:`~stream_learner.events.Event` or an
        :class:`~stream_learner.events.EventBatch`. A list may also hold
        delayed labels (:class:`~stream_learner.delayed.LabelRecord`),
        joined to their pending prediction when ``config.label_window`` is set.
        """
        self.cadence.finished = False
        out = StepOutput(predictions=Predictions(self.key, now))
        if self.pending is not None:
            self.pending.expire(now)
        batch = type(events) is EventBatch
        lookahead = getattr(self.learner, "lookahead", None)  # optional: a learner that predicts in batches
        if lookahead is not None:
            lookahead([x for x, _ in events.pairs] if batch else [event.features for event in events if type(event) is not LabelRecord])  # type: ignore[union-attr]
        rows = self._batch_rows(events) if batch else self._rows(events, out, now)  # type: ignore[arg-type]
        for row in rows:
            self._step(row, events, out, now)
        self.guard.end_batch()
        if self.cadence.snapshot_due(now):
            if self.config.snapshot_rounds:
                out.snapshot_due = True
            else:
                out.snapshot = self.snapshot(background=True)
        return out

    def _batch_rows(self, batch: EventBatch) -> Iterator[EventRow]:
        """The rows of a batch not learned yet."""
        start, new = self.resume.admit_batch(batch.partition, batch.first_offset, batch.end_offset)
        self.cadence.counted(new)
        return batch.rows(start)

    def _rows(self, items: Sequence[Event | LabelRecord], out: StepOutput, now: float) -> Iterator[EventRow]:
        """The rows of a list, one per event not learned yet, each once its place in the stream is reached.

        Lazily, in order: a delayed label is learned, and an event's task
        switches the concept, just before the events after it are read.
        """
        for item in items:
            if isinstance(item, LabelRecord):
                self._learn_late(item, out, now)
            elif self.resume.admit(item.partition, item.offset):
                self.cadence.counted(1)
                if item.task is not None:
                    self._on_task(item.task, out, now)
                yield item.id, item.features, item.label, item

    def _step(self, row: EventRow, source: Sequence[Event | LabelRecord] | EventBatch, out: StepOutput, now: float) -> None:
        """One event: checked against the schema, predicted, learned when labelled, scored."""
        event_id, x, label, event = row
        fits = self.schema.fits(x, label)
        if not fits:
            problem = self.schema.problem(x, label)
            if problem is not None:
                out.dead_letters.append(self.dead_letters.schema(event or source.event(event_id), problem, now))  # type: ignore[union-attr]
                return
        if self.feature_monitor is not None:
            drift = self.feature_monitor.update(x)
            if drift is not None:  # a boundary it starts comes before this event, as an explicit task's would
                self._on_feature_drift(drift, out, now)
        try:
            y_pred, proba = self.guard.learner.predict(x)
        except Exception as exc:  # a model rejecting an event must not stop the stream; predicting changed nothing
            out.dead_letters.append(self.dead_letters.model_error(event or source.event(event_id), exc, now))  # type: ignore[union-attr]
            return
        if label is None and self.pending is not None:
            label, fits = self._wait_for_label(event_id, x, y_pred, out, now), False
        if label is not None:
            failed = self._learn(x, label, fits, out, now)
            if failed is not None:
                out.dead_letters.append(self.dead_letters.model_error(event or source.event(event_id), failed.error, now, failed.unlearned))  # type: ignore[union-attr]
                return
        self.events += 1
        out.predictions.rows.append((event_id, y_pred, proba if self.config.with_proba else None, self.learned, self.concept_tracker.concept))  # type: ignore[union-attr]
        if label is not None:
            self._score(x, label, y_pred, out, now)

    def _wait_for_label(self, event_id: str, x: dict[Any, Any], y_pred: Any, out: StepOutput, now: float) -> Any:
        """An unlabelled event's prediction waits for its delayed label; the label, where it came first (and fits)."""
        pending = self.pending
        label = pending.add(event_id, x, y_pred, now)  # type: ignore[union-attr]
        if label is None:
            return None
        problem = self.schema.label_problem(label)
        if problem is None:
            return label
        out.dead_letters.append(self.dead_letters.schema(Event(event_id, self.key, x, label, None, -1, -1), problem, now))
        pending.refuse(event_id, x, y_pred, now)  # type: ignore[union-attr]  # as a label refused on arrival: not counted, the prediction waits
        return None

    def _learn(self, x: dict[Any, Any], label: Any, fits: bool, out: StepOutput, now: float) -> LearnFailure | None:
        """Learn one labelled example, in the concept its label may start; where the model raises, it is rolled back and the failure returned.

        A sampled example is held out for the forgetting evaluation instead,
        when the configuration says so. ``fits``: the schema knows all of it already.
        """
        if self.concept_tracker.is_new_label(label):
            self._on_input_change("new_label", out, now)
        if not self.forgetting.observe(self.concept_tracker.concept, x, label) and not self.operator.paused:
            failed = self.guard.learn(x, label)
            if failed is not None:
                return failed
        if not fits:
            self.schema.learn(x, label)
        return None

    def _score(self, x: dict[Any, Any], label: Any, y_pred: Any, out: StepOutput, now: float) -> None:
        """A labelled example was learned: its error counts in the metrics (and in a trial of stored concepts' models) and feeds the drift detector; reports when due."""
        learned = self.learned = self.learned + 1
        error = self.metrics.update(label, y_pred)
        if self.reuse is not None:
            self._try_stored(self.reuse, x, label, error, out, now)
        metrics_due = self.cadence.labelled()
        if self.monitor is not None and self.monitor.update(error):
            self._on_drift(self.config.detector or "none", out, now)
        elif metrics_due:
            out.metrics.append(self.metrics_record(now))
        if self.cadence.evaluation_due(learned):
            self.evaluate_concepts()

    def _learn_late(self, record: LabelRecord, out: StepOutput, now: float) -> None:
        """A delayed label: learn from its pending prediction, if it is still in the window."""
        if self.pending is None:
            out.dead_letters.append(self.dead_letters.unjoinable_label(record, now))
            return
        event = Event(record.id, record.key, {}, record.label, None, -1, -1)
        problem = self.schema.label_problem(record.label)
        if problem is not None:  # before joining: the prediction stays pending for a label that fits
            out.dead_letters.append(self.dead_letters.schema(event, problem, now))
            return
        found = self.pending.label(record.id, record.label, now)
        if found is None:
            return
        x, y_pred = found
        event.features = x
        problem = self.schema.problem(x, record.label)  # the features fitted when predicted; the schema may have grown since
        if problem is not None:
            out.dead_letters.append(self.dead_letters.schema(event, problem, now))
            return
        failed = self._learn(x, record.label, False, out, now)
        if failed is not None:
            out.dead_letters.append(self.dead_letters.model_error(event, failed.error, now, failed.unlearned))
            return
        self._score(x, record.label, y_pred, out, now)

    def _on_task(self, task: str | int, out: StepOutput, now: float) -> None:
        concept = self.concept_tracker.task(task)
        if concept is not None:
            self._boundary(concept, out, detected=False)
            out.metrics.append(self._drift_record("task", now))

    def _on_drift(self, detector: str, out: StepOutput, now: float) -> None:
        concept = self.concept_tracker.drift()
        if concept is not None:
            self._boundary(concept, out, detected=detector != "new_label")
        out.metrics.append(self._drift_record(detector, now))
        out.metrics.append(self.metrics_record(now))

    def _on_input_change(self, detector: str, out: StepOutput, now: float) -> None:
        """A drift the error detector did not find (a label never seen before, the features' distribution): a new concept, which this event is the first of."""
        if self.monitor is not None:
            self.monitor.reset()  # the error detector starts on the new concept, not amid its first errors
        self._on_drift(detector, out, now)

    def _on_feature_drift(self, drift: Drift, out: StepOutput, now: float) -> None:
        if self.config.boundaries != "error":
            self._on_input_change("feature", out, now)
        features: list[FeatureScoreDict] = [{"name": str(name), "psi": psi} for name, psi in drift]
        out.metrics.append({"type": "feature_drift", "key": self.key, "features": features, "statistic": "psi", "at_event": self.events, "concept": self.concept, "ts": now})

    def _boundary(self, concept: int, out: StepOutput, detected: bool = True) -> None:
        """A new concept starts, whatever marked it: the one that ends is evaluated and its model kept as a boundary version, then the model is told (rolled back where it raises).

        ``detected``: a detector found it, some events after it began (not an explicit task or a new label).
        """
        self.evaluate_concepts()  # the last row of the concept that ends here
        self._keep_outgoing(out)
        self.concept_tracker.enter(concept)
        if self.feature_monitor is not None:
            self.feature_monitor.reset()  # the new concept is its new reference
        if self.reuse is not None:
            self.reuse.leave(self.learner, detected)  # as it served the concept that ends, before the strategy consolidates or resets it
        self.guard.boundary(concept)
        if self.reuse is not None:
            self.reuse.enter(concept)

    def _try_stored(self, reuse: RecurringConcepts, x: dict[Any, Any], label: Any, error: float, out: StepOutput, now: float) -> None:
        """Earlier concepts' models predict this labelled event in shadow (during a trial); one proved better becomes the live model, said by a drift record."""
        reuse.learned(self.learner)
        if reuse.trial is None:
            return
        back = reuse.score(x, error, lambda y_pred: self.metrics.error(label, y_pred), self.learner)
        if back is None:
            return
        self._keep_outgoing(out)
        self.install(back.learner)
        record = self._drift_record("recurring", now)
        record["reused_concept"], record["evidence"] = back.concept, back.evidence
        out.metrics.append(record)

    def apply(self, command: Command, now: float, version: dict[str, Any] | None = None) -> StepOutput:
        """Obey an operator's command here, between two events of the key's stream; its answer is a ``control`` record.

        ``pause-learning``: events are still predicted and scored, and the
        model learns none of them until ``resume-learning``. ``snapshot``:
        this step's state now. ``rollback``: the model of ``version`` (the
        :meth:`state_dict` of the snapshot version the command names, read
        from the store by the caller; ``None`` where there is none) becomes
        the live model, as :meth:`install` says; the metrics, concepts and
        the stream's position go on. ``promote`` needs challengers (see
        :mod:`stream_learner.slot`). A command whose id was applied before
        is answered as a duplicate and does nothing.
        """
        out = StepOutput()
        status: ControlStatus = "duplicate"
        reason = None
        if self.operator.first_time(command.id):
            reason = self._obey(command, version, out)
            status = "applied" if reason is None else "refused"
        out.metrics.append(self.control_answer(command, status, reason, now))
        return out

    def _obey(self, command: Command, version: dict[str, Any] | None, out: StepOutput) -> str | None:
        """Carry out ``command``; why not, where it cannot be."""
        action = command.action
        if action in ("pause-learning", "resume-learning"):
            self.operator.paused = action == "pause-learning"
        elif action == "snapshot":
            out.snapshot = self.snapshot(background=True)
        elif action == "rollback":
            if version is None:
                return no_version_kept(self.key, command.arg)
            if "learner" not in version:
                return f"snapshot version {command.arg} of model key {self.key!r} is not of a single learner"
            spec = LearnerSpec(**version["spec"])
            if spec != self.config.learner:
                return f"snapshot version {command.arg} of key {self.key!r} holds model {spec.model!r} {spec.params}, not this run's {self.config.learner.model!r}"
            self.install(learner_from_state(version["learner"], spec))
        else:
            return f"model key {self.key!r} has no challengers to promote (run with --challenger)"
        return None

    def control_answer(self, command: Command, status: ControlStatus, reason: str | None, now: float) -> ControlDict:
        """The ``control`` record answering ``command`` at this learner's event count (:func:`~stream_learner.control.control_answer`)."""
        return control_answer(command, status, reason, self.events, now)

    def install(self, learner: Learner) -> None:
        """Make ``learner`` the live model (a stored concept's model back, an operator's rollback to an earlier state).

        An undo starts from it, and the error detector starts afresh: the
        errors so far were the replaced model's.
        """
        self.guard.learner = learner
        self.guard.journal.checkpoint(learner)
        if self.monitor is not None:
            self.monitor.reset()

    def _keep_outgoing(self, out: StepOutput) -> None:
        """The live model leaves at a boundary: with ``boundary_versions``, this step as it is now becomes a boundary snapshot of the concept it served.

        As it is now: every event of the concept that ends learned (for a
        detected drift, also those between the change and its detection),
        before the strategy consolidates or resets anything. Rolled back to,
        it predicts as the model did at the end of its concept.
        """
        if self.config.boundary_versions:
            out.boundary_snapshots.append(Snapshot.boundary(self._part(), self.concept))

    def _drift_record(self, detector: str, now: float) -> DriftDict:
        return {"type": "drift", "key": self.key, "detector": detector, "at_event": self.events, "concept": self.concept, "ts": now}

    def finish(self, now: float) -> StepOutput:
        """The stream ended: final metrics, a last evaluation of the concepts and a final snapshot.

        The end of a fleet writes only the keys that moved: a learner that
        finished and was given nothing since (restored from the final
        snapshot of an earlier run) publishes its metrics only; one whose
        last snapshot already holds everything (no event since, no delayed
        labels waiting, no new evaluation row: forgetting tracking off) writes no snapshot.
        """
        if self.cadence.finished:
            return StepOutput(metrics=[self.metrics_record(now)])
        self.cadence.finished = True  # in the final snapshot's state
        moved = bool(self.cadence.since_snapshot) or self.pending is not None
        if self.pending is not None:
            self.pending.close()
        self.guard.journal.settle()
        evaluations = self.forgetting.evaluations
        self.evaluate_concepts()
        moved = moved or self.forgetting.evaluations != evaluations
        return StepOutput(metrics=[self.metrics_record(now)], snapshot=self.snapshot() if moved else None)

    def evaluate_concepts(self) -> dict[int, float]:
        """Evaluate the model on every concept's sample: a new accuracy-matrix row.

        A learner with ``predict_many`` predicts the samples in one call.
        """
        learner = self.learner
        try:
            predict_many = getattr(learner, "predict_many", None)
            if predict_many is None:
                return self.forgetting.evaluate(lambda x: learner.predict(x)[0], current=self.concept)
            xs = self.forgetting.sample_features()
            predicted = {id(x): p for x, (p, _) in zip(xs, predict_many(xs))}
            return self.forgetting.evaluate(lambda x: predicted[id(x)], current=self.concept)
        except Exception as exc:  # the model cannot predict a sample: no row this time, the stream goes on
            self.guard.failed("evaluating the concepts' samples", exc)
            return {}

    def metrics_record(self, now: float) -> MetricsDict:
        """The current metrics (:class:`~stream_learner.events.MetricsRecord`)."""
        self.cadence.metrics_published()
        m = self.metrics
        record: MetricsDict = {
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
        }
        if self.pending is not None:
            record["delayed_labels"] = self.pending.counts()
        if self.failures:
            record["failures"] = self.failures
        return record

    def snapshot(self, background: bool = False) -> Snapshot:
        """This learner's state (:meth:`state_dict`), encoded.

        ``background``: encoded in a forked child, where the platform allows
        and the model is not on a GPU; the stream then pays for ``fork()``
        only and its objects are not touched (see :mod:`stream_learner.forked_pickle`).
        """
        snapshot = Snapshot.round([self.snapshot_part()], background)[0]
        self.snapshotted(snapshot)
        return snapshot

    def snapshotted(self, snapshot: Snapshot) -> None:
        """``snapshot`` holds this learner as it is now (taken in a round: :meth:`snapshot_part`, then :meth:`~stream_learner.snapshot.Snapshot.round`): it is the undo journal's next checkpoint.

        A round's taker calls it right after the round; without it, a key
        logs every example it learns until its journal's own checkpoint
        (:attr:`~stream_learner.learners.base.Journal.MIN_LOG` of them).
        """
        spec = self.config.learner
        self.guard.journal.restart_at(lambda: snapshot.payload, lambda payload: learner_from_state(decode(payload)["learner"], spec))

    def snapshot_part(self) -> SnapshotPart:
        """This learner's share of a snapshot round (:meth:`~stream_learner.snapshot.Snapshot.round`), as it is now: its snapshot counts as taken."""
        self.cadence.snapshot_taken()
        return self._part()

    def _part(self) -> SnapshotPart:
        """This learner's state and envelope bookkeeping, as it is now."""
        return SnapshotPart(
            self.state_dict,
            self.key,
            self.learner.family,
            self.config.learner.strategy or "none",
            self.events,
            dict(self.next_offsets),
            forkable(self.learner),
        )

    @classmethod
    def restore(cls, payload: bytes, config: EngineConfig) -> KeyedLearner:
        """The learner of a *verified* snapshot payload (any format :func:`~stream_learner.state.decode` reads), under this run's configuration."""
        return cls.from_state(decode(payload), config)

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides what this learner does next, as plain values (see :mod:`stream_learner.state`)."""
        spec = self.config.learner
        return {
            "version": VERSION,
            "key": self.key,
            "spec": {"model": spec.model, "params": dict(spec.params), "seed": spec.seed, "strategy": spec.strategy, "strategy_params": dict(spec.strategy_params)},
            "learner": self.learner.state_dict(),
            "events": self.events,
            "learned": self.learned,
            "failures": self.guard.failures,
            "metrics": self.metrics.state_dict(),
            "monitor": self.monitor.state_dict() if self.monitor is not None else None,
            "feature_monitor": self.feature_monitor.state_dict() if self.feature_monitor is not None else None,
            "forgetting": self.forgetting.state_dict(),
            "schema": self.schema.state_dict(),
            "pending": self.pending.state_dict() if self.pending is not None else None,
            "concepts": self.concept_tracker.state_dict(),
            "resume": self.resume.state_dict(),
            "cadence": self.cadence.state_dict(),
            "concept_reuse": self.reuse.state_dict() if self.reuse is not None else None,
            "operator": self.operator.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: EngineConfig, learner_factory: Callable[[LearnerSpec], Learner] = build_learner) -> KeyedLearner:
        """The learner :meth:`state_dict` describes, under this run's reporting settings.

        The model must be the one the configuration asks for. A run that
        joins delayed labels but restores a state without a label window
        starts one; the new-label watch follows this run's gap (see
        :func:`_new_label_watch`).
        """
        state = learner_step_state(state)
        spec = LearnerSpec(**state["spec"])
        if spec != config.learner:
            raise SnapshotError(
                f"snapshot of key {state['key']!r} holds model {spec.model!r} {spec.params}, but this run asks for {config.learner.model!r} {config.learner.params}"
            )
        checkpoint = encode(state["learner"])  # before the learner learns anything: it may share arrays with the state it was built from
        learner = learner_from_state(state["learner"], spec)
        step = cls(state["key"], config, learner_factory, learner)
        step.guard = GuardedLearner(step.key, learner, Journal(lambda: learner_from_state(decode(checkpoint), spec)), state["failures"])
        step.metrics = Prequential.from_state(state["metrics"])
        step.monitor = DriftMonitor.from_state(state["monitor"]) if state["monitor"] is not None else None
        if step.feature_monitor is not None and state["feature_monitor"] is not None and state["feature_monitor"]["params"] == step.feature_monitor.params:
            step.feature_monitor = FeatureDriftMonitor.from_state(state["feature_monitor"])  # else this run's settings start afresh
        step.forgetting = ForgettingTracker.from_state(state["forgetting"])
        step.schema = Schema.from_state(state["schema"], config.max_features)
        if state["pending"] is not None:
            step.pending = PendingWindow.from_state(state["pending"])
        step.events, step.learned = state["events"], state["learned"]
        step.concept_tracker = ConceptTracker.from_state(state["concepts"], _new_label_watch(state, config.new_label_gap, step.forgetting))
        step.resume = ResumeFilter.from_state(state["resume"])
        step.cadence = Cadence.from_state(state["cadence"], *_cadence_settings(config))
        if config.concept_reuse is not None and state["concept_reuse"] is not None:  # a state of a run without reuse starts an empty library
            step.reuse = RecurringConcepts.from_state(state["concept_reuse"], config.concept_reuse, spec, learner.task)
        step.operator = Operator.from_state(state["operator"])
        return step


def _check(config: EngineConfig, task: str) -> None:
    """Refuse a configuration that contradicts itself, or asks what a model of ``task`` cannot do."""
    if config.boundaries not in get_args(Boundaries):
        raise ConfigError(f"boundaries must be one of {', '.join(get_args(Boundaries))}, not {config.boundaries!r}")
    if config.boundaries != "error" and config.feature_drift is None:
        raise ConfigError(f"boundaries {config.boundaries!r} need the features' drift watched (feature_drift)")
    if config.detector in BINARY_ONLY and task == "regression":
        raise ConfigError(f"drift detector {config.detector!r} needs a classification model")
    if config.new_label_gap and task == "regression":
        raise ConfigError("new-label boundaries need a classification model")


def _feature_monitor(params: dict[str, Any] | None) -> FeatureDriftMonitor | None:
    if params is None:
        return None
    try:
        return FeatureDriftMonitor(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad parameters for feature drift: {exc}") from None


def _cadence_settings(config: EngineConfig) -> tuple[int, int, int, float]:
    """What :class:`~stream_learner.step.cadence.Cadence` takes from the configuration."""
    return config.metrics_every, config.forgetting_every, config.snapshot_every, config.snapshot_seconds


def _new_label_watch(state: dict[str, Any], gap: int, forgetting: ForgettingTracker) -> NewLabelWatch | None:
    """A restored learner's new-label watch under this run's ``gap`` (0: none).

    A state taken without one knows its labels only from its forgetting
    samples: those count as seen, so an old label is not taken for a new one;
    its last boundary is the stream's start if it had none, else taken to be
    ``gap`` events back.
    """
    if not gap:
        return None
    concepts = state["concepts"]
    if concepts["new_labels"] is not None:
        return NewLabelWatch.from_state(concepts["new_labels"], gap=gap)
    watch = NewLabelWatch(gap, seen=forgetting.sample_labels())
    watch.since = state["learned"] if concepts["concepts"] == 1 else gap
    return watch
