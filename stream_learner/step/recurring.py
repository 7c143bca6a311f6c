"""Recurring concepts: earlier concepts' models are kept, and one comes back when the stream does.

Seasonal streams return to concepts seen before. At each boundary the
outgoing model's state (its learner's ``state_dict()``, as it served the
concept that ends, before the strategy consolidates or resets it) goes
into a bounded :class:`ConceptLibrary`. A drift is found some events after
it began, and the model has learned those events of the new concept by
then (a linear model trained by SGD is harmed most). With
``checkpoint_every``, every that many labelled events the live model's
state is copied, and at a detected drift the library keeps the copy taken
between ``checkpoint_every`` and twice that many events earlier, where the
concept had begun before it (an explicit task switch has no such delay:
the model as it is then). Each copy costs a ``state_dict()``: cheap for a
linear model, a tree's whole pickle for a tree. During the new concept's first
``window`` labelled events every stored model predicts the same events in
shadow (predict only: stored models never learn), each paired with the
live model's errors (:class:`~stream_learner.evidence.PairedWindow`). At a
few looks (every ``window / looks`` labelled events) the paired test
(McNemar for a classifier, Wilcoxon for a regressor) decides: the stored
model with the lowest error among those better than the live one at
``alpha`` (Bonferroni-corrected for the candidates and the looks, so that
trying many models often does not reinstate one by chance) becomes the
live model again, and the live one is stored in its place.

The library holds one entry per concept: the model that served it last.
A reinstated model serves its own concept's entry again: at the next
boundary it replaces that entry, refined by what it learned since. The
library keeps the ``size`` entries stored or reinstated most recently.

The library is also a rollback: :meth:`RecurringConcepts.reinstate` brings
back, by hand, the model that served a given concept (an operator's
command), and :meth:`~stream_learner.engine.KeyedLearner.install` makes it
the key's live model, as it does for a trial's winner or for the learner
of an earlier snapshot version.

A torch learner's strategies (EWC's importances, a replay buffer) are part
of its ``state_dict()``: they come back with the model they describe, as
they were when it left. The live model's strategies go into the library
with it: a strategy's state belongs to the weights it was computed on.

>>> from stream_learner.learners.factory import build_learner
>>> spec = LearnerSpec("logreg")
>>> reuse = RecurringConcepts(ConceptReuse(size=2, window=20), spec, "classification")
>>> a = build_learner(spec)
>>> for i in range(200):
...     a.learn({"x": float(i % 2)}, bool(i % 2))
>>> reuse.leave(a); reuse.enter(1)  # concept 1 starts with a fresh model
>>> live = build_learner(spec)
>>> back = None
>>> for i in range(20):
...     x, y = {"x": float(i % 2)}, bool(i % 2)
...     back = back or reuse.score(x, float(live.predict(x)[0] != y), lambda p: float(p != y), live)
>>> back.concept, back.evidence["test"], back.evidence["stored_error"]
(0, 'mcnemar_exact', 0.0)
>>> sorted(reuse.library.entries), reuse.origin
([0, 1], 0)
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from stream_learner.errors import ConfigError
from stream_learner.evidence import PairedTest, PairedWindow
from stream_learner.learners.base import Learner, LearnerSpec, Task
from stream_learner.learners.from_state import learner_from_state
from stream_learner.records import ReuseEvidenceDict
from stream_learner.state import expect_version

VERSION = 1
"""The layout of :meth:`ConceptLibrary.state_dict` and :meth:`RecurringConcepts.state_dict`."""


@dataclass(frozen=True)
class ConceptReuse:
    """How earlier concepts' models are kept and tried (``EngineConfig.concept_reuse``; ``None`` there: off).

    Attributes:
        size: the most concepts' models kept (each as large as the live model's state).
        window: labelled events of a new concept on which the stored models are tried.
        alpha: significance of the paired test, for all candidates and looks together.
        looks: how many times during the window the test is read (the last at its end);
            more looks reinstate sooner, each at a stricter level.
        checkpoint_every: labelled events between copies of the live model, so that a
            detected drift stores the model as it was before the detector's delay
            (0: none; the model as it is when the drift is detected).
    """

    size: int = 5
    window: int = 200
    alpha: float = 0.05
    looks: int = 8
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"the concept library holds at least 1 model, not {self.size}")
        if not 1 <= self.looks <= self.window:
            raise ConfigError(f"concept reuse needs 1 <= looks ({self.looks}) <= window ({self.window})")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"concept reuse's alpha must be in (0, 1), not {self.alpha}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"concept reuse's checkpoint_every must be >= 0, not {self.checkpoint_every}")


class ConceptLibrary:
    """Learner states of earlier concepts, at most ``size``, least recently used first.

    >>> library = ConceptLibrary(2)
    >>> for concept in (0, 1, 2):
    ...     library.store(concept, {"version": 1, "family": "river", "model": b""})
    >>> list(library.entries)
    [1, 2]
    >>> library.use(1); list(library.entries)
    [2, 1]
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def store(self, concept: int, state: dict[str, Any]) -> None:
        """Keep ``state`` (not copied: the caller hands over a state nothing else changes) as ``concept``'s model; the least recently used goes beyond ``size``."""
        self.entries[concept] = state
        self.use(concept)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def use(self, concept: int) -> None:
        """``concept``'s model was used: it is evicted last."""
        self.entries.move_to_end(concept)

    def state_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "size": self.size, "entries": [[concept, state] for concept, state in self.entries.items()]}

    @classmethod
    def from_state(cls, state: dict[str, Any], size: int) -> ConceptLibrary:
        """The library of ``state``, bounded by this run's ``size`` (the least recently used go first)."""
        expect_version(state, "the concept library", VERSION)
        library = cls(size)
        for concept, entry in state["entries"]:
            library.store(concept, entry)
        return library


