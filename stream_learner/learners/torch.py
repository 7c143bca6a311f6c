"""PyTorch adapter: a neural classifier that learns from the stream in micro-batches.

``--model torch:mlp`` (or ``torch:linear``) builds a preset network;
``--model torch:mypkg.models:build`` calls ``build(n_inputs, n_classes, **params)``
and must return an ``nn.Module`` whose *last* ``nn.Linear`` is the output layer.

* Features (dict or array) become a tensor with a stable column order fixed
  by the first labelled event (names sorted); string features are one-hot
  encoded over ``max_categories`` slots per feature (the last slot takes
  overflow); features never seen at that point are ignored, missing ones
  are 0. With ``scale`` (default) columns are standardised with running
  statistics updated when learning (never when predicting).
* The class set grows during the stream (class-incremental): an unseen
  label widens the output layer, keeping every existing weight and the
  optimizer's state. The layer keeps one row more than the classes seen
  (``next_class_row``, on unless the strategy asks otherwise): the next new class's row. The loss
  is the cross-entropy over every row, so that row is pushed down on every
  event as a fixed head's unused outputs are, and each new class starts as
  a copy of it, below the classes already learned. (A row added fresh
  starts level with them, and with a loss over the seen classes only it
  soon outscores them all on inputs that are not standardised: replay then
  keeps little more than the last task.) Predictions cover the seen
  classes only. With ``next_class_row`` off the layer grows to exactly the
  classes seen, as Avalanche's ``IncrementalClassifier`` does. A network
  that already has more outputs than classes is a fixed head: its loss
  spans all its outputs and it grows only when the classes outnumber them.
* ``predict`` runs one forward pass under ``torch.no_grad()`` and changes
  nothing (``learn`` of the same dict right after reuses its encoded row
  when all features are numeric). The model changes only at updates, so
  ``predict_many`` answers many events with one forward pass, and events
  announced with ``lookahead`` are predicted together up to the next
  update (the same predictions, up to float rounding). ``learn`` buffers
  events and trains on micro-batches of ``batch_size``, calling only the
  hooks each strategy overrides; a boundary first trains on what is
  pending, then lets the strategies consolidate on a bounded ``window`` of
  the concept that ended.
  The network is single-headed (class-incremental): every sample carries
  task label 0 for the strategies.
* Seeded and deterministic on the CPU: the learner carries its own torch RNG
  state (set around each update, so other keys or libraries do not disturb
  it). It runs on a GPU when one is present (``device="auto"``); naming
  ``cuda`` where torch sees none is a configuration error.
* Its state (:meth:`TorchLearner.state_dict`, ``"version"`` 1) is a tree of
  tensors and plain values (model, optimizer, class map, encoder, scaler,
  pending events, window, RNG, each strategy's state), saved with
  ``torch.save`` and loaded with ``torch.load(weights_only=True)``;
  :meth:`TorchLearner.from_state` rebuilds the learner from it and the spec.

>>> learner = build_torch_learner(LearnerSpec("torch:mlp", {"batch_size": 2, "hidden": [8]}))
>>> learner.predict({"a": 1.0, "b": "x"})
(None, None)
>>> for i in range(6):
...     learner.learn({"a": float(i % 2), "b": "xy"[i % 2]}, ["even", "odd"][i % 2])
>>> learner.classes, learner.updates
(['even', 'odd'], 3)
>>> label, proba = learner.predict({"a": 1.0, "b": "y"})
>>> label in ("even", "odd"), round(sum(proba.values()), 4)
(True, 1.0)
"""

from __future__ import annotations

import importlib
import inspect
import io
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import torch
from torch import nn

from stream_learner.errors import ConfigError
from stream_learner.learners.base import LearnerSpec, Task
from stream_learner.learners.strategy import load_strategies
from stream_learner.learners.torch_parts import (
    ClassMap,
    FeatureEncoder,
    LookaheadCache,
    Prediction,
    RunningScaler,
    Served,
    output_layer,
)
from stream_learner.learners.torch_trainer import MakeOptimizer, MicroBatchTrainer
from stream_learner.state import torch_learner_state

__all__ = ["MLP", "PRESETS", "FeatureEncoder", "TorchLearner", "TorchOptions", "build_torch_learner", "output_layer", "resolve_device"]


