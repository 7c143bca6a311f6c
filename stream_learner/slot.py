"""A model key's slot: the champion and its challengers in shadow, and promotion on evidence.

With :attr:`EngineConfig.challengers <stream_learner.engine.EngineConfig.challengers>`
set, each model key holds a :class:`Slot` instead of one
:class:`~stream_learner.engine.KeyedLearner`: one learner step per
candidate (the ``learner`` and each challenger), all fed the same events.
Every candidate predicts and learns test-then-train on every event; only the
champion's predictions and dead letters are published. Every candidate's
metrics, drift and feature-drift records are, each with a ``candidate``
field naming it and a ``champion`` flag; with ``shadow_predictions``, every
challenger's predictions too (:attr:`StepOutput.shadow_predictions
<stream_learner.engine.StepOutput.shadow_predictions>`).

Promotion: each labelled event that the champion and a challenger both
predicted adds a pair of errors to that challenger's
:class:`~stream_learner.evidence.PairedWindow`. Once the champion has held
``min_champion_events`` labelled events, at the end of each
``promotion_window`` of them, a challenger whose error over that window is
lower and whose paired test (McNemar, or Wilcoxon for regression) gives a
p-value under ``promotion_alpha`` divided by the number of challengers
replaces the champion (the one with the lowest error, if several qualify).
Each test looks at pairs no earlier test saw, so between equally good
learners a promotion happens by chance at most once in ``2 / alpha``
windows (testing overlapping windows at every event would find a false one
many times as often); a better challenger waits at most one window longer.
A ``promotion`` record carries the evidence. The outgoing champion stays as
a challenger (so it can come back), every window starts afresh, and the
batch's snapshot holds the slot as it is after the promotion. With
``auto_promote`` off the same record says ``applied: false``, and is said
again only on the next window's evidence.

Whether a candidate is champion changes what is published, never what any
candidate learns; the evidence is taken event by event, so the candidates'
states and the promotions do not depend on how the stream was batched. Nor
does what is published: the slot takes a batch in parts, each ending at the
event where the evidence may next be tested, so a promoted challenger's
predictions are published from the event after the decision on, whether
the events come one at a time or ten thousand to a batch. A delayed label
(``label_window``) pairs the predictions its event had, when it arrives
(the last ``label_window`` unlabelled events' predictions wait for theirs).

>>> from stream_learner.engine import EngineConfig
>>> from stream_learner.events import Event
>>> from stream_learner.learners.base import LearnerSpec
>>> config = EngineConfig(learner=LearnerSpec("logreg"), challengers=(LearnerSpec("hoeffding_tree"),), metrics_every=4)
>>> slot = new_step("default", config)
>>> out = slot.process([Event(str(i), "default", {"x": float(i % 2)}, bool(i % 2), None, 0, i) for i in range(4)], now=0.0)
>>> slot.champion_name, len(out.predictions), [(m["candidate"], m["champion"]) for m in out.metrics]
('logreg', 4, [('logreg', True), ('hoeffding_tree', False)])
>>> type(new_step("default", EngineConfig())).__name__
'KeyedLearner'
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Union

from stream_learner.control import Command, no_version_kept
from stream_learner.delayed import LabelRecord
from stream_learner.engine import EngineConfig, KeyedLearner, StepOutput
from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.events import Event, EventBatch
from stream_learner.evidence import PairedTest, PairedWindow
from stream_learner.learners.base import Learner, LearnerSpec, forkable
from stream_learner.learners.factory import build_learner
from stream_learner.learners.from_state import learner_from_state
from stream_learner.predictions import Predictions, Row
from stream_learner.records import ControlStatus, PromotionDict, ShadowPredictionDict
from stream_learner.snapshot import Snapshot, SnapshotPart
from stream_learner.state import decode, slot_state
from stream_learner.step.cadence import Cadence
from stream_learner.step.operator import Operator

VERSION = 1
"""The layout of :meth:`Slot.state_dict`."""

Step = Union[KeyedLearner, "Slot"]
"""A model key's learner step, as :func:`new_step` and :func:`restore_step` give it: both have the surface the dataflow uses."""


def new_step(key: str, config: EngineConfig) -> Step:
    """The learner step of a new model key: a :class:`Slot` when the configuration has challengers, else a plain learner step."""
    if config.shadow_predictions and not config.challengers:
        raise ConfigError("shadow predictions are the challengers' predictions: add a challenger")
    return Slot(key, config) if config.challengers else KeyedLearner(key, config)


