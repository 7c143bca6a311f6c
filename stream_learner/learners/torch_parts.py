"""The torch learner's parts, each with one job: features to rows, a running scaler, the class map, the lookahead cache, the output layer.

:class:`~stream_learner.learners.torch.TorchLearner` composes them; each keeps
its own state as plain values and tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from stream_learner.errors import ConfigError


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


class RunningScaler:
    """Column means and standard deviations over every row learned, merged one micro-batch at a time (Chan et al.'s parallel update).

    A column that never varied is shifted, not divided by zero.

    >>> scaler = RunningScaler()
    >>> scaler.update(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    >>> scaler.apply(torch.tensor([[2.0, 5.0], [4.0, 6.0]])).tolist()
    [[0.0, 0.0], [1.4142135381698608, 1.0]]
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = torch.zeros(0)
        self.m2 = torch.zeros(0)  # sums of squared deviations from the mean
        self.std = torch.ones(0)

    def update(self, x: torch.Tensor) -> None:
        """Merge a batch of rows into the statistics."""
        n_b = x.shape[0]
        if self.count == 0:
            self.mean = torch.zeros(x.shape[1])
            self.m2 = torch.zeros(x.shape[1])
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / total)
        self.count = total
        var = self.m2 / max(total - 1, 1)
        self.std = torch.where(var > 1e-12, var.sqrt(), torch.ones_like(var))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def state(self) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.count, self.mean, self.m2, self.std

    @classmethod
    def from_state(cls, state: Sequence[Any]) -> RunningScaler:
        scaler = cls()
        scaler.count, scaler.mean, scaler.m2, scaler.std = state
        return scaler


class ClassMap:
    """Labels to output rows, in the order the labels first arrived.

    >>> classes = ClassMap(max_classes=2)
    >>> classes.index("b"), classes.index("a"), classes.index("b"), classes.labels
    (0, 1, 0, ['b', 'a'])
    >>> classes.index("c")
    Traceback (most recent call last):
    ...
    ValueError: more than max_classes=2 distinct labels
    """

    def __init__(self, max_classes: int, labels: Iterable[Any] = ()) -> None:
        self.max_classes = max_classes
        self.labels: list[Any] = list(labels)
        self._rows = {label: i for i, label in enumerate(self.labels)}

    def index(self, label: Any) -> int:
        """The label's row; a new label takes the next one."""
        row = self._rows.get(label)
        if row is None:
            if len(self.labels) >= self.max_classes:
                raise ValueError(f"more than max_classes={self.max_classes} distinct labels")
            row = self._rows[label] = len(self.labels)
            self.labels.append(label)
        return row

    def __len__(self) -> int:
        return len(self.labels)


Prediction = tuple[Any, dict[Any, float] | None]
Served = tuple[list[float], Prediction]
"""An announced event's encoded row and its prediction."""


class LookaheadCache:
    """Predictions of announced events from one forward pass over those up to the next model change.

    The learner announces the feature dicts it will be asked for next
    (:meth:`announce`); :meth:`serve` answers one of them from a chunk
    predicted together, recomputed when the model's ``key`` changed or the
    event lies outside the chunk. Dicts are matched by identity. Not part of
    the learner's state: it only saves forward passes.

    >>> cache = LookaheadCache()
    >>> xs = [{"a": 1}, {"a": 2}]
    >>> cache.announce(xs)
    >>> chunk = lambda batch: [([x["a"]], (x["a"], None)) for x in batch]
    >>> cache.serve(xs[1], key=(0,), until_update=5, predict_chunk=chunk), cache.serve({"a": 2}, (0,), 5, chunk)
    (([2], (2, None)), None)
    """

    def __init__(self) -> None:
        self._xs: list[dict[Any, Any]] = []
        self._positions: dict[int, int] = {}  # id of an announced dict -> its position
        self._chunk: list[Served | None] = []  # from position _chunk_at on
        self._chunk_at = 0
        self._chunk_key: tuple[Any, ...] | None = None

    @property
    def active(self) -> bool:
        return bool(self._positions)

    def announce(self, xs: Sequence[dict[Any, Any]]) -> None:
        """The dicts to be predicted next, in order (replaces the last announcement)."""
        self._xs = list(xs)
        self._positions = {id(x): i for i, x in enumerate(self._xs)}
        self._chunk = []

    def serve(
        self, x: dict[Any, Any], key: tuple[Any, ...], until_update: int, predict_chunk: Callable[[list[dict[Any, Any]]], list[Served | None]]
    ) -> Served | None:
        """``x``'s row and prediction, or ``None`` to predict it alone.

        ``key`` changes whenever the model or the encoding may have;
        ``until_update`` events from ``x`` on are predicted together.
        """
        at = self._positions.get(id(x))
        if at is None or self._xs[at] is not x:
            return None
        i = at - self._chunk_at
        if key != self._chunk_key or not 0 <= i < len(self._chunk):
            self._chunk = predict_chunk(self._xs[at : at + max(1, until_update)])
            self._chunk_at, self._chunk_key, i = at, key, 0
        return self._chunk[i]


def output_layer(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """``(parent, attribute, layer)`` of the model's last ``nn.Linear`` (``attribute`` empty: the model is that layer)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name, module
    if last is None:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear output layer to grow with new classes")
    name, layer = last
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name) if parent_name else model, attr, layer


def grow_output_layer(
    model: nn.Module, optimizer: torch.optim.Optimizer, width: int, make_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer], copy_row: int | None = None
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model with its output layer widened to ``width`` rows, and a new optimizer that keeps the old one's state.

    Existing rows keep their weights and optimizer state. The added rows
    start as copies of row ``copy_row`` (its optimizer state too), or freshly
    initialised with zero state when ``copy_row`` is ``None``. The model
    returned is ``model`` itself unless it is the output layer.
    """
    parent, attr, old = output_layer(model)
    device = old.weight.device
    new = nn.Linear(old.in_features, width, bias=old.bias is not None).to(device)
    rows = old.out_features
    with torch.no_grad():
        for p_new, p_old in zip(new.parameters(), old.parameters()):
            p_new[:rows] = p_old
            if copy_row is not None:
                p_new[rows:] = p_old[copy_row]
    old_params = list(model.parameters())
    if attr:
        setattr(parent, attr, new)
    else:
        model = new
    grown = make_optimizer(model.parameters())
    for p_old, p_new in zip(old_params, model.parameters()):
        if p_old not in optimizer.state:
            continue
        state = {}
        for name, value in optimizer.state[p_old].items():
            if torch.is_tensor(value) and value.shape == p_old.shape and p_old.shape != p_new.shape:
                widened = torch.zeros_like(p_new)
                widened[:rows] = value
                if copy_row is not None:
                    widened[rows:] = value[copy_row]
                value = widened
            state[name] = value
        grown.state[p_new] = state
    return model, grown