@dataclass(frozen=True)
class TorchOptions:
    """The learner's own parameters (the rest of ``--model-params`` go to the network).

    Attributes:
        batch_size: labelled events per update (EWC's importances scale with it,
            so retune ``ewc_lambda`` when changing it).
        lr: learning rate.
        optimizer: ``sgd`` or ``adam``.
        momentum: SGD momentum.
        weight_decay: L2 penalty of the optimizer.
        device: ``auto`` (a GPU when present), ``cpu``, ``cuda``, ``cuda:1``...
        window: labelled events of the current concept kept for the boundary.
        scale: standardise columns with running statistics.
        max_categories: one-hot slots per string feature.
        max_classes: more distinct labels than this is an error (dead letter).
        threads: torch intra-op threads (``torch.set_num_threads``, process-wide);
            micro-batches this small only lose time to more threads, and the
            engine scales by processes. ``0`` leaves torch's setting alone.
        next_class_row: a head the learner grows keeps one row more than the
            classes seen, the next new class's row, in the cross-entropy
            over every row as a fixed head's unused outputs are; each new
            class starts as a copy of it. Off, the head grows to exactly the
            classes seen and the loss spans only them (Avalanche's
            ``IncrementalClassifier``), which forgets badly on inputs that
            are not standardised. Unset (the default): on, unless a strategy
            says otherwise with a ``next_class_row = False`` attribute
            (``er_ace``, ``lamaml``: their own losses keep new classes from
            pushing old ones down, and new classes learn faster from a fresh row).
    """

    batch_size: int = 10
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    device: str = "auto"
    window: int = 500
    scale: bool = True
    max_categories: int = 16
    max_classes: int = 1000
    threads: int = 1
    next_class_row: bool | None = None

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"threads must not be negative, not {self.threads}")
        if self.batch_size < 1 or self.window < 1 or self.max_categories < 1 or self.max_classes < 1:
            raise ConfigError("batch_size, window, max_categories and max_classes must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, not {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', not {self.optimizer!r}")


OPTION_NAMES = frozenset(TorchOptions.__dataclass_fields__)


class MLP(nn.Module):
    """A ReLU multi-layer perceptron; ``forward(x, t=None)`` ignores the task id (La-MAML passes one).

    >>> MLP(4, 3, hidden=[5])(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, n_inputs: int, n_classes: int, hidden: list[int] | int = (256,)) -> None:  # type: ignore[assignment]
        super().__init__()
        sizes = [hidden] if isinstance(hidden, int) else list(hidden)
        layers: list[nn.Module] = []
        width = n_inputs
        for h in sizes:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor, t: Any = None) -> torch.Tensor:
        return self.head(self.body(x))


def _linear(n_inputs: int, n_classes: int) -> nn.Module:
    return MLP(n_inputs, n_classes, hidden=[])


PRESETS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "linear": _linear}
"""Preset networks (``--model torch:NAME``); ``mlp`` takes ``hidden`` (default ``[256]``)."""


def resolve_device(name: str) -> torch.device:
    """``auto``: a CUDA GPU when one is present, else the CPU; otherwise the device named (``cpu``, ``cuda``, ``cuda:1``...).

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"unknown torch device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA GPU here (use device='auto' or 'cpu')")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def optimizer_factory(options: TorchOptions) -> MakeOptimizer:
    """A function building the optimizer ``options`` name over the given parameters."""
    if options.optimizer == "adam":
        return lambda params: torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    return lambda params: torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)