def restore_step(payload: bytes, config: EngineConfig) -> Step:
    """The learner step of a *verified* snapshot payload, under this run's configuration (see :func:`step_from_state`)."""
    return step_from_state(decode(payload), config)


def step_from_state(state: dict[str, Any], config: EngineConfig) -> Step:
    """The learner step a state describes, as this run's configuration asks for it.

    A slot's state under a run without challengers restores its champion
    alone (which must be the run's model); a single learner's state under a
    run with challengers becomes the champion of a slot whose challengers
    start afresh.
    """
    if "candidates" in state:
        if config.challengers:
            return Slot.from_state(state, config)
        return KeyedLearner.from_state(champion_state(state), config)
    if config.challengers:
        return Slot.with_champion(KeyedLearner.from_state(state, _candidate_config(config, config.learner)), config)
    return KeyedLearner.from_state(state, config)


def champion_state(state: dict[str, Any]) -> dict[str, Any]:
    """The single learner's state that serves a key: a slot's champion's, or the state itself.

    For code that loads a key's model to predict with it (its spec says which model it is).
    """
    return state["candidates"][state["champion"]]["state"] if "candidates" in state else state


def candidate_names(specs: Sequence[LearnerSpec]) -> list[str]:
    """A name per candidate: its model, ``+strategy`` where it has one, and ``#2``, ``#3``... for a name already taken.

    >>> candidate_names([LearnerSpec("logreg"), LearnerSpec("logreg", strategy="reset"), LearnerSpec("logreg", {"l2": 1.0})])
    ['logreg', 'logreg+reset', 'logreg#2']
    """
    names: list[str] = []
    for spec in specs:
        base = spec.model + (f"+{spec.strategy}" if spec.strategy else "")
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}#{n}"
        names.append(name)
    return names


def _candidate_config(config: EngineConfig, spec: LearnerSpec) -> EngineConfig:
    """One candidate's configuration: the run's reporting settings, its own model, no snapshots of its own (the slot takes them)."""
    return replace(config, learner=spec, challengers=(), snapshot_every=0, snapshot_seconds=0.0)


