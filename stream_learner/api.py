"""The Python API: the CLI's engine in a notebook, without Kafka, Bytewax or a dataflow.

An :class:`Engine` is built from the same options as ``stream-learner run``
(model, strategy, detector and their parameters) and fed an iterable of
events: dicts in the input contract (``{"features": ..., "label": ...}``,
optionally ``key``, ``task``, ``id``) or ``(x, y)`` pairs as river's
datasets yield them. Each event is predicted first, then learned from
(test-then-train), one learner per model key, exactly as in a service run.

>>> from river.datasets import synth
>>> engine = Engine(model="hoeffding_tree")
>>> records = list(engine.learn_many(synth.SEA(seed=1).take(3000)))
>>> sum(1 for r in records if r.kind == "prediction")
3000
>>> engine.metrics()["labelled"], engine.metrics()["accuracy"] > 0.9
(3000, True)
>>> engine.predict_one({0: 9.0, 1: 2.0, 2: 3.0}), engine.predict_one({0: 1.0, 1: 2.0, 2: 3.0})
(True, False)

Dicts are validated as the service validates Kafka records: a bad one is a
dead letter with its ``reason``, never an exception.

>>> [r.record["reason"] for r in engine.learn_many([{"features": "not a dict"}])]
['invalid_event']
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from stream_learner.engine import EngineConfig
from stream_learner.errors import ConfigError
from stream_learner.events import DEFAULT_KEY, Event, Origin, dead_letter, decode_event, too_long_field
from stream_learner.learners.base import LearnerSpec
from stream_learner.records import DeadLetterDict, MetricsDict
from stream_learner.slot import Step, new_step

RecordKind = Literal["prediction", "metrics", "drift", "feature_drift", "promotion", "control", "dead_letter"]

SOURCE = "python"
"""The source name in the ids and dead letters of events fed from Python."""


@dataclass(frozen=True)
class Output:
    """One record the engine publishes, with what kind it is.

    ``record`` has the shape of the service's output topics (see the README's
    Contracts): a prediction, a metrics, drift or feature-drift record (its
    ``type`` is the kind), or a dead letter.
    """

    kind: RecordKind
    record: Mapping[str, Any]


class Engine:
    """Test-then-train over events fed from Python, one learner per model key.

    Args:
        model: a preset name (``stream-learner run --help`` lists them), a
            dotted path to a river estimator, or ``torch:mlp`` and the like.
        model_params: the model's constructor arguments.
        strategy: a continual-learning strategy (``stream-learner strategies``).
        strategy_params: the strategy's parameters.
        detector: the drift detector (``adwin``, ``kswin``, ``page_hinkley``,
            ``ddm``, ``eddm``) or ``None``.
        detector_params: the detector's parameters.
        seed: seed of seeded models and of the forgetting samples.
        **options: any other :class:`~stream_learner.engine.EngineConfig`
            field, e.g. ``new_label_gap=100``, ``metrics_every=500``.
    """

    def __init__(
        self,
        model: str = LearnerSpec.model,
        *,
        model_params: dict[str, Any] | None = None,
        strategy: str | None = None,
        strategy_params: dict[str, Any] | None = None,
        detector: str | None = "adwin",
        detector_params: dict[str, Any] | None = None,
        seed: int | None = 42,
        **options: Any,
    ) -> None:
        # snapshots are the service's business: an Engine keeps its learners in memory
        options = {"snapshot_seconds": 0, "snapshot_every": 0, **options}
        self.config = engine_config(model, model_params, strategy, strategy_params, detector, detector_params, seed, source=SOURCE, **options)
        self.learners: dict[str, Step] = {}
        self._fed = 0
        new_step(DEFAULT_KEY, self.config)  # a wrong model, strategy, parameter or challenger fails here, before any event

    def learner(self, key: str = DEFAULT_KEY) -> Step:
        """The learner of one model key (built on first use): with challengers, its slot, whose ``learner`` is the champion's model."""
        learner = self.learners.get(key)
        if learner is None:
            learner = self.learners[key] = new_step(key, self.config)
        return learner

    def learn_one(self, x: dict[Any, Any], y: Any = None, *, key: str = DEFAULT_KEY) -> Any:
        """Predict ``x``, then learn ``(x, y)`` when ``y`` is given; return the prediction made before learning.

        A river user's ``y_pred = model.predict_one(x); model.learn_one(x, y)`` in one call,
        with drift, concepts and forgetting tracked as in a service run.
        """
        out = list(self.learn_many([(x, y)], key=key))
        for item in out:
            if item.kind == "dead_letter":
                raise ValueError(item.record["error"])
        return next(item.record["prediction"] for item in out if item.kind == "prediction")

    def predict_one(self, x: dict[Any, Any], *, key: str = DEFAULT_KEY) -> Any:
        """The current model's prediction for ``x``, learning nothing (``None`` before any learning)."""
        return self.learner(key).learner.predict(x)[0]

    def predict_proba_one(self, x: dict[Any, Any], *, key: str = DEFAULT_KEY) -> dict[Any, float] | None:
        """The current model's class probabilities for ``x``, learning nothing."""
        return self.learner(key).learner.predict(x)[1]

    def learn_many(self, events: Iterable[dict[str, Any] | tuple[dict[Any, Any], Any]], *, key: str = DEFAULT_KEY) -> Iterator[Output]:
        """Test-then-train on each event in order; yield what the service would publish.

        ``events`` holds dicts in the input contract or ``(x, y)`` pairs
        (which go to ``key``). Records come out as the events are processed:
        the iterable may be unbounded.
        """
        for event in events:
            decoded = self._decode(event, key)
            if isinstance(decoded, Event):
                yield from self._step(decoded)
            else:
                yield Output("dead_letter", decoded)

    def metrics(self, key: str = DEFAULT_KEY) -> MetricsDict:
        """The metrics record of one model key now (accuracy, drifts, concepts, forgetting, ...)."""
        return self.learner(key).metrics_record(time.time())

    def finish(self) -> Iterator[Output]:
        """Evaluate every concept's sample once more and yield each key's final metrics (as a service run's end does)."""
        now = time.time()
        for learner in self.learners.values():
            if learner.events:
                yield from _outputs(learner.finish(now).metrics, "metrics")

    def _decode(self, event: dict[str, Any] | tuple[dict[Any, Any], Any], key: str) -> Event | DeadLetterDict:
        """An :class:`Event`, or a dead letter: dicts as the service decodes a record, pairs as river yields them."""
        origin = Origin(SOURCE, 0, self._fed)
        self._fed += 1
        if isinstance(event, tuple):  # river's (x, y): kept as they are (a JSON round trip would turn int feature names into strings)
            x, y = event
            if type(x) is not dict:
                return dead_letter("invalid_event", f"invalid event: features must be a dict, not {type(x).__name__}", repr(event), origin)
            too_long = too_long_field(origin.event_id(), key, y)
            if too_long is not None:
                return dead_letter(too_long[0], f"invalid event: {too_long[1]}", repr(event), origin)
            return Event(origin.event_id(), key, x, y, None, origin.partition, origin.offset)
        try:
            raw = orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:  # a value JSON cannot carry: the service could never have received it
            return dead_letter("invalid_json", f"invalid JSON: {exc}", repr(event), origin)
        return decode_event(raw, origin, self.config.max_record_bytes)

    def _step(self, event: Event) -> Iterator[Output]:
        out = self.learner(event.key).process([event], time.time())
        yield from _outputs(out.dead_letters, "dead_letter")
        yield from _outputs(out.predictions, "prediction")
        for record in out.metrics:
            yield Output(record["type"], record)