class TorchLearner:
    """Test-then-train with a PyTorch network and continual-learning strategies.

    Build it with :func:`build_torch_learner`. Its parts: a
    :class:`~stream_learner.learners.torch_parts.FeatureEncoder`, a
    :class:`~stream_learner.learners.torch_parts.RunningScaler` (with
    ``scale``), a :class:`~stream_learner.learners.torch_parts.ClassMap`, a
    :class:`~stream_learner.learners.torch_parts.LookaheadCache` and a
    :class:`~stream_learner.learners.torch_trainer.MicroBatchTrainer`; the
    learner itself holds the events not trained on yet, the boundary window
    and the concept.
    """

    family = "torch"
    task: Task = "classification"
    STATE_VERSION = 1

    def __init__(self, spec: LearnerSpec, options: TorchOptions, factory: Callable[..., nn.Module], factory_params: dict[str, Any], strategies: list[Any]) -> None:
        self.spec = spec
        self.options = options
        if options.threads and torch.get_num_threads() != options.threads:
            torch.set_num_threads(options.threads)
        self.device = resolve_device(options.device)
        seed = 0 if spec.seed is None else spec.seed
        next_class_row = options.next_class_row
        if next_class_row is None:
            next_class_row = all(getattr(s, "next_class_row", True) for s in strategies)
        self.trainer = MicroBatchTrainer(spec.model, factory, factory_params, optimizer_factory(options), strategies, self.device, seed, next_class_row)
        self.encoder = FeatureEncoder(options.max_categories)
        self.scaler = RunningScaler() if options.scale else None
        self.class_map = ClassMap(options.max_classes)
        self.lookahead_cache = LookaheadCache()
        self.pending: list[tuple[list[float], int]] = []  # encoded rows and class rows learned, not trained on yet
        self.window: deque[tuple[torch.Tensor, int, int]] = deque(maxlen=options.window)  # (row, class row, task) of the concept
        self.concept = 0
        self._last: tuple[Any, Any] = (None, None)  # predict(x) -> learn(x, y) reuses x's row (not part of the state)

    # -- what strategies, tests and the engine read ----------------------------

    @property
    def model(self) -> nn.Module | None:
        return self.trainer.model

    @property
    def factory(self) -> Callable[..., nn.Module]:
        return self.trainer.factory

    @property
    def factory_params(self) -> dict[str, Any]:
        return self.trainer.factory_params

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return self.trainer.optimizer

    @property
    def criterion(self) -> nn.Module:
        return self.trainer.criterion

    @property
    def strategies(self) -> list[Any]:
        return self.trainer.strategies

    @property
    def updates(self) -> int:
        return self.trainer.updates

    @property
    def classes(self) -> list[Any]:
        """The labels seen, in the order of their output rows."""
        return self.class_map.labels

    @property
    def buffered(self) -> int:
        """Labelled events learned but not trained on yet (they train with the next full micro-batch or boundary)."""
        return len(self.pending)

    def drop_buffered(self) -> int:
        """Forget the events learned but not trained on yet (the rest of a micro-batch whose update failed); how many they were."""
        dropped, self.pending = len(self.pending), []
        return dropped

    # -- the Learner protocol -------------------------------------------------

    def predict(self, x: dict[Any, Any]) -> Prediction:
        """The most probable class and every class's probability; ``(None, None)`` before any learning."""
        if self.trainer.model is None:
            return None, None
        if self.lookahead_cache.active:
            key = (self.trainer.version, len(self.class_map), self.encoder.version)
            served = self.lookahead_cache.serve(x, key, self.until_update, self._predict_chunk)
            if served is not None:
                self._last = (x, served[0])
                return served[1]
        encoded = self.encoder.encode(x)
        self._last = (x, encoded)
        return self._predict_rows([encoded])[0]

    def predict_many(self, xs: Sequence[dict[Any, Any]]) -> list[Prediction]:
        """``[predict(x) for x in xs]`` in one forward pass (the same up to float rounding); changes nothing."""
        if self.trainer.model is None:
            return [(None, None)] * len(xs)
        encode = self.encoder.encode
        return self._predict_rows([encode(x) for x in xs])

    @property
    def until_update(self) -> int:
        """Labelled events ``learn`` takes before the model next changes (a boundary changes it at once)."""
        return self.options.batch_size - len(self.pending)

    def lookahead(self, xs: Sequence[dict[Any, Any]]) -> None:
        """Announce the feature dicts ``predict`` will be asked for next, in order (replaces the last announcement).

        ``predict`` then answers them from one forward pass over the
        announced events up to the next update (:attr:`until_update` of
        them), recomputed after each update, boundary or new class: the
        same predictions as one by one, up to float rounding. Dicts are
        matched by identity; anything else is predicted alone as usual.
        """
        self.lookahead_cache.announce(xs)

    def _predict_chunk(self, xs: list[dict[Any, Any]]) -> list[Served | None]:
        """Encoded rows and predictions of ``xs``; all ``None`` if any fails (each then fails or not alone)."""
        encode = self.encoder.encode
        try:
            rows = [encode(x) for x in xs]
            return list(zip(rows, self._predict_rows(rows)))
        except Exception:  # noqa: BLE001 - a bad event must fail by itself, as without the lookahead
            return [None] * len(xs)

    def _predict_rows(self, rows: list[list[float]]) -> list[Prediction]:
        """One forward pass over encoded rows; each row's best class and probabilities."""
        x = torch.from_numpy(np.array(rows, dtype=np.float32))
        if self.scaler is not None:
            x = self.scaler.apply(x)
        classes = self.class_map.labels
        probs = torch.softmax(self.trainer.forward(x)[:, : len(classes)], 1).tolist()
        return [(classes[p.index(max(p))], dict(zip(classes, p))) for p in probs]

    def learn(self, x: dict[Any, Any], y: Any) -> None:
        """Buffer one labelled event; train when a micro-batch is full."""
        if y is None:
            return
        index = self.class_map.index(y)
        encoder = self.encoder
        if not encoder.fitted:
            encoder.fit(x)
        last_x, row = self._last
        if last_x is not x or encoder.categorical:
            row = encoder.encode(x, grow=True)
        self._last = (None, None)
        self.pending.append((row, index))
        if len(self.pending) >= self.options.batch_size:
            self._flush()

    def on_boundary(self, concept: int) -> None:
        """Train on what is pending, then let each strategy consolidate on the window."""
        self._flush()
        if self.window:
            x = torch.stack([row for row, _, _ in self.window])
            y = torch.tensor([c for _, c, _ in self.window], dtype=torch.long)
            t = torch.tensor([k for _, _, k in self.window], dtype=torch.long)
            self.trainer.consolidate(x, y, t)
        self.window.clear()
        self.concept = concept

    def clone(self) -> TorchLearner:
        """A fresh, untrained learner built from the same spec."""
        return build_torch_learner(self.spec)

    def _flush(self) -> None:
        """Train on the pending events as one micro-batch (scaled with the statistics they update)."""
        if not self.pending:
            return
        rows = [r for r, _ in self.pending]
        labels = [c for _, c in self.pending]
        self.pending = []
        x = torch.from_numpy(np.array(rows, dtype=np.float32))
        if self.scaler is not None:
            self.scaler.update(x)
            x = self.scaler.apply(x)
        self.window.extend(zip(x.unbind(0), labels, repeat(0)))
        self.trainer.train(x, torch.tensor(labels, dtype=torch.long), self.encoder.n_inputs, len(self.class_map))

    # -- state ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next prediction and update, as tensors and plain containers."""
        window = list(self.window)
        scaler = self.scaler or RunningScaler()
        return {
            "version": self.STATE_VERSION,
            "family": self.family,
            "n_inputs": self.encoder.n_inputs,
            **self.trainer.state_dict(),
            "encoder": self.encoder.state(),
            "classes": list(self.class_map.labels),
            "pending": [(list(r), c) for r, c in self.pending],
            "window_x": torch.stack([r for r, _, _ in window]) if window else torch.zeros(0),
            "window_y": [c for _, c, _ in window],
            "window_t": [k for _, _, k in window],
            "scaler": scaler.state(),
            "concept": self.concept,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], spec: LearnerSpec) -> TorchLearner:
        """The learner :meth:`state_dict` describes, built from the run's ``spec``."""
        learner = build_torch_learner(spec)
        learner.load_state_dict(state)
        return learner

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a learner built from the same spec (older layouts are migrated by :mod:`stream_learner.state`)."""
        state = torch_learner_state(state, [type(s) for s in self.strategies])
        self.encoder.load(state["encoder"])
        self.class_map = ClassMap(self.options.max_classes, state["classes"])
        self.pending = [(list(r), c) for r, c in state["pending"]]
        if self.scaler is not None:
            self.scaler = RunningScaler.from_state(state["scaler"])
        self.concept = state["concept"]
        self.window.clear()
        if len(state["window_y"]):
            self.window.extend(zip(state["window_x"], state["window_y"], state["window_t"]))
        self.trainer.load_state_dict(state, state["n_inputs"])

    def __getstate__(self) -> dict[str, Any]:
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return {"spec": self.spec, "state": buffer.getvalue()}

    def __setstate__(self, data: dict[str, Any]) -> None:
        fresh = build_torch_learner(data["spec"])
        self.__dict__.update(fresh.__dict__)
        state = torch.load(io.BytesIO(data["state"]), weights_only=True, map_location=self.device)
        self.load_state_dict(state)


def _import_factory(path: str) -> Callable[..., nn.Module]:
    module_name, sep, attr = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name:
        raise ConfigError(f"unknown torch model {path!r}: use a preset ({', '.join(PRESETS)}) or a factory path such as mypkg.models:build")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import torch model factory {path!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"cannot import torch model factory {path!r}: {module_name} has no callable {attr!r}")
    return factory


def build_torch_learner(spec: LearnerSpec) -> TorchLearner:
    """Build from ``torch:PRESET`` or ``torch:module:factory`` and the spec's strategy."""
    name = spec.model.removeprefix("torch:")
    params = dict(spec.params)
    try:
        options = TorchOptions(**{k: params.pop(k) for k in list(params) if k in OPTION_NAMES})
    except TypeError as exc:
        raise ConfigError(f"bad parameters for model {spec.model!r}: {exc}") from None
    factory = PRESETS.get(name) or _import_factory(name)
    try:
        inspect.signature(factory).bind(1, 1, **params)
    except TypeError as exc:
        known = ", ".join(sorted(OPTION_NAMES))
        raise ConfigError(f"bad parameters for model {spec.model!r}: {exc} (learner parameters: {known})") from None
    except ValueError:
        pass
    strategies = load_strategies(spec.strategy, spec.strategy_params, "torch") if spec.strategy else []
    if not math.isfinite(options.lr):
        raise ConfigError("lr must be finite")
    return TorchLearner(spec, options, factory, params, strategies)
