"""The one dataflow every run uses, whatever its source and sinks.

``source -> decode (dead letters split off) -> key -> learner step (per key)
-> predictions / metrics / dead letters / snapshots``

Items travel in groups (a source batch's events for one key), so the
Bytewax overhead is paid per group, not per event. Each group carries the
time its source handed it over (:class:`Read`) and each learner output the
time of what it answers (:class:`Answer`), so the latency of every
prediction is measured where it is handed to the predictions sinks
(:mod:`stream_learner.app.latency`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Generic, TypeGuard, TypeVar, cast, overload

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from connectors.base import RawRecord, SourceBatch
from stream_learner.app.accuracy_points import scored_predictions
from stream_learner.app.run_stats import RunStats
from stream_learner.control import MAX_AGE, Command, RawControl, control_answer, decode_command
from stream_learner.delayed import LabelRecord, RawLabel, decode_label
from stream_learner.engine import EngineConfig, StepOutput
from stream_learner.errors import SnapshotError
from stream_learner.events import MAX_RECORD_BYTES, Event, EventBatch, decode_event
from stream_learner.learners.base import forkable
from stream_learner.metrics import Prequential
from stream_learner.predictions import Predictions
from stream_learner.records import DeadLetterDict
from stream_learner.residency import EvictingStore, ResidentSet, evicted_marker, eviction_snapshot, parse_marker
from stream_learner.slot import Slot, Step, new_step, restore_step
from stream_learner.snapshot import Snapshot, encoding
from stream_learner.state import decode, encode
from stream_learner.step.dead_letters import DeadLetters

T = TypeVar("T")

Records = tuple[str, list[dict[str, Any]]]  # (model key, or the output's name when records have none; records)
PredictionsItem = tuple[str, Predictions | list[dict[str, Any]]]  # (model key, its predictions: a columnar batch, or records)
RecordSink = Sink[Records] | Sink[PredictionsItem]
"""A sink of record items: one that takes record lists only (the console, the dead-letter tally), or one that takes predictions too (files, topics)."""
Group = list[Event | LabelRecord] | EventBatch | Command  # what one learner step takes


@dataclass(slots=True)
class Read:
    """What one learner step takes (a key's events, or a command), and when the source handed it over (Unix time).

    A key's events gathered from several source batches carry the stamp of
    the batch of its first event.
    """

    at: float
    items: Group


@dataclass(slots=True)
class Answer:
    """A learner step's output, and when the source handed over the events it answers (``None``: it answers none, e.g. the final figures)."""

    out: StepOutput
    read_at: float | None


@dataclass(frozen=True)
class Control:
    """How a run takes operators' commands (see :mod:`stream_learner.control`).

    ``signing_key`` checks each command's signature; ``max_age`` refuses old
    ones; ``rollback_target(key, arg)``: for a rollback's ``arg`` (a version
    number, or ``concept:N``), the snapshot version it names and its
    verified state (``None``: none is kept).
    """

    signing_key: bytes
    rollback_target: Callable[[str, int | str], tuple[int, dict[str, Any]] | None]
    max_age: float = MAX_AGE


@dataclass
class Sinks:
    """Where each output goes; each record sink takes ``(model key, [record, ...])`` items, a predictions sink ``(model key, Predictions)`` too."""

    predictions: Sequence[Sink[PredictionsItem]] = ()
    metrics: Sequence[RecordSink] = ()
    dead_letters: Sequence[RecordSink] = ()
    shadow_predictions: Sequence[RecordSink] = ()  # the challengers' predictions, where asked
    snapshots: Sequence[Sink[Snapshot]] = ()


SourceItem = Event | EventBatch | RawRecord | RawLabel | RawControl


def decode_batch(
    items: list[SourceBatch | SourceItem], max_bytes: int = MAX_RECORD_BYTES, control: Control | None = None
) -> list[tuple[str, Read] | Answer]:
    """Decode raw records (up to ``max_bytes`` each), split off dead letters, group events by model key (order kept); an event batch stays whole.

    An operator's command (checked with ``control``) goes to its key alone,
    between the group of the key's events before it and the group after it.
    Each group keeps its source batch's stamp; items a source handed over
    outside a :class:`~connectors.base.SourceBatch` are stamped now.
    """
    groups: dict[str, list[Event | LabelRecord]] = {}
    stamps: dict[str, float] = {}  # each group's stamp
    dead: list[DeadLetterDict] = []
    batches: list[tuple[str, Read] | Answer] = []
    now = time.time()
    for batch in items:
        read_at, records = (batch.read_at, batch.items) if isinstance(batch, SourceBatch) else (now, [batch])
        for item in records:
            event: Event | LabelRecord | DeadLetterDict
            if type(item) is EventBatch:  # a trusted source's batch goes to its learner as it is
                batches.append((item.key, Read(read_at, item)))
                continue
            if type(item) is Event:  # trusted sources build events directly: nothing to decode
                event = item
            elif isinstance(item, RawRecord):
                event = decode_event(item.value, item.origin, max_bytes)
                if isinstance(event, dict):
                    dead.append(event)
                    continue
            elif isinstance(item, RawLabel):  # a delayed label goes to its model key's learner
                event = decode_label(item, max_bytes)
                if isinstance(event, dict):
                    dead.append(event)
                    continue
            elif isinstance(item, RawControl):
                command = _command(item, control, max_bytes)
                if isinstance(command, dict):
                    dead.append(command)
                    continue
                if command.key in groups:
                    batches.append((command.key, Read(stamps.pop(command.key), groups.pop(command.key))))
                batches.append((command.key, Read(read_at, command)))
                continue
            else:
                raise TypeError(f"a source handed the dataflow a {type(item).__name__}, not an event, a raw record, label or command")
            events = groups.get(event.key)  # an event or a delayed label, for its key's group
            if events is None:
                groups[event.key], stamps[event.key] = [event], read_at
            else:
                events.append(event)
    out = batches + [(key, Read(stamps[key], events)) for key, events in groups.items()]
    if dead:
        out.append(Answer(StepOutput(dead_letters=dead), None))
    return out


def _command(raw: RawControl, control: Control | None, max_bytes: int) -> Command | DeadLetterDict:
    if control is None:  # a source reads a control topic only where the run takes commands
        raise ValueError("a control record in a run that takes no commands")
    return decode_command(raw.value, raw.origin, control.signing_key, time.time(), control.max_age, max_bytes)


class RecoveryStates:
    """The encoded states of one Bytewax worker's learners for its recovery store, made together at each epoch's close.

    Bytewax asks each key's logic for its state at an epoch's close, one
    after another. The first ask encodes every learner that changed since
    its state was last made, in one forked child (see
    :func:`stream_learner.snapshot.encoding`): a fork per key would cost a
    fork per key and epoch, and encoding in the stream's process would slow
    the models for good. The other asks take their bytes from that child. A
    learner that may not fork (a model on a GPU) is encoded here.
    """

    def __init__(self) -> None:
        self._learners: dict[str, Step] = {}
        self._changed: set[str] = set()  # keys whose state is not made yet
        self._made: dict[str, bytes] = {}  # states made and not asked for yet

    def changed(self, learner: Step) -> None:
        """``learner`` learned or moved on: its next state must be made again."""
        self._learners[learner.key] = learner
        self._changed.add(learner.key)
        self._made.pop(learner.key, None)

    def forget(self, key: str) -> None:
        """``key``'s learner left memory (evicted): its state is no longer made here."""
        self._learners.pop(key, None)
        self._changed.discard(key)
        self._made.pop(key, None)

    def state(self, learner: Step) -> bytes:
        """The encoded state of ``learner`` as it is now."""
        key = learner.key
        if key not in self._made:
            self.changed(learner)
            self._make()
        return self._made.pop(key)

    def _make(self) -> None:
        learners = [self._learners[key] for key in self._changed]
        self._changed.clear()
        forked = [learner for learner in learners if _forkable(learner)]
        for learner in learners:
            if not _forkable(learner):
                self._made[learner.key] = encode(learner.state_dict())
        if forked:
            made = encoding(lambda: {learner.key: encode(learner.state_dict()) for learner in forked}, forked=True)
            self._made.update(decode(made if isinstance(made, bytes) else made.result()))


class SnapshotRounds:
    """One worker's learners whose snapshot is due, snapshotted together: one forked child per round (:meth:`Snapshot.round`).

    The logics say which learners are due (``EngineConfig.snapshot_rounds``)
    and the worker's snapshot step, which sees each batch of the learners'
    outputs, takes a round of them: a fleet pays one fork per round, not one
    per key. A key appears once in a batch, so each state is the one its
    batch ended with, as a snapshot taken by the learner itself would be
    (``--snapshot-every N`` still snapshots at the N-th event).

    ``min_seconds``: a round comes at least this long after the previous
    one; the keys that come due meanwhile wait for it and are taken as they
    are then. A fork costs in proportion to the process's memory, not to the
    keys in the round (its page tables, and the pages copied on write while
    the child lives), so a fleet whose keys come due one batch after
    another forks once per interval instead of once per batch. The run sets
    it to ``--snapshot-seconds`` where snapshots go by time alone.

    >>> rounds = SnapshotRounds()
    >>> rounds.take(), len(rounds)
    ([], 0)
    """

    def __init__(self, min_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_seconds = min_seconds
        self.clock = clock
        self._last: float | None = None  # when the last round was taken
        self._due: dict[str, Step] = {}

    def __len__(self) -> int:
        return len(self._due)

    def due(self, step: Step) -> None:
        self._due[step.key] = step

    def forget(self, key: str) -> None:
        """``key``'s learner left memory or finished: its own snapshot replaces the round's."""
        self._due.pop(key, None)

    def take(self) -> list[Snapshot]:
        """The due learners' snapshots, in one round (none yet while the last round is younger than ``min_seconds``)."""
        now = self.clock()
        if not self._due or (self._last is not None and now - self._last < self.min_seconds):
            return []
        self._last = now
        steps, self._due = list(self._due.values()), {}
        snapshots = Snapshot.round([step.snapshot_part() for step in steps], background=True)
        for step, snapshot in zip(steps, snapshots):
            step.snapshotted(snapshot)  # its undo journal starts again from this state
        return snapshots


@dataclass
class Residency:
    """Where one worker's evicted learners wait (the run's store), and what bounds its learners in memory (``None``: no bound)."""

    store: EvictingStore
    resident: ResidentSet | None


def _forkable(step: Step) -> bool:
    """Whether ``step``'s state may be made in a forked child (no model of it on a GPU)."""
    return step.forkable if isinstance(step, Slot) else forkable(step.learner)


def _published_metrics(step: Step) -> Prequential:
    """The metrics of the model whose predictions ``step`` publishes (its champion's, where it has challengers)."""
    return step.champion_step.metrics if isinstance(step, Slot) else step.metrics


class _LearnerLogic(StatefulBatchLogic[Read, Answer, bytes | None]):
    """Bytewax's side of a :class:`Step`.

    Bytewax builds the logic without telling it the key, so the learner is
    built (or restored) on the first batch, whose events carry the key.
    ``states`` makes its recovery state (``None``: the run has no recovery);
    ``keys`` counts the keys its worker holds (a new key beyond ``max_keys`` is refused).

    With a ``residency``, the worker's resident set may evict the learner
    (:meth:`leaving`, then :meth:`left`): its state is saved as a snapshot
    version, which this logic keeps (:attr:`evicted`) and gives Bytewax as
    its recovery state (:func:`~stream_learner.residency.evicted_marker`),
    and the key's next batch restores it. With ``rounds``, a learner whose
    snapshot is due joins the worker's next snapshot round. With ``points``,
    a classifier's published predictions are scored for the page's fine
    accuracy points where its telemetry asks (:mod:`stream_learner.app.accuracy_points`).
    """

    def __init__(
        self,
        config: EngineConfig,
        restored: Callable[[str], Step | None],
        states: RecoveryStates | None,
        resume_state: bytes | None,
        keys: KeyCount,
        on_step: Callable[[str, int, float], None] | None = None,
        recovered: Callable[[Step], None] = lambda learner: None,
        residency: Residency | None = None,
        control: Control | None = None,
        rounds: SnapshotRounds | None = None,
        points: RunStats | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.points = points
        self.control = control
        self.on_step = on_step
        self.restored = restored
        self.states = states
        self.residency = residency
        self.rounds = rounds
        self.learner: Step | None = None
        self.key = ""
        self.evicted: int | None = None  # the snapshot version this key's learner waits in, while it is out of memory
        self.newest = False  # it finished out of memory: its final snapshot (a newer version, written by the snapshot writer) holds it
        # restored from its eviction since the last epoch close: not evicted again before the next one, so that the store
        # still holds the version its committed recovery state names (else a crash would resume it from a newer one, which
        # skips events whose outputs may not have been delivered), however many versions newer evictions would add
        self.pinned = False
        if resume_state is not None:
            keys.hold()  # a key the worker held when its recovery state was committed
        marker = parse_marker(resume_state) if resume_state is not None else None
        if marker is not None:
            self.key, self.evicted, self.newest = marker
        elif resume_state is not None:
            self.learner = restore_step(resume_state, config)
            self.key = self.learner.key
            recovered(self.learner)
            self._resident()

    def on_batch(self, reads: list[Read]) -> tuple[list[Answer], bool]:
        learner = self.learner
        if learner is None:
            if self.evicted is None and not self.keys.admit():
                return self._refused(reads, self.keys.limit), self.DISCARD  # nothing kept: its next event is refused again, or admitted once room was made
            learner = self.learner = self._bring_back(reads[0].items)
            self._resident()
        elif self.residency is not None and self.residency.resident is not None:
            self.residency.resident.touch(self.key)
        answers = []
        for read in reads:  # in arrival order, each group one step
            events = read.items
            if isinstance(events, Command):
                answers.append(Answer(self._obey(learner, events), read.at))
                continue
            started = time.perf_counter()
            out = learner.process(events, time.time())
            if self.on_step is not None:
                self.on_step(learner.key, len(events), time.perf_counter() - started)
            answers.append(Answer(out, read.at))
            if self.points is not None and out.predictions and self.points.wants_accuracy_points(learner.key):
                self._score(learner, events, out)
        if self.states is not None:
            self.states.changed(learner)
        if self.rounds is not None and any(answer.out.snapshot_due for answer in answers):
            self.rounds.due(learner)
        return answers, self.RETAIN

    def _refused(self, reads: list[Read], limit: int) -> list[Answer]:
        """The answers to a new key's reads where its worker holds ``limit`` keys already: its events and labels as dead letters, its commands refused."""
        now = time.time()
        letters = DeadLetters(self.config.source)
        answers = []
        for read in reads:
            out, items = StepOutput(), read.items
            if isinstance(items, Command):
                reason = f"model key {items.key!r} is not held: its worker holds {limit:,} keys already (--max-keys)"
                out.metrics.append(control_answer(items, "refused", reason, 0, now))
            else:
                out.dead_letters = [letters.too_many_keys(item, limit, now) for item in (items.events() if isinstance(items, EventBatch) else items)]
            answers.append(Answer(out, read.at))
        return answers

    def _score(self, learner: Step, events: list[Event | LabelRecord] | EventBatch, out: StepOutput) -> None:
        """The step's labelled predictions, scored for the page (a classifier's only: the page draws accuracy)."""
        metrics = _published_metrics(learner)
        if metrics.task == "classification" and type(out.predictions) is Predictions and self.points is not None:
            self.points.accuracy_scored(learner.key, scored_predictions(events, out.predictions, learner.events, metrics.error))

    def _obey(self, learner: Step, command: Command) -> StepOutput:
        """An operator's command, with the state of the version a rollback names."""
        version = None
        if command.action == "rollback" and self.control is not None and command.arg is not None:  # a rollback's arg is checked when decoded
            target = self.control.rollback_target(command.key, command.arg)
            if target is not None:
                number, version = target
                command = replace(command, version=number)  # the answer says which version was installed
        return learner.apply(command, time.time(), version)

    def _bring_back(self, first: Group) -> Step:
        """The learner of a key not in memory: restored from its eviction, else resumed from a snapshot (``--resume``), else new."""
        if self.evicted is not None:
            learner = self._evicted_learner()
            self.evicted, self.newest, self.pinned = None, False, self.states is not None
            return learner
        key = first[0].key if isinstance(first, list) else first.key
        self.key = key
        return self.restored(key) or new_step(key, self.config)

    def _evicted_learner(self) -> Step:
        """The learner this key was evicted as (also in a run without a bound, resuming the recovery state of one with it)."""
        if self.residency is None or self.evicted is None:
            raise SnapshotError(f"the recovery state of model key {self.key!r} says its learner waits in the snapshot store, which this run does not open")
        return self.residency.store.restore(self.key, self.evicted, self.newest)

    def _resident(self) -> None:
        if self.residency is not None and self.residency.resident is not None:
            self.residency.resident.admit(self.key, self)

    def leaving(self) -> Snapshot:
        """The learner's full state, for the worker's resident set to write before it drops the learner (:meth:`left`)."""
        if self.learner is None:
            raise RuntimeError(f"model key {self.key!r} is not in memory")  # the resident set holds only learners in memory
        return eviction_snapshot(self.learner)

    def left(self, version: int) -> None:
        """The learner's state was written as ``version``: drop it."""
        self.evicted, self.learner = version, None
        if self.states is not None:
            self.states.forget(self.key)
        if self.rounds is not None:
            self.rounds.forget(self.key)

    def on_eof(self) -> tuple[list[Answer], bool]:
        if self.rounds is not None:
            self.rounds.forget(self.key)
        if self.learner is None and self.evicted is not None:
            # an evicted key ends as a resident one does (final metrics, a final snapshot through the snapshot writer),
            # and stays out of memory: from now on its newest version holds it
            out = self._evicted_learner().finish(time.time())
            self.newest = self.newest or out.snapshot is not None
            return [Answer(out, None)], self.RETAIN
        if self.learner is None:
            return [], self.RETAIN
        out = self.learner.finish(time.time())
        if self.states is not None:
            self.states.changed(self.learner)
        return [Answer(out, None)], self.RETAIN

    def snapshot(self) -> bytes | None:
        # Bytewax calls this at every epoch close; without recovery it would be thrown away. Not Step.snapshot(),
        # which also restarts the snapshot cadence.
        if self.states is None:
            return None
        self.pinned = False  # this epoch's recovery state no longer names the version it was restored from
        if self.learner is None:
            return evicted_marker(self.key, self.evicted, self.newest) if self.evicted is not None else None
        return self.states.state(self.learner)


class KeyCount:
    """The model keys one worker holds, in memory or evicted, against the run's ``max_keys``: a stream of ever-new keys cannot grow a worker without end.

    Each worker has its own (only its thread counts); a key refused now is
    asked about again with its next event.

    >>> keys = KeyCount(limit=1)
    >>> keys.admit(), keys.admit()
    (True, False)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def hold(self) -> None:
        """Count a key the worker holds already (restored from recovery state)."""
        self.held += 1

    def admit(self) -> bool:
        """Count a new key, where the worker may hold one more; ``False`` (nothing counted) where it may not."""
        if self.held >= self.limit:
            return False
        self.held += 1
        return True


class PerWorker(Generic[T]):
    """One object per Bytewax worker, made on its first use there, found by the worker's thread.

    Not :class:`threading.local`: a worker thread that Bytewax started (every
    one but the calling thread's, with more than one worker) loses its
    thread-local data each time it hands the GIL back.

    >>> made = PerWorker(list)
    >>> made.get() is made.get()
    True
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._made: dict[int, T] = {}
        self._lock = threading.Lock()

    def get(self) -> T:
        worker = threading.get_ident()
        found = self._made.get(worker)
        if found is None:
            with self._lock:
                found = self._made.setdefault(worker, self._make())
        return found


class _ResidentCount:
    """The learners resident in every worker together, told to the run's stats."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        self.lock = threading.Lock()
        self.n = 0

    def add(self, delta: int) -> None:
        with self.lock:
            self.n += delta
            n = self.n
        self.stats.resident_keys(n)


def build_dataflow(
    source: Source[Any],
    config: EngineConfig,
    sinks: Sinks,
    stats: RunStats,
    *,
    restored: Callable[[str], Step | None] = lambda key: None,
    look_ahead: Callable[[list[str]], None] | None = None,
    recovered: Callable[[Step], None] = lambda learner: None,
    recoverable: bool = False,
    flow_id: str = "stream_learner",
    evictions: EvictingStore | None = None,
    max_resident_keys: int = 0,
    control: Control | None = None,
) -> Dataflow:
    """Wire a source, the learner step and the sinks into one dataflow.

    ``restored(key)`` may return a learner restored from the snapshot store
    (``--resume``); Bytewax's own recovery state, when present, wins, and
    ``recovered(learner)`` sees each learner restored from it.
    ``look_ahead(keys)`` sees each decoded source batch's model keys (in
    groups, repeats included) before their learners are brought back.

    ``max_resident_keys`` (0: no bound) bounds each worker's learners in
    memory; the others are evicted to ``evictions`` and
    restored from it (see :mod:`stream_learner.residency`). A run resuming
    the recovery state of a bounded one needs ``evictions`` even without a
    bound: its evicted keys wait there.

    ``control``: the run takes operators' commands from its source's control records.
    """
    if max_resident_keys and evictions is None:
        raise ValueError("a bound on resident keys needs a store to evict them to")

    flow = Dataflow(flow_id)
    items = op.input("source", flow, source)
    decode = partial(decode_batch, max_bytes=config.max_record_bytes, control=control)
    decoded = op.flat_map_batch("decode", items, decode if look_ahead is None else _looking_ahead(decode, look_ahead))
    split = op.branch("split_dead_letters", decoded, _keyed)
    dead_letters = cast("Stream[Answer]", split.falses)  # the TypeGuard narrows the true side only: the false one is the rest

    step_config = replace(config, snapshot_rounds=True)  # due snapshots are taken together, per worker (SnapshotRounds)
    resident = _ResidentCount(stats)
    # each Bytewax worker builds and runs its logics on its own thread: one of each of these per worker
    states = PerWorker(RecoveryStates)
    round_gap = config.snapshot_seconds if not config.snapshot_every else 0.0  # a count-based cadence snapshots at its N-th event
    rounds = PerWorker(lambda: SnapshotRounds(round_gap))
    keys = PerWorker(lambda: KeyCount(config.max_keys))
    residencies: PerWorker[Residency] | None = None
    if evictions is not None:
        store, limit = evictions, max_resident_keys
        failed = partial(stats.snapshot_saved, version=None)  # a refused eviction counts as a failed snapshot
        residencies = PerWorker(
            lambda: Residency(store, ResidentSet(limit, store.evict, counted=resident.add, failed=failed) if limit else None)
        )

    def build_logic(resume_state: bytes | None) -> _LearnerLogic:
        return _LearnerLogic(
            step_config, restored, states.get() if recoverable else None, resume_state, keys.get(), stats.step_done, recovered,
            residencies.get() if residencies is not None else None, control, rounds.get(), stats,
        )  # fmt: skip

    learned = op.stateful_batch("learn", split.trues, build_logic)
    answers = op.merge("outputs", op.key_rm("unkey", learned), dead_letters)

    def count(batch: list[Answer]) -> list[Answer]:
        stats.observe([answer.out for answer in batch])
        return batch

    counted = op.flat_map_batch("count", answers, count)

    def select(name: str) -> Callable[[list[Answer]], list[Records]]:
        def pick(batch: list[Answer]) -> list[Records]:
            return [(_routing_key(records, name), records) for answer in batch if (records := getattr(answer.out, name))]

        return pick

    def hand_predictions(batch: list[Answer]) -> list[PredictionsItem]:
        """The predictions, picked for their sinks: where each one's latency ends."""
        picked = [(_routing_key(a.out.predictions, "predictions"), a.out.predictions) for a in batch if a.out.predictions]
        now = time.time()
        stats.predictions_handed([(now - a.read_at, len(a.out.predictions)) for a in batch if a.out.predictions and a.read_at is not None])
        return picked

    predictions = op.flat_map_batch("select_predictions", counted, hand_predictions)
    for i, sink in enumerate(sinks.predictions):
        op.output(f"predictions_out_{i}", predictions, sink)
    for name, record_sinks in (("metrics", sinks.metrics), ("dead_letters", sinks.dead_letters), ("shadow_predictions", sinks.shadow_predictions)):
        if name == "shadow_predictions" and not record_sinks:
            continue
        records = op.flat_map_batch(f"select_{name}", counted, select(name))
        for i, record_sink in enumerate(record_sinks):
            _output(f"{name}_out_{i}", records, record_sink)

    def select_snapshots(batch: list[Answer]) -> list[Snapshot]:
        # on the worker's own thread, its learners quiescent: the round reads each header and state at one instant
        # a boundary's versions first: the outgoing model, before any later state of the key
        boundaries = [s for answer in batch for s in answer.out.boundary_snapshots]
        return boundaries + [answer.out.snapshot for answer in batch if answer.out.snapshot] + rounds.get().take()

    snapshots = op.flat_map_batch("select_snapshots", counted, select_snapshots)
    for i, snapshot_sink in enumerate(sinks.snapshots):
        op.output(f"snapshots_out_{i}", snapshots, snapshot_sink)
    if not sinks.snapshots:  # nobody writes them: end their child processes now
        op.inspect("discard_snapshots", snapshots, lambda step_id, snapshot: snapshot.discard())
    return flow


def _looking_ahead(
    decode: Callable[[list[Any]], list[tuple[str, Read] | Answer]], look_ahead: Callable[[list[str]], None]
) -> Callable[[list[Any]], list[tuple[str, Read] | Answer]]:
    """``decode``, then ``look_ahead`` at the model keys of what it decoded."""

    def decode_and_look(items: list[Any]) -> list[tuple[str, Read] | Answer]:
        decoded = decode(items)
        look_ahead([item[0] for item in decoded if _keyed(item)])
        return decoded

    return decode_and_look


def _keyed(item: tuple[str, Read] | Answer) -> TypeGuard[tuple[str, Read]]:
    """Whether a decoded item goes to a key's learner step (else it is an answer already: dead letters)."""
    return isinstance(item, tuple)


def _routing_key(records: list[dict[str, Any]] | Predictions, name: str) -> str:
    """What a partitioned sink routes an output by: its model key (dead letters have none: the output's name)."""
    key = records.key if type(records) is Predictions else records[0].get("key")
    return key if isinstance(key, str) else name


@overload
def _output(step_id: str, up: Stream[Records], sink: Sink[Records]) -> None: ...
@overload
def _output(step_id: str, up: Stream[PredictionsItem], sink: Sink[PredictionsItem]) -> None: ...
def _output(step_id: str, up: Stream[T], sink: Sink[T]) -> None:
    """``op.output`` to either kind of :data:`RecordSink` (given the union, mypy cannot infer one item type for ``op.output``)."""
    op.output(step_id, up, sink)