class Slot:
    """The candidates of one model key (see the module's docstring); used where a :class:`~stream_learner.engine.KeyedLearner` is.

    Attributes:
        candidates: one learner step per candidate, in the configuration's
            order (the run's ``learner`` first).
        names: their names (:func:`candidate_names`).
        champion: the index of the champion among them.
        windows: per challenger's index, its paired errors against the champion.
        held: labelled events the champion has held since it became champion.
    """

    def __init__(self, key: str, config: EngineConfig, learner_factory: Callable[[LearnerSpec], Learner] = build_learner) -> None:
        _check(config)
        specs = (config.learner, *config.challengers)
        self.key = key
        self.config = config
        self.names = candidate_names(specs)
        self.candidates = [KeyedLearner(key, _candidate_config(config, spec), learner_factory) for spec in specs]
        tasks = {c.learner.task for c in self.candidates}
        if len(tasks) > 1:
            raise ConfigError(f"the champion and its challengers must all be classifiers or all regressors: {', '.join(self.names)}")
        self.task = self.candidates[0].learner.task
        self.champion = 0
        self.held = 0
        self.windows: dict[int, PairedWindow] = {}
        self._start_windows()
        self._waiting: OrderedDict[str, tuple[Any, ...]] = OrderedDict()  # unlabelled events' predictions, by candidate, awaiting a delayed label
        self.operator = Operator()  # the commands applied (each once)
        self.cadence = Cadence(0, 0, config.snapshot_every, config.snapshot_seconds)

    @classmethod
    def with_champion(cls, champion: KeyedLearner, config: EngineConfig) -> Slot:
        """A slot whose champion is ``champion`` (a restored single learner) and whose challengers start afresh."""
        slot = cls(champion.key, config)
        slot.candidates[0] = champion
        return slot

    def _start_windows(self) -> None:
        self.windows = {i: PairedWindow(self.task, self.config.promotion_window) for i in range(len(self.candidates)) if i != self.champion}

    @property
    def champion_step(self) -> KeyedLearner:
        return self.candidates[self.champion]

    @property
    def champion_name(self) -> str:
        return self.names[self.champion]

    @property
    def learner(self) -> Learner:
        """The champion's model."""
        return self.champion_step.learner

    @property
    def learners(self) -> list[Learner]:
        """Every candidate's model."""
        return [c.learner for c in self.candidates]

    @property
    def forkable(self) -> bool:
        """Whether every candidate's model may be encoded in a forked child."""
        return all(forkable(learner) for learner in self.learners)

    @property
    def events(self) -> int:
        return self.champion_step.events

    @property
    def learned(self) -> int:
        return self.champion_step.learned

    @property
    def next_offsets(self) -> dict[int, int]:
        return self.champion_step.next_offsets

    def process(self, events: Sequence[Event | LabelRecord] | EventBatch, now: float) -> StepOutput:
        """Every candidate takes the events; the champion's predictions and dead letters, everyone's metrics, and any promotion, are published.

        The events are taken in parts, each ending where the evidence may
        next be tested (:func:`_part_end`): a challenger promoted at an event
        is the champion of the next part, so it publishes from the next event on.
        """
        out = StepOutput(predictions=Predictions(self.key, now))
        may_pair = _may_pair(events)
        promoted = False
        start = 0
        while True:  # once at least: an empty call still tells the candidates the time
            end = _part_end(may_pair, start, self._pairs_until_test())
            promoted = self._take(_part(events, start, end), now, out) or promoted
            if end == len(may_pair):
                break
            start = end
        if self.cadence.snapshot_due(now) or promoted:
            if self.config.snapshot_rounds:
                out.snapshot_due = True  # the caller takes it in a round, with snapshot_part()
            else:
                out.snapshot = self.snapshot(background=True)
        return out

    def _take(self, events: Sequence[Event | LabelRecord] | EventBatch, now: float, out: StepOutput) -> bool:
        """One part of a batch: every candidate takes it, ``out`` gets what is published; whether a promotion was applied (one can come at the part's last event only)."""
        champion = self.champion_step
        admitted = champion.cadence.since_snapshot
        outs = [c.process(events, now) for c in self.candidates]
        self.cadence.counted(champion.cadence.since_snapshot - admitted)
        out.predictions.rows.extend(outs[self.champion].predictions.rows)  # type: ignore[union-attr]
        out.dead_letters.extend(outs[self.champion].dead_letters)
        for i, o in enumerate(outs):
            if i == self.champion:
                out.boundary_snapshots.extend(o.boundary_snapshots)  # the champion's boundaries are the key's boundary versions
            else:
                for snapshot in o.boundary_snapshots:
                    snapshot.discard()
            out.metrics.extend(self._tagged(o.metrics, i))
            if self.config.shadow_predictions and i != self.champion:
                out.shadow_predictions.extend(self._shadow(o.predictions.rows, i, now))  # type: ignore[union-attr]
        promotions = self._weigh(events, outs, champion.events - len(outs[self.champion].predictions), now)
        out.metrics.extend(promotions)
        return any(p["applied"] for p in promotions)

    def _pairs_until_test(self) -> int:
        """How many more pairs of errors until the evidence is next tested (see :meth:`_pair`).

        >>> from stream_learner.engine import EngineConfig
        >>> slot = Slot("k", EngineConfig(challengers=(LearnerSpec("hoeffding_tree"),), promotion_window=200, min_champion_events=500))
        >>> slot._pairs_until_test()
        600
        >>> slot.held = 650
        >>> slot._pairs_until_test()
        150
        """
        window = self.config.promotion_window
        first = max(self.held + 1, self.config.min_champion_events)
        return -(-first // window) * window - self.held

    def _shadow(self, rows: list[Row], index: int, now: float) -> list[ShadowPredictionDict]:
        """A challenger's predictions as records naming it."""
        key, name = self.key, self.names[index]
        return [
            {"id": event_id, "key": key, "candidate": name, "prediction": y, "proba": proba, "model_version": version, "concept": concept, "ts": now} for event_id, y, proba, version, concept in rows
        ]

    def _tagged(self, records: list[Any], index: int) -> list[Any]:
        """A candidate's metrics and drift records, naming it."""
        name, champion = self.names[index], index == self.champion
        return [{**record, "candidate": name, "champion": champion} for record in records]

    def _weigh(self, events: Sequence[Event | LabelRecord] | EventBatch, outs: list[StepOutput], events_before: int, now: float) -> list[PromotionDict]:
        """Pair the candidates' errors on the batch's labelled events (and delayed labels), in order; promote (or recommend) where the evidence says so."""
        predicted = [dict((row[0], row[1]) for row in o.predictions.rows) for o in outs]  # type: ignore[union-attr]
        published = predicted[self.champion]
        promotions: list[PromotionDict] = []
        at_event = events_before
        for event_id, label, late in _stream(events):
            if late:
                preds = self._waiting.pop(event_id, None)
                if preds is None:
                    continue
            else:
                if event_id not in published:
                    continue  # a dead letter, or an event taken before
                at_event += 1
                preds = tuple(p.get(event_id, _MISSING) for p in predicted)
                if any(y is _MISSING for y in preds):
                    continue  # a candidate's model rejected it: no pair
                if label is None:
                    self._wait(event_id, preds)
                    continue
            promotion = self._pair(preds, label, at_event, now)
            if promotion is not None:
                promotions.append(promotion)
        return promotions

    def _wait(self, event_id: str, preds: tuple[Any, ...]) -> None:
        """An unlabelled event's predictions wait for its delayed label, as long as the candidates' label windows hold it (at most ``label_window``)."""
        if not self.config.label_window:
            return
        self._waiting[event_id] = preds
        if len(self._waiting) > self.config.label_window:
            self._waiting.popitem(last=False)

    def _pair(self, preds: tuple[Any, ...], label: Any, at_event: int, now: float) -> PromotionDict | None:
        """One labelled event's errors, the champion's against each challenger's; a promotion when due and proved."""
        error = self.champion_step.metrics.error
        champion_error = error(label, preds[self.champion])
        for i, window in self.windows.items():
            window.add(champion_error, error(label, preds[i]))
        self.held += 1
        if self.held >= self.config.min_champion_events and self.held % self.config.promotion_window == 0:  # each window of pairs tested once
            return self._promotion(at_event, now)
        return None

    def _promotion(self, at_event: int, now: float) -> PromotionDict | None:
        """The challenger better than the champion by the paired test, if any: promoted (or recommended), and its record."""
        best: tuple[int, PairedTest] | None = None
        alpha = self.config.promotion_alpha / len(self.windows)  # Bonferroni: any challenger, by chance, at most alpha
        for i, window in self.windows.items():
            if window.full and window.second_error < window.first_error:
                test = window.test()
                if test.second_better(alpha) and (best is None or test.second_error < best[1].second_error):
                    best = (i, test)
        if best is None:
            return None
        winner, test = best
        record: PromotionDict = {
            "type": "promotion",
            "key": self.key,
            "champion": self.champion_name,
            "challenger": self.names[winner],
            "evidence": {
                "window": test.n,
                "champion_error": test.first_error,
                "challenger_error": test.second_error,
                "statistic": test.statistic,
                "p_value": test.p_value,
                "test": test.test,
            },
            "at_event": at_event,
            "applied": self.config.auto_promote,
            "ts": now,
        }
        if self.config.auto_promote:
            self._crown(winner)
        return record

    def _crown(self, index: int) -> None:
        """Candidate ``index`` is champion from now on; the evidence against the old one no longer counts."""
        self.champion, self.held = index, 0
        self._start_windows()

    def promote(self, name: str) -> str | None:
        """Make candidate ``name`` the champion now, whatever the evidence (an operator's command); why not, if it cannot be.

        The outgoing champion stays as a challenger, as after a promotion on evidence.
        """
        if name not in self.names:
            return f"model key {self.key!r} has no candidate {name!r}; its candidates: {', '.join(self.names)}"
        index = self.names.index(name)
        if index == self.champion:
            return f"{name!r} is already the champion of model key {self.key!r}"
        self._crown(index)
        return None

    def apply(self, command: Command, now: float, version: dict[str, Any] | None = None) -> StepOutput:
        """Obey an operator's command between two events (as :meth:`KeyedLearner.apply <stream_learner.engine.KeyedLearner.apply>`); one ``control`` answer.

        ``promote`` makes the candidate the command names champion
        (:meth:`promote`); ``rollback`` brings back the models of ``version``
        (a slot's state: every candidate this run still has, and its champion;
        a single learner's state: that model, as champion); ``snapshot``
        snapshots the slot; pausing and resuming learning holds for every
        candidate.
        """
        out = StepOutput()
        status: ControlStatus = "duplicate"
        reason = None
        if self.operator.first_time(command.id):
            reason = self._obey(command, now, version, out)
            status = "applied" if reason is None else "refused"
        out.metrics.append(self.champion_step.control_answer(command, status, reason, now))
        return out

    def _obey(self, command: Command, now: float, version: dict[str, Any] | None, out: StepOutput) -> str | None:
        action = command.action
        if action == "promote":
            return self.promote(str(command.arg))
        if action == "rollback":
            return self._roll_back(command.arg, version)
        if action == "snapshot":
            out.snapshot = self.snapshot(background=True)
            return None
        for candidate in self.candidates:  # pause and resume: each candidate's own answer is not published
            candidate.apply(command, now)
        return None

    def _roll_back(self, arg: Any, version: dict[str, Any] | None) -> str | None:
        """The models of snapshot ``version`` live again (its champion as champion); metrics and the stream's position go on."""
        if version is None:
            return no_version_kept(self.key, arg)
        if "candidates" in version:
            states = [entry["state"] for entry in version["candidates"]]
            champion = states[version["champion"]]
        else:
            states = [champion := version]
        specs = [candidate.config.learner for candidate in self.candidates]
        champion_spec = LearnerSpec(**champion["spec"])
        if champion_spec not in specs:
            return f"snapshot version {arg} of key {self.key!r} has champion {champion_spec.model!r} {champion_spec.params}, which is not among this run's candidates"
        for state in states:
            spec = LearnerSpec(**state["spec"])
            if spec in specs:
                self.candidates[specs.index(spec)].install(learner_from_state(state["learner"], spec))
        self._crown(specs.index(champion_spec))
        return None

    def finish(self, now: float) -> StepOutput:
        """The stream ended: every candidate's final metrics, and the slot's snapshot."""
        out = StepOutput()
        for i, candidate in enumerate(self.candidates):
            final = candidate.finish(now)
            if final.snapshot is not None:
                final.snapshot.discard()
            out.metrics.extend(self._tagged(final.metrics, i))
        out.snapshot = self.snapshot()
        return out

    def metrics_record(self, now: float) -> Any:
        """The champion's current metrics, naming it."""
        return self._tagged([self.champion_step.metrics_record(now)], self.champion)[0]

    def snapshot(self, background: bool = False) -> Snapshot:
        """The slot's state (:meth:`state_dict`), encoded (in a forked child with ``background``, where every candidate may fork)."""
        snapshot = Snapshot.round([self.snapshot_part()], background)[0]
        self.snapshotted(snapshot)
        return snapshot

    def snapshotted(self, snapshot: Snapshot) -> None:
        """``snapshot`` holds the slot as it is now (see :meth:`KeyedLearner.snapshotted <stream_learner.engine.KeyedLearner.snapshotted>`): each candidate's undo journal starts again from its model there."""
        for i, candidate in enumerate(self.candidates):
            candidate.guard.journal.restart_at(lambda: snapshot.payload, partial(_candidate_learner, index=i, spec=candidate.config.learner))

    def snapshot_part(self) -> SnapshotPart:
        """The slot's share of a snapshot round (:meth:`~stream_learner.snapshot.Snapshot.round`), as it is now; the envelope names the champion's model family and strategy."""
        self.cadence.snapshot_taken()
        champion = self.champion_step
        return SnapshotPart(
            self.state_dict,
            self.key,
            champion.learner.family,
            champion.config.learner.strategy or "none",
            self.events,
            dict(self.next_offsets),
            self.forkable,
        )

    @classmethod
    def restore(cls, payload: bytes, config: EngineConfig) -> Step:
        """The learner step of a *verified* snapshot payload (:func:`restore_step`)."""
        return restore_step(payload, config)

    def state_dict(self) -> dict[str, Any]:
        """Every candidate's state, which one is champion, and the evidence gathered so far, as plain values."""
        return {
            "version": VERSION,
            "key": self.key,
            "champion": self.champion,
            "held": self.held,
            "candidates": [{"name": name, "state": c.state_dict()} for name, c in zip(self.names, self.candidates)],
            "windows": {self.names[i]: w.state_dict() for i, w in self.windows.items()},
            "waiting": [(event_id, list(preds)) for event_id, preds in self._waiting.items()],
            "cadence": self.cadence.state_dict(),
            "operator": self.operator.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: EngineConfig) -> Slot:
        """The slot :meth:`state_dict` describes, with this run's candidates (older layouts are upgraded by :func:`~stream_learner.state.slot_state`).

        A candidate of the state that this run also configures (the same
        model, parameters and strategy) is restored; a new one starts
        afresh; one the run no longer configures is dropped, unless it is
        the champion (a :class:`~stream_learner.errors.SnapshotError`: name
        it among the challengers, or restore the key without challengers to
        go on with it alone).
        """
        state = slot_state(state)
        slot = cls(state["key"], config)
        specs = [c.config.learner for c in slot.candidates]
        restored: dict[str, int] = {}  # the state's candidate name -> this slot's index
        for entry in state["candidates"]:
            spec = LearnerSpec(**entry["state"]["spec"])
            if spec in specs:
                i = specs.index(spec)
                slot.candidates[i] = KeyedLearner.from_state(entry["state"], _candidate_config(config, spec))
                restored[entry["name"]] = i
        champion_name = state["candidates"][state["champion"]]["name"]
        if champion_name not in restored:
            raise SnapshotError(f"the champion of key {state['key']!r} is {champion_name!r}, which this run does not name among its model and challengers")
        slot.champion = restored[champion_name]
        slot._start_windows()
        for name, window in state["windows"].items():
            if name in restored and restored[name] in slot.windows and window["size"] == config.promotion_window:
                slot.windows[restored[name]] = PairedWindow.from_state(window)
        slot.held = state["held"]
        if [entry["name"] for entry in state["candidates"]] == slot.names:  # the same candidates: the predictions awaiting labels still pair up
            slot._waiting = OrderedDict((event_id, tuple(preds)) for event_id, preds in state["waiting"])
        slot.cadence = Cadence.from_state(state["cadence"], 0, 0, config.snapshot_every, config.snapshot_seconds)
        slot.operator = Operator.from_state(state["operator"])
        return slot


_MISSING = object()


def _candidate_learner(payload: bytes, index: int, spec: LearnerSpec) -> Learner:
    """Candidate ``index``'s model in the encoded state of a slot."""
    return learner_from_state(decode(payload)["candidates"][index]["state"]["learner"], spec)


def _may_pair(events: Sequence[Event | LabelRecord] | EventBatch) -> list[bool]:
    """Per item, whether it may give a pair of errors: a labelled event, or a delayed label (an unlabelled event's pair waits for its label).

    An item gives one pair at most, and only where this says it may (see :meth:`Slot._weigh`).
    """
    if isinstance(events, EventBatch):
        return [label is not None for _, label in events.pairs]
    return [type(item) is LabelRecord or (type(item) is Event and item.label is not None) for item in events]


def _part_end(may_pair: list[bool], start: int, pairs: int) -> int:
    """Where a part from item ``start`` ends: just after the item that may give the ``pairs``-th pair from there (no earlier item can bring the test), or at the end.

    >>> _part_end([True, False, True, True], 0, 2), _part_end([True, False, True, True], 3, 2)
    (3, 4)
    """
    for i in range(start, len(may_pair)):
        if may_pair[i]:
            pairs -= 1
            if not pairs:
                return i + 1
    return len(may_pair)


def _part(events: Sequence[Event | LabelRecord] | EventBatch, start: int, end: int) -> Sequence[Event | LabelRecord] | EventBatch:
    """Items ``start`` to ``end`` of a list or an event batch (the whole, not copied, where that is all of it)."""
    if start == 0 and end == len(events):
        return events
    if isinstance(events, EventBatch):
        return EventBatch(events.topic, events.key, events.partition, events.first_offset + start, events.pairs[start:end])
    return events[start:end]


def _stream(events: Sequence[Event | LabelRecord] | EventBatch) -> Iterator[tuple[str, Any, bool]]:
    """``(id, label, delayed)`` of each event and delayed label, in order (anything else a step takes is no evidence)."""
    if isinstance(events, EventBatch):
        for event_id, _, label, _ in events.rows():
            yield event_id, label, False
        return
    for item in events:
        if type(item) is Event:
            yield item.id, item.label, False
        elif type(item) is LabelRecord:
            yield item.id, item.label, True


def _check(config: EngineConfig) -> None:
    """Refuse promotion settings that cannot work, in one line each."""
    if config.promotion_window < 1:
        raise ConfigError(f"promotion_window must be at least 1, not {config.promotion_window}")
    if not 0 < config.promotion_alpha < 1 or math.isnan(config.promotion_alpha):
        raise ConfigError(f"promotion_alpha must be between 0 and 1, not {config.promotion_alpha}")
    if config.min_champion_events < 0:
        raise ConfigError(f"min_champion_events cannot be negative: {config.min_champion_events}")
