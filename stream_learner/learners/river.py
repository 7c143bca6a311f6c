"""River adapter: any river classifier or regressor, by preset or dotted path.

>>> learner = build_river_learner(LearnerSpec("logreg"))
>>> learner.predict({"x": 1.0})
(False, {False: 0.5, True: 0.5})
>>> learner.learn({"x": 1.0}, True)
>>> learner.predict({"x": 1.0})[0]
True
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from river import base, compose

from stream_learner.errors import ConfigError
from stream_learner.learners.base import LearnerSpec, Task
from stream_learner.state import expect_version, from_river_blob, river_blob


def _preset(module: str, name: str, seeded: bool = False) -> Callable[[dict[str, Any], int | None], Any]:
    def build(params: dict[str, Any], seed: int | None) -> Any:
        cls = getattr(importlib.import_module(module), name)
        if seeded and seed is not None and "seed" not in params:
            params = {**params, "seed": seed}
        return cls(**params)

    build.__doc__ = f"{module}.{name}"
    return build


def _scaled(module: str, name: str) -> Callable[[dict[str, Any], int | None], Any]:
    inner = _preset(module, name)

    def build(params: dict[str, Any], seed: int | None) -> Any:
        from river import preprocessing

        return preprocessing.StandardScaler() | inner(params, seed)

    build.__doc__ = f"river.preprocessing.StandardScaler | {module}.{name}"
    return build


PRESETS: dict[str, Callable[[dict[str, Any], int | None], Any]] = {
    "logreg": _scaled("river.linear_model", "LogisticRegression"),
    "naive_bayes": _preset("river.naive_bayes", "GaussianNB"),
    "hoeffding_tree": _preset("river.tree", "HoeffdingTreeClassifier"),
    "hat": _preset("river.tree", "HoeffdingAdaptiveTreeClassifier", seeded=True),
    "arf": _preset("river.forest", "ARFClassifier", seeded=True),
    "linreg": _scaled("river.linear_model", "LinearRegression"),
    "hoeffding_tree_regressor": _preset("river.tree", "HoeffdingTreeRegressor"),
}
"""Preset names and the river estimator each builds (``--model NAME``).

Parameters (``--model-params``) go to the estimator; the linear models are
preceded by a ``StandardScaler``, as river's own examples do.
"""


class RiverLearner:
    """Wraps one river estimator; predictions are exactly river's own."""

    family = "river"

    def __init__(self, model: Any) -> None:
        if isinstance(model, base.Classifier):
            self.task: Task = "classification"
        elif isinstance(model, base.Regressor):
            self.task = "regression"
        else:
            raise ConfigError(f"{type(model).__name__} is neither a river classifier nor a river regressor")
        self.model = model
        self._proba = self.task == "classification" and _predict_one_is_argmax(model)

    def predict(self, x: dict[Any, Any]) -> tuple[Any, dict[Any, float] | None]:
        if self._proba:
            proba = self.model.predict_proba_one(x)
            if proba:
                return argmax(proba), proba
            return None, None
        if self.task == "classification":
            return self.model.predict_one(x), self.model.predict_proba_one(x) or None
        return self.model.predict_one(x), None

    def learn(self, x: dict[Any, Any], y: Any) -> None:
        """Learn from one labelled example (the model's ``learn_one``)."""
        self.model.learn_one(x, y)

    def on_boundary(self, concept: int) -> None:
        """River models adapt on their own; strategies may act here."""

    def state_dict(self) -> dict[str, Any]:
        """The river model, as one blob."""
        return {"version": 1, "family": self.family, "model": river_blob(self.model)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RiverLearner:
        """The learner :meth:`state_dict` describes."""
        expect_version(state, "the river learner", 1)
        return cls(from_river_blob(state["model"]))


def argmax(proba: dict[Any, float]) -> Any:
    """The first label of highest probability: ``max(proba, key=proba.get)``, at a third of its cost.

    River's ``predict_one`` is that ``max``; a keyed ``max`` calls ``get``
    once per label, while one comparison decides a binary problem. Ties and
    NaN go as with ``max``, which replaces its pick only on a strictly
    greater value.

    >>> argmax({"a": 0.5, "b": 0.5}), argmax({False: 0.2, True: 0.8}), argmax({0: 0.1, 1: 0.6, 2: 0.3})
    ('a', True, 1)
    """
    if len(proba) == 2:
        first, second = proba
        return second if proba[second] > proba[first] else first
    items = iter(proba.items())
    best, top = next(items)
    for label, p in items:
        if p > top:
            best, top = label, p
    return best


def _predict_one_is_argmax(model: Any) -> bool:
    """True when ``predict_one`` is river's default argmax of ``predict_proba_one``.

    A pipeline predicts with its final step, so that step decides.
    """
    if isinstance(model, compose.Pipeline):
        return _predict_one_is_argmax(list(model.steps.values())[-1])
    return type(model).predict_one is base.Classifier.predict_one


def build_river_learner(spec: LearnerSpec) -> RiverLearner:
    """Build from a preset name or a dotted path (``river.tree.HoeffdingTreeClassifier``)."""
    params = dict(spec.params)
    if spec.model in PRESETS:
        factory = PRESETS[spec.model]
        try:
            model = factory(params, spec.seed)
        except TypeError as exc:
            raise ConfigError(f"bad parameters for model {spec.model!r}: {exc}") from None
        return RiverLearner(model)
    cls = _import_dotted(spec.model)
    if spec.seed is not None and "seed" in _init_params(cls) and "seed" not in params:
        params["seed"] = spec.seed
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for model {spec.model!r}: {exc}") from None
    return RiverLearner(model)


def _import_dotted(path: str) -> Any:
    module_name, sep, attr = path.replace(":", ".").rpartition(".")
    if not sep:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"unknown model {path!r}: use a preset ({known}) or a dotted path such as river.tree.HoeffdingTreeClassifier")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import model {path!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"cannot import model {path!r}: {module_name} has no {attr!r}") from None


def _init_params(cls: Any) -> set[str]:
    try:
        return set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return set()
