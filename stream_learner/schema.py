"""What a model key has learned to expect: the kind of its labels and classes, and of each feature.

One record must not change what later records get. A single string label
among integer ones leaves a Hoeffding tree comparing ``'yes' < 1`` on
every later event. So the engine checks each event (and each delayed
label) against its key's :class:`Schema` *before* the model sees it, to
predict as well as to learn; one that contradicts it becomes a dead letter
(reason ``schema``) whose error names the field and both types.

Kinds:

* A label is a ``bool``, a number (``int`` or ``float``) or a ``str``. The
  kind is fixed by the first label learned. Integers and floats mix: ``1``
  and ``1.0`` are one class for Python's equality and hashing, so for river's
  class dictionaries too, and a JSON producer may write either. A
  regression model's labels are numbers, always.
* A feature is numeric (``bool``, ``int``, ``float``: river treats all three
  as numbers) or categorical (``str``), fixed by the first labelled event
  that carries it.

New features and new classes stay allowed, river learns them, up to a
limit: a key learns at most :data:`~stream_learner.events.MAX_CLASSES`
classes and ``max_features`` features (``--max-features``), since a model
keeps state per class and per feature and one record could otherwise carry
tens of thousands of names (a Hoeffding tree keeps tens of kilobytes per
feature). Only the labelled events the model accepts (learned, or held out
for forgetting measurement) shape the schema; a prediction-only event is
checked against it but adds nothing.

>>> schema = Schema("classification")
>>> schema.learn({"x": 1.0, "colour": "red"}, 1)
>>> schema.problem({"x": 2, "colour": "blue", "new": "ok"}, 0.0) is None
True
>>> schema.problem({"x": 1.0}, "yes")
"label is str ('yes') but this key's labels are int"
>>> schema.problem({"x": "2"}, None)
"feature 'x' is str ('2') but this key has learned it as a number"
>>> schema.problem({"colour": 3}, 1)
"feature 'colour' is int (3) but this key has learned it as a string (categorical)"
>>> Schema("regression").problem({"x": 1.0}, True)
'label is bool (True) but a regression model learns numbers'
>>> Schema("classification", max_features=2).problem({"x": 1.0, "y": 2.0, "z": 3.0}, 1)
'the event brings 3 features this key has not learned, 3 in all: over the limit of 2 (--max-features)'
"""

from __future__ import annotations

from typing import Any

from stream_learner.events import MAX_CLASSES, MAX_FEATURES
from stream_learner.learners.base import Task
from stream_learner.state import expect_version, sorted_values

_NUMBER = (int, float)
_KIND_NAMES = {bool: "bool", str: "str"}
_LABEL_TYPES = {t.__name__: t for t in (bool, int, float, str)}