def engine_config(
    model: str = LearnerSpec.model,
    model_params: dict[str, Any] | None = None,
    strategy: str | None = None,
    strategy_params: dict[str, Any] | None = None,
    detector: str | None = "adwin",
    detector_params: dict[str, Any] | None = None,
    seed: int | None = 42,
    **options: Any,
) -> EngineConfig:
    """The :class:`~stream_learner.engine.EngineConfig` of the CLI's model, strategy and detector options.

    ``options`` are the other ``EngineConfig`` fields; an unknown one is a :class:`TypeError` naming it.
    ``challengers`` may be given as the CLI's ``--challenger`` specs (see :func:`challenger_specs`).
    """
    spec = LearnerSpec(model, dict(model_params or {}), seed, strategy, dict(strategy_params or {}))
    if "challengers" in options:
        options["challengers"] = tuple(c if isinstance(c, LearnerSpec) else challenger_specs([c], [], seed)[0] for c in options["challengers"])
    return EngineConfig(learner=spec, detector=detector, detector_params=dict(detector_params or {}), **options)


def challenger_specs(specs: Sequence[str], params: Sequence[dict[str, Any]], seed: int | None) -> tuple[LearnerSpec, ...]:
    """The learner specs of challengers given as ``MODEL`` or ``MODEL+STRATEGY`` (``--challenger``), with their model parameters by position.

    >>> [(s.model, s.strategy, s.params) for s in challenger_specs(["arf", "torch:mlp+ewc+replay"], [{"n_models": 3}], seed=1)]
    [('arf', None, {'n_models': 3}), ('torch:mlp', 'ewc+replay', {})]
    """
    if len(params) > len(specs):
        raise ConfigError(f"{len(params)} --challenger-params for {len(specs)} --challenger: one JSON object per challenger, in their order")
    out = []
    for i, spec in enumerate(specs):
        model, _, strategy = spec.partition("+")
        if not model:
            raise ConfigError(f"challenger {spec!r}: MODEL or MODEL+STRATEGY")
        out.append(LearnerSpec(model, dict(params[i]) if i < len(params) else {}, seed=seed, strategy=strategy or None))
    return tuple(out)


def _outputs(records: Iterable[Mapping[str, Any]], kind: RecordKind) -> Iterator[Output]:
    return (Output(kind, record) for record in records)
