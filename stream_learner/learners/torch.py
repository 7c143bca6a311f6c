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
  optimizer's state.
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
* Its snapshot is a ``state_dict`` tree (model, optimizer, class map,
  encoder, pending events, window, RNG, each strategy's state) serialised
  with ``torch.save`` and loaded with ``torch.load(weights_only=True)``.

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

import contextlib
import importlib
import inspect
import io
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import torch
from torch import nn

from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.learners.base import LearnerSpec, Task
from stream_learner.learners.strategy import STEP_HOOKS, TrainStep, load_strategies, overrides


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


class FeatureEncoder:
    """Feature dicts to rows of floats, with a column order fixed by :meth:`fit`.

    >>> enc = FeatureEncoder(max_categories=2)
    >>> enc.fit({"b": 2.0, "a": True, "c": "red"})
    >>> enc.encode({"a": False, "b": 3, "c": "red"}, grow=True), enc.n_inputs
    ([0.0, 3.0, 1.0, 0.0], 4)
    >>> enc.encode({"c": "blue"}), enc.encode({"c": "green"}, grow=True)
    ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    """

    def __init__(self, max_categories: int = 16) -> None:
        self.max_categories = max_categories
        self.numeric: list[Any] = []
        self.categorical: list[Any] = []
        self.vocab: dict[Any, dict[str, int]] = {}
        self._index: dict[Any, int] = {}
        self.n_inputs = 0
        self.version = 0  # bumped whenever an encoding may change (fit, a new category, load)

    @property
    def fitted(self) -> bool:
        return self.n_inputs > 0

    def fit(self, x: dict[Any, Any]) -> None:
        """Fix the columns from one event's features."""
        names = sorted(x, key=lambda k: (type(k).__name__, k))
        self.numeric = [k for k in names if not isinstance(x[k], str)]
        self.categorical = [k for k in names if isinstance(x[k], str)]
        self.vocab = {k: {} for k in self.categorical}
        self._reindex()

    def _reindex(self) -> None:
        self.version += 1
        self._index = {k: i for i, k in enumerate(self.numeric)}
        base = len(self.numeric)
        for j, k in enumerate(self.categorical):
            self._index[k] = base + j * self.max_categories
        self.n_inputs = base + len(self.categorical) * self.max_categories

    def encode(self, x: dict[Any, Any], grow: bool = False) -> list[float]:
        """One row; ``grow`` lets string features claim new one-hot slots (learning only)."""
        if not self.categorical:  # the common all-numeric case
            row = [x.get(k, 0.0) for k in self.numeric]
            for v in row:
                if type(v) is not float and (isinstance(v, str) or not isinstance(v, (int, float))):
                    return self._encode(x, grow)
            return row
        return self._encode(x, grow)

    def _encode(self, x: dict[Any, Any], grow: bool) -> list[float]:
        row = [0.0] * self.n_inputs
        index = self._index
        for k, v in x.items():
            i = index.get(k)
            if i is None:
                continue
            if isinstance(v, str):
                vocab = self.vocab.get(k)
                if vocab is None:  # a numeric column given a string
                    continue
                slot = vocab.get(v)
                if slot is None:
                    if not grow:
                        continue
                    slot = min(len(vocab), self.max_categories - 1)
                    if len(vocab) < self.max_categories:
                        vocab[v] = slot
                        self.version += 1
                row[i + slot] = 1.0
            elif k in self.vocab:
                continue
            else:
                row[i] = float(v)
        return row

    def state(self) -> dict[str, Any]:
        return {"max_categories": self.max_categories, "numeric": list(self.numeric), "categorical": list(self.categorical), "vocab": {k: dict(v) for k, v in self.vocab.items()}}

    def load(self, state: dict[str, Any]) -> None:
        self.max_categories = state["max_categories"]
        self.numeric = list(state["numeric"])
        self.categorical = list(state["categorical"])
        self.vocab = {k: dict(v) for k, v in state["vocab"].items()}
        self._reindex()


def output_layer(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """``(parent, attribute, layer)`` of the model's last ``nn.Linear``."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name, module
    if last is None:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear output layer to grow with new classes")
    name, layer = last
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name) if parent_name else model, attr, layer


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


class TorchLearner:
    """Test-then-train with a PyTorch network and continual-learning strategies.

    Build it with :func:`build_torch_learner`.
    """

    family = "torch"
    task: Task = "classification"

    def __init__(self, spec: LearnerSpec, options: TorchOptions, factory: Callable[..., nn.Module], factory_params: dict[str, Any], strategies: list[Any]) -> None:
        self.spec = spec
        self.options = options
        self.factory = factory
        self.factory_params = factory_params
        self.strategies = strategies
        self._hooks = {name: [getattr(s, name) for s in strategies if overrides(s, name)] for name in STEP_HOOKS}
        self._owner = next((s for s in strategies if overrides(s, "train_step")), None)
        if options.threads and torch.get_num_threads() != options.threads:
            torch.set_num_threads(options.threads)
        self.device = resolve_device(options.device)
        self._off_cpu = self.device.type != "cpu"
        self.encoder = FeatureEncoder(options.max_categories)
        self.classes: list[Any] = []
        self._class_index: dict[Any, int] = {}
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._outputs = 0  # the output layer's width
        self._version = 0  # bumped whenever the model (or the scaler) changes
        self._ahead: dict[int, int] = {}  # lookahead: id of an announced dict -> its position
        self._ahead_xs: list[dict[Any, Any]] = []
        self._chunk: list[Any] = []  # lookahead: encoded rows and predictions from _chunk_at on
        self._chunk_at = 0
        self._chunk_key: tuple[int, int, int] = (-1, 0, 0)
        self.criterion = nn.CrossEntropyLoss()
        self.pending: list[tuple[list[float], int]] = []
        self._last: tuple[Any, Any] = (None, None)
        self.window: deque[tuple[torch.Tensor, int, int]] = deque(maxlen=options.window)
        self.concept = 0
        self.updates = 0
        self._count = 0
        self._mean = torch.zeros(0)
        self._m2 = torch.zeros(0)
        self._std = torch.ones(0)
        seed = 0 if spec.seed is None else spec.seed
        self._rng_state = torch.Generator().manual_seed(seed).get_state()

    # -- the Learner protocol -------------------------------------------------

    def predict(self, x: dict[Any, Any]) -> tuple[Any, dict[Any, float] | None]:
        """The most probable class and every class's probability; ``(None, None)`` before any learning."""
        if self.model is None:
            return None, None
        if self._ahead:
            served = self._serve(x)
            if served is not None:
                return served
        encoded = self.encoder.encode(x)
        self._last = (x, encoded)  # learn(x, y) right after reuses it (not part of the state)
        return self._predict_rows([encoded])[0]

    def predict_many(self, xs: Sequence[dict[Any, Any]]) -> list[tuple[Any, dict[Any, float] | None]]:
        """``[predict(x) for x in xs]`` in one forward pass (the same up to float rounding); changes nothing."""
        if self.model is None:
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
        self._ahead_xs = list(xs)
        self._ahead = {id(x): i for i, x in enumerate(self._ahead_xs)}
        self._chunk = []

    def _serve(self, x: dict[Any, Any]) -> tuple[Any, dict[Any, float] | None] | None:
        """``x``'s prediction from the announced events' batched forward; ``None`` to predict it alone."""
        at = self._ahead.get(id(x))
        if at is None or self._ahead_xs[at] is not x:
            return None
        key = (self._version, len(self.classes), self.encoder.version)
        i = at - self._chunk_at
        if key != self._chunk_key or not 0 <= i < len(self._chunk):
            self._chunk = self._predict_chunk(self._ahead_xs[at : at + max(1, self.until_update)])
            self._chunk_at, self._chunk_key, i = at, key, 0
        served = self._chunk[i]
        if served is None:
            return None
        self._last = (x, served[0])
        return served[1]

    def _predict_chunk(self, xs: list[dict[Any, Any]]) -> list[tuple[list[float], tuple[Any, Any]] | None]:
        """Encoded rows and predictions of ``xs``; all ``None`` if any fails (each then fails or not alone)."""
        encode = self.encoder.encode
        try:
            rows = [encode(x) for x in xs]
            return list(zip(rows, self._predict_rows(rows)))
        except Exception:  # noqa: BLE001 - a bad event must fail by itself, as without the lookahead
            return [None] * len(xs)

    def _predict_rows(self, rows: list[list[float]]) -> list[tuple[Any, dict[Any, float]]]:
        """One forward pass over encoded rows; each row's best class and probabilities."""
        x = torch.from_numpy(np.array(rows, dtype=np.float32))
        if self.options.scale:
            x = (x - self._mean) / self._std
        if self._off_cpu:
            x = x.to(self.device)
        classes = self.classes
        with torch.no_grad():
            probs = torch.softmax(self.model(x)[:, : len(classes)], 1).tolist()
        return [(classes[p.index(max(p))], dict(zip(classes, p))) for p in probs]

    def learn(self, x: dict[Any, Any], y: Any) -> None:
        """Buffer one labelled event; train when a micro-batch is full."""
        if y is None:
            return
        index = self._class_index.get(y)
        if index is None:
            if len(self.classes) >= self.options.max_classes:
                raise ValueError(f"more than max_classes={self.options.max_classes} distinct labels")
            index = self._class_index[y] = len(self.classes)
            self.classes.append(y)
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
        if self.model is not None and self.window:
            x = torch.stack([row for row, _, _ in self.window]).to(self.device)
            y = torch.tensor([c for _, c, _ in self.window], dtype=torch.long, device=self.device)
            t = torch.tensor([k for _, _, k in self.window], dtype=torch.long, device=self.device)
            with self._rng():
                self.model.train()
                for strategy in self.strategies:
                    strategy.on_boundary(x, y, t)
                self.model.eval()
            self._version += 1
        self.window.clear()
        self.concept = concept

    def clone(self) -> TorchLearner:
        """A fresh, untrained learner built from the same spec."""
        return build_torch_learner(self.spec)

    # -- training -------------------------------------------------------------

    @contextlib.contextmanager
    def _rng(self) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self._rng_state)
        try:
            yield
        finally:
            self._rng_state = torch.get_rng_state()
            torch.set_rng_state(outer)

    def _flush(self) -> None:
        if not self.pending:
            return
        rows = [r for r, _ in self.pending]
        labels = [c for _, c in self.pending]
        self.pending = []
        x = torch.from_numpy(np.array(rows, dtype=np.float32))
        if self.options.scale:
            self._update_scaler(x)
            x = (x - self._mean) / self._std
        self.window.extend(zip(x.unbind(0), labels, repeat(0)))
        with self._rng():
            if self.model is None:
                self._build(self.encoder.n_inputs, len(self.classes))
            elif self._outputs < len(self.classes):
                self._grow(len(self.classes))
            self._step(x.to(self.device), torch.tensor(labels, dtype=torch.long, device=self.device), torch.zeros(len(labels), dtype=torch.long, device=self.device))

    def _update_scaler(self, x: torch.Tensor) -> None:
        n_b = x.shape[0]
        if self._count == 0:
            self._mean = torch.zeros(x.shape[1])
            self._m2 = torch.zeros(x.shape[1])
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        total = self._count + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / total)
        self._m2 = self._m2 + m2_b + delta**2 * (self._count * n_b / total)
        self._count = total
        var = self._m2 / max(total - 1, 1)
        self._std = torch.where(var > 1e-12, var.sqrt(), torch.ones_like(var))

    def _step(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> None:
        model, optimizer, hooks = self.model, self.optimizer, self._hooks
        model.train()
        step = TrainStep(model, optimizer, self.criterion, x, y, task, new=x.shape[0])
        for replay_samples in hooks["replay_samples"]:
            extra = replay_samples(step)
            if extra is not None and len(extra[0]):
                step.x = torch.cat([step.x, extra[0].to(self.device)])
                step.y = torch.cat([step.y, extra[1].to(self.device)])
                step.task = torch.cat([step.task, extra[2].to(self.device)])
        for before_step in hooks["before_step"]:
            before_step(step)
        if self._owner is not None:
            step.loss = self._owner.train_step(step)
        else:
            optimizer.zero_grad(set_to_none=True)
            step.logits = model(step.x)
            loss = step.loss = self.criterion(step.logits, step.y)
            for penalty in hooks["penalty"]:
                term = penalty(step)
                if term is not None:
                    loss = loss + term
            loss.backward()
            for after_backward in hooks["after_backward"]:
                after_backward(step)
            optimizer.step()
        for after_step in hooks["after_step"]:
            after_step(step)
        model.eval()
        self.updates += 1
        self._version += 1

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.options
        params = self.model.parameters()
        if o.optimizer == "adam":
            return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def _build(self, n_inputs: int, n_classes: int) -> None:
        model = self.factory(n_inputs, max(n_classes, 1), **self.factory_params)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model factory {self.spec.model!r} returned {type(model).__name__}, not a torch.nn.Module")
        self._outputs = output_layer(model)[2].out_features
        self.model = model.to(self.device)
        self.optimizer = self._make_optimizer()
        for strategy in self.strategies:
            strategy.setup(self.model, self.optimizer, self.criterion, self.device)
        self.model.eval()
        self._version += 1

    def _grow(self, n_classes: int) -> None:
        """Widen the output layer to ``n_classes``, keeping weights and optimizer state."""
        parent, attr, old = output_layer(self.model)
        new = nn.Linear(old.in_features, n_classes, bias=old.bias is not None).to(self.device)
        with torch.no_grad():
            new.weight[: old.out_features] = old.weight
            if old.bias is not None:
                new.bias[: old.out_features] = old.bias
        old_params = list(self.model.parameters())
        old_state = self.optimizer.state
        if attr:
            setattr(parent, attr, new)
        else:  # the network is a single nn.Linear
            self.model = new
        new_params = list(self.model.parameters())
        self.optimizer = self._make_optimizer()
        for p_old, p_new in zip(old_params, new_params):
            if p_old not in old_state:
                continue
            state = {}
            for name, value in old_state[p_old].items():
                if torch.is_tensor(value) and value.shape == p_old.shape and p_old.shape != p_new.shape:
                    grown = torch.zeros_like(p_new)
                    grown[tuple(slice(0, s) for s in value.shape)] = value
                    value = grown
                state[name] = value
            self.optimizer.state[p_new] = state
        for strategy in self.strategies:
            strategy.setup(self.model, self.optimizer, self.criterion, self.device)
        self._outputs = n_classes
        self._version += 1

    # -- snapshots ------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next prediction and update, as tensors and plain containers."""
        window = list(self.window)
        return {
            "n_inputs": self.encoder.n_inputs,
            "n_outputs": self._outputs,
            "model": self.model.state_dict() if self.model is not None else None,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "encoder": self.encoder.state(),
            "classes": list(self.classes),
            "pending": [(list(r), c) for r, c in self.pending],
            "window_x": torch.stack([r for r, _, _ in window]) if window else torch.zeros(0),
            "window_y": [c for _, c, _ in window],
            "window_t": [k for _, _, k in window],
            "scaler": (self._count, self._mean, self._m2, self._std),
            "rng": self._rng_state,
            "concept": self.concept,
            "updates": self.updates,
            "strategies": [s.state_dict() for s in self.strategies],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a learner built from the same spec."""
        self.encoder.load(state["encoder"])
        self.classes = list(state["classes"])
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        self.pending = [(list(r), c) for r, c in state["pending"]]
        self._count, self._mean, self._m2, self._std = state["scaler"]
        self.concept, self.updates = state["concept"], state["updates"]
        self.window.clear()
        if len(state["window_y"]):
            self.window.extend(zip(state["window_x"], state["window_y"], state["window_t"]))
        if state["model"] is not None:
            with self._rng():
                self._build(state["n_inputs"], state["n_outputs"])
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if len(state["strategies"]) != len(self.strategies):
                raise SnapshotError("snapshot holds state for a different set of strategies")
            for strategy, s_state in zip(self.strategies, state["strategies"]):
                strategy.load_state_dict(s_state)
            self.model.eval()
        self._rng_state = state["rng"]
        self._version += 1

    def __getstate__(self) -> dict[str, Any]:
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return {"spec": self.spec, "state": buffer.getvalue()}

    def __setstate__(self, data: dict[str, Any]) -> None:
        fresh = build_torch_learner(data["spec"])
        self.__dict__.update(fresh.__dict__)  # includes an empty predict-to-learn row cache
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