@dataclass(frozen=True)
class Reinstated:
    """A stored model proved better than the live one: it is the live model now.

    Attributes:
        concept: the earlier concept whose model came back.
        learner: that model, rebuilt from its state.
        evidence: the paired test's outcome (see :func:`evidence_dict`).
    """

    concept: int
    learner: Learner
    evidence: ReuseEvidenceDict


def evidence_dict(test: PairedTest, alpha: float) -> ReuseEvidenceDict:
    """A paired test as plain values: the test, its statistic and p-value, the pairs, the level it passed, both error rates (live first)."""
    return {
        "test": test.test,
        "statistic": test.statistic,
        "p_value": test.p_value,
        "n": test.n,
        "alpha": alpha,
        "live_error": test.first_error,
        "stored_error": test.second_error,
    }


class ShadowTrial:
    """Stored models predicting a new concept's labelled events in shadow, each paired with the live model."""

    def __init__(self, candidates: dict[int, Learner], task: Task, settings: ConceptReuse, windows: dict[int, PairedWindow] | None = None, seen: int = 0) -> None:
        self.candidates = candidates
        self.settings = settings
        self.windows = windows if windows is not None else {concept: PairedWindow(task, settings.window) for concept in candidates}
        self.seen = seen

    @property
    def over(self) -> bool:
        return self.seen >= self.settings.window

    @property
    def alpha(self) -> float:
        """Each test's level: ``alpha`` shared among the candidates and the looks."""
        return self.settings.alpha / (len(self.candidates) * self.settings.looks)

    def score(self, x: dict[Any, Any], live_error: float, error: Callable[[Any], float]) -> tuple[int, PairedTest] | None:
        """One labelled event: each candidate's error beside the live model's; at a look, the best candidate proved better, if any."""
        for concept, learner in self.candidates.items():
            try:
                y_pred = learner.predict(x)[0]
            except Exception:  # a stored model that cannot read the new concept's events is wrong on them; the stream goes on
                y_pred = None
            self.windows[concept].add(live_error, error(y_pred))
        self.seen += 1
        settings = self.settings
        if self.seen % max(1, settings.window // settings.looks) and not self.over:
            return None
        return self.verdict()

    def verdict(self) -> tuple[int, PairedTest] | None:
        """The candidate of lowest error among those better than the live model at :attr:`alpha`, with its test."""
        alpha = self.alpha
        better = [(concept, test) for concept, test in ((c, w.test()) for c, w in self.windows.items()) if test.second_better(alpha)]
        return min(better, key=lambda found: (found[1].second_error, found[1].p_value), default=None)


class RecurringConcepts:
    """A model key's library of earlier concepts' models and the trial of a new concept (see the module's docstring).

    The engine calls :meth:`learned` after each labelled event, :meth:`leave`
    with the outgoing model before the strategy's boundary, :meth:`enter`
    after it, and :meth:`score` for each labelled event while :attr:`trial`
    is not ``None``; an operator's rollback calls :meth:`reinstate`.
    """

    def __init__(self, settings: ConceptReuse, spec: LearnerSpec, task: Task) -> None:
        self.settings = settings
        self.spec = spec
        self.task = task
        self.library = ConceptLibrary(settings.size)
        self.origin = 0  # the library entry the live model belongs to
        self.trial: ShadowTrial | None = None
        self._models: dict[int, Learner] = {}  # stored models rebuilt for a trial, kept while their entry stays: a rebuild may cost more than the trial
        self.labelled = 0  # labelled events learned
        self.began = 0  # ``labelled`` when the concept began
        self.checkpoints: list[tuple[int, dict[str, Any]]] = []  # the last two copies of the live model, each with ``labelled`` when taken

    def learned(self, learner: Learner) -> None:
        """``learner``, the live model, learned one more labelled event: every ``checkpoint_every``, its state is copied."""
        self.labelled += 1
        every = self.settings.checkpoint_every
        if every and not self.labelled % every:
            self.checkpoints = [*self.checkpoints[-1:], (self.labelled, _own_state(learner))]

    def leave(self, learner: Learner, detected: bool = True) -> None:
        """A boundary: the outgoing model's state goes into the library.

        ``detected``: a detector found the drift some events late, so the
        older checkpoint (taken after the concept began) is kept, if any; else
        the model as it is.
        """
        self.trial = None
        older = self.checkpoints[0] if len(self.checkpoints) == 2 else None
        self._store(self.origin, older[1] if detected and older is not None and older[0] > self.began else _own_state(learner))
        self.began = self.labelled

    def enter(self, concept: int) -> None:
        """``concept`` starts with the live model the strategy left: the stored models are tried on its first labelled events."""
        self.origin = concept
        self.trial = ShadowTrial({c: self._model(c) for c in self.library.entries}, self.task, self.settings)

    def _store(self, concept: int, state: dict[str, Any]) -> None:
        """``state`` is ``concept``'s model now; the live model's checkpoints are of no use any more."""
        self.library.store(concept, state)
        self._models = {c: model for c, model in self._models.items() if c != concept and c in self.library.entries}
        self.checkpoints = []

    def _model(self, concept: int) -> Learner:
        """``concept``'s stored model, rebuilt from its state once (stored models never learn)."""
        model = self._models.get(concept)
        if model is None:
            model = self._models[concept] = learner_from_state(self.library.entries[concept], self.spec)
        return model

    def score(self, x: dict[Any, Any], live_error: float, error: Callable[[Any], float], live: Learner) -> Reinstated | None:
        """One labelled event of the trial (``live_error``: the live model's; ``error(y_pred)``: a prediction's): a stored model reinstated, if one proved better.

        The reinstated model replaces ``live``, which goes into the library
        as the model of the concept it served; the trial ends.
        """
        trial = self.trial
        if trial is None:
            return None
        found = trial.score(x, live_error, error)
        if found is None:
            if trial.over:
                self.trial = None
            return None
        concept, test = found
        self._swap(concept, live)
        return Reinstated(concept, trial.candidates[concept], evidence_dict(test, trial.alpha))

    def reinstate(self, concept: int, live: Learner) -> Learner:
        """``concept``'s stored model, rebuilt, to replace ``live`` (an operator's rollback to the model that served ``concept``); ``live`` goes into the library.

        Raises ``KeyError`` where the library holds no model of ``concept``.
        """
        learner = self._model(concept)  # before live may take its entry
        self._swap(concept, live)
        return learner

    def _swap(self, concept: int, live: Learner) -> None:
        """``concept``'s model becomes the live one: ``live`` is stored as the model of the concept it served, the trial ends."""
        self.trial = None
        self._models.pop(concept, None)  # it learns from now on
        self.library.use(concept)  # first: storing ``live`` in a full library evicts the least recently used
        self._store(self.origin, _own_state(live))
        self.origin = concept

    def state_dict(self) -> dict[str, Any]:
        trial = self.trial
        return {
            "version": VERSION,
            "library": self.library.state_dict(),
            "origin": self.origin,
            "labelled": self.labelled,
            "began": self.began,
            "checkpoints": [[at, state] for at, state in self.checkpoints],
            "trial": None if trial is None else {"seen": trial.seen, "windows": [[c, w.state_dict()] for c, w in trial.windows.items()]},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], settings: ConceptReuse, spec: LearnerSpec, task: Task) -> RecurringConcepts:
        """The library and trial of ``state`` under this run's settings; the trial's stored models are rebuilt from the library (they never learn)."""
        expect_version(state, "the recurring concepts", VERSION)
        reuse = cls(settings, spec, task)
        reuse.library = ConceptLibrary.from_state(state["library"], settings.size)
        reuse.origin, reuse.labelled, reuse.began = state["origin"], state["labelled"], state["began"]
        reuse.checkpoints = [(at, checkpoint) for at, checkpoint in state["checkpoints"]]
        trial = state["trial"]
        if trial is not None and all(c in reuse.library.entries and w["size"] == settings.window for c, w in trial["windows"]):  # else this run's settings drop the trial
            candidates = {c: reuse._model(c) for c, _ in trial["windows"]}
            reuse.trial = ShadowTrial(candidates, task, settings, {c: PairedWindow.from_state(w) for c, w in trial["windows"]}, trial["seen"])
        return reuse


def _own_state(learner: Learner) -> dict[str, Any]:
    """A copy of ``learner``'s state that its further learning cannot change (a torch ``state_dict`` shares the live tensors)."""
    return copy.deepcopy(learner.state_dict())