def _label_kind(label: Any) -> type:
    """``bool``, ``str``, or ``int`` standing for any number."""
    kind = type(label)
    return kind if kind is bool or kind is str else int


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Schema:
    """One model key's label kind, class set and feature kinds.

    Its state (:meth:`state_dict`) goes into snapshots and Bytewax
    recovery with the learner's. The learner step first tries
    a quick, sufficient test on each event (its label a known class of the
    same type, every feature a known numeric one, no string among the
    values); only an event that fails it goes to :meth:`problem`, which
    words what is wrong; :meth:`learn` records what a labelled event added.
    """

    __slots__ = ("classifier", "classes", "numeric", "categorical", "max_features")

    def __init__(self, task: Task, max_features: int = MAX_FEATURES) -> None:
        self.classifier = task == "classification"
        self.max_features = max_features  # a setting of the run, not state: a key restored under a lower one keeps what it learned
        self.classes: dict[Any, type] = {}  # class -> its label's type, the first seen (a regression model keeps none)
        self.numeric: set[Any] = set()
        self.categorical: set[Any] = set()

    def state_dict(self) -> dict[str, Any]:
        """The classes (each with its label's type, by name) and the feature kinds, as plain values."""
        return {
            "version": 1,
            "classifier": self.classifier,
            "classes": [[label, kind.__name__] for label, kind in self.classes.items()],
            "numeric": sorted_values(self.numeric),
            "categorical": sorted_values(self.categorical),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], max_features: int = MAX_FEATURES) -> Schema:
        """The schema :meth:`state_dict` describes, learning at most ``max_features`` features."""
        expect_version(state, "the schema", 1)
        schema = cls("classification" if state["classifier"] else "regression", max_features)
        schema.classes = {label: _LABEL_TYPES[kind] for label, kind in state["classes"]}
        schema.numeric = set(state["numeric"])
        schema.categorical = set(state["categorical"])
        return schema

    def fits(self, x: dict[Any, Any], y: Any) -> bool:
        """A quick, sufficient test that ``x`` and ``y`` fit: ``False`` means :meth:`problem` has the last word.

        The label a known class of its type (a regression model's: a number),
        every feature a known numeric one, and no string among the values.

        >>> schema = Schema("classification")
        >>> schema.learn({"x": 1.0}, True)
        >>> schema.fits({"x": 0.5}, True), schema.fits({"x": 0.5}, None), schema.fits({"x": 0.5}, 1), schema.fits({"y": 0.5}, None)
        (True, True, False, False)
        """
        if y is not None:
            if self.classifier:
                if self.classes.get(y) is not type(y):
                    return False
            elif type(y) is not float and type(y) is not int:
                return False
        if not self.numeric.issuperset(x):
            return False
        try:
            sum(x.values())  # raises on a string among the values
        except (TypeError, OverflowError):
            return False
        return True

    def problem(self, x: dict[Any, Any], y: Any) -> str | None:
        """Why ``x`` or ``y`` contradicts this schema, in one line; ``None`` when they do not."""
        if y is not None:
            problem = self.label_problem(y)
            if problem is not None:
                return problem
        numeric, categorical = self.numeric, self.categorical
        for name, value in x.items():
            if type(value) is str:
                if name in numeric:
                    return f"feature {_show(name)} is str ({_show(value)}) but this key has learned it as a number"
            elif name in categorical:
                return f"feature {_show(name)} is {type(value).__name__} ({_show(value)}) but this key has learned it as a string (categorical)"
        learned = len(numeric) + len(categorical)
        if learned + len(x) > self.max_features:  # else even every feature new stays within the limit
            new = sum(1 for name in x if name not in numeric and name not in categorical)
            if learned + new > self.max_features:
                return f"the event brings {new:,} features this key has not learned, {learned + new:,} in all: over the limit of {self.max_features:,} (--max-features)"
        return None

    def label_problem(self, y: Any) -> str | None:
        """Why label ``y`` contradicts this schema, in one line; ``None`` when it does not."""
        if not self.classifier:
            if type(y) is bool or not isinstance(y, _NUMBER):
                return f"label is {type(y).__name__} ({_show(y)}) but a regression model learns numbers"
            return None
        if not self.classes:
            return None
        if y not in self.classes and len(self.classes) >= MAX_CLASSES:  # every prediction carries a probability per class
            return f"label {_show(y)} would be this key's class {len(self.classes) + 1:,}, over the limit of {MAX_CLASSES:,}"
        kind = _label_kind(y)
        known = {_label_kind(label): t for label, t in self.classes.items()}
        if kind in known:
            return None
        names = sorted({_KIND_NAMES.get(t, t.__name__) for t in self.classes.values()})
        return f"label is {type(y).__name__} ({_show(y)}) but this key's labels are {' or '.join(names)}"

    def learn(self, x: dict[Any, Any], y: Any) -> None:
        """Record the features and label of an accepted labelled event (one :meth:`problem` found nothing in)."""
        self.learn_label(y)
        self.learn_features(x)

    def learn_label(self, y: Any) -> None:
        """Record a class (a regression model keeps none)."""
        if self.classifier and y not in self.classes:
            self.classes[y] = type(y)

    def learn_features(self, x: dict[Any, Any]) -> None:
        """Record the kinds of the features of ``x`` not seen before."""
        numeric, categorical = self.numeric, self.categorical
        for name, value in x.items():
            if name not in numeric and name not in categorical:
                (categorical if type(value) is str else numeric).add(name)
