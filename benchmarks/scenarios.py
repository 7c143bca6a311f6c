"""The forgetting benchmark's scenarios: seeded, offline, each a list of tasks with held-out test sets.

* ``split-digits``: scikit-learn's bundled ``load_digits`` (1,797 8x8 images,
  no download), a seeded 70/30 split, 5 tasks of 2 classes, class-incremental:
  one 10-way head, no task id at prediction. Seed 0 takes the classes in
  order (0-1, 2-3, ...); every other seed in its own order
  (:func:`class_order`), so results over seeds do not hang on one order.
* ``split-digits-task``: the same stream, task-incremental: the task id is
  known at prediction, so a prediction is the most probable class *among
  the task's two classes* (the logits are masked to the task's classes; the
  training is the class-incremental one, unchanged).
* ``permuted-digits``: 5 tasks over all 10 classes, the identity and 4 fixed
  pixel permutations (domain-incremental).
* ``split-mnist1d``: MNIST-1D (``mnist1d.data.make_dataset``, 4,000 train and
  1,000 test sequences of 40 values), generated locally, never downloaded,
  5 tasks of 2 classes, class-incremental, the classes in each seed's order
  as in Split-Digits.
* ``split-digits-mlp``, ``split-digits-mlp-scaled`` (and, outside the
  default set, the same for ``split-mnist1d`` and ``permuted-digits``): the
  stream of the scenario named first, learned by the engine's default
  learner ``torch:mlp`` instead of the fixed-head MLP: its output layer
  grows with the classes (one row ahead, the next class's), inputs as they
  come (``-mlp``) or standardised with running statistics (``-mlp-scaled``,
  the learner's own default). Same hidden layer, learning rate and
  micro-batch as the fixed-head runs, so the head and the scaling are the
  only differences; Avalanche's loop has no counterpart for them.
* ``sea``, ``agrawal``, ``hyperplane``, ``rbf``: river drift streams through
  :class:`connectors.synthetic.SyntheticSource` (4 concepts), for river
  learners; each concept's test set is drawn from a fresh copy of that
  concept's generator, past every sample the stream itself used.

Each task's training events are trimmed to a multiple of the micro-batch
size, so the engine (which updates every ``batch_size`` events) and
Avalanche's loop (which ends each epoch with a short batch) train on exactly
the same batches. Nothing here runs at import time.

>>> sorted(SCENARIOS)[:3]
['agrawal', 'hyperplane', 'permuted-digits']
>>> SCENARIOS["split-digits-task"].task_aware, SCENARIOS["sea"].family
(True, 'river')
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Callable

import numpy as np

BATCH = 10
"""The micro-batch size of every torch scenario (and of Avalanche's loop)."""

TORCH_MODEL = "torch:benchmarks.scenarios:mlp"
TORCH_PARAMS: dict[str, Any] = {"hidden": [256], "outputs": 10, "lr": 0.1, "batch_size": BATCH, "scale": False, "threads": 1}
"""The network (MLP n-256-10, ten outputs from the start) and learner settings: SGD lr 0.1, micro-batch 10, one pass."""
_GROWING = {k: v for k, v in TORCH_PARAMS.items() if k != "outputs"}
LEARNERS: dict[str, tuple[str, dict[str, Any]]] = {
    "fixed": (TORCH_MODEL, TORCH_PARAMS),
    "mlp": ("torch:mlp", {**_GROWING, "scale": False}),
    "mlp-scaled": ("torch:mlp", {**_GROWING, "scale": True}),
}
"""A torch scenario's learner: the fixed-head MLP, or the default ``torch:mlp`` (a head growing with the classes) on raw or standardised inputs."""

RIVER_MODEL = "logreg"


def mlp(n_inputs: int, n_classes: int, hidden: list[int] | int = (256,), outputs: int = 10) -> Any:  # type: ignore[assignment]
    """The benchmark's network: the engine's ``torch:mlp`` with ``outputs`` units from the start.

    Avalanche's loop uses the same class with the same seed, so both start
    from the same weights (the engine's head would otherwise grow one class
    at a time).

    >>> mlp(64, 2, hidden=[8]).head.out_features
    10
    """
    from stream_learner.learners.torch import MLP

    return MLP(n_inputs, max(n_classes, outputs), hidden=hidden)


@dataclass(frozen=True)
class Task:
    """One task: training events in stream order, and a held-out test set.

    ``x_*`` are float arrays (torch scenarios) or lists of feature dicts
    (river scenarios); ``classes`` are the labels of the task.
    """

    x_train: Any
    y_train: list[Any]
    x_test: Any
    y_test: list[Any]
    classes: tuple[Any, ...]


@dataclass(frozen=True)
class Scenario:
    """A named benchmark scenario: how to build its tasks for a seed, and for which learner family."""

    name: str
    family: str
    description: str
    build: Callable[[int], list[Task]] = field(repr=False)
    task_aware: bool = False
    limit: int = 0
    """At most this many training (and test) events per task; 0 for all."""
    learner: str = "fixed"
    """A torch scenario's learner, a key of :data:`LEARNERS`."""
    stream: str = ""
    """The scenario whose stream this one learns with another learner; empty: its own."""
    in_default: bool = True
    """Run when no scenario is named (``--scenarios all`` runs every one)."""

    @property
    def model(self) -> str:
        return LEARNERS[self.learner][0] if self.family == "torch" else RIVER_MODEL

    def model_params(self, tasks: list[Task]) -> dict[str, Any]:
        """The learner's parameters; the boundary window covers a whole task, as Avalanche's experience does."""
        if self.family != "torch":
            return {}
        return {**LEARNERS[self.learner][1], "window": max(len(t.y_train) for t in tasks)}

    def tasks(self, seed: int) -> list[Task]:
        """The tasks for ``seed`` (cached per process)."""
        return _cached_tasks(self.stream or self.name, seed, self.limit)


def limited(scenario: Scenario, limit: int) -> Scenario:
    """``scenario`` with at most ``limit`` training and test events per task (0: unchanged).

    >>> [len(t.y_train) for t in limited(SCENARIOS["split-digits"], 25).tasks(0)]
    [20, 20, 20, 20, 20]
    """
    return replace(scenario, limit=limit) if limit else scenario


def _trim(n: int) -> int:
    return n // BATCH * BATCH


def _digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.7 * len(y))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def class_order(seed: int, n_classes: int = 10) -> list[int]:
    """The order in which a split scenario's classes arrive: 0, 1, 2... for seed 0, a seeded permutation otherwise.

    >>> class_order(0)
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> class_order(1) != class_order(0) and sorted(class_order(1)) == class_order(0)
    True
    """
    if seed == 0:
        return list(range(n_classes))
    return [int(c) for c in np.random.default_rng(seed + 3).permutation(n_classes)]


def _split(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, seed: int, n_tasks: int = 5) -> list[Task]:
    rng = np.random.default_rng(seed + 2)
    arrival = class_order(seed, 2 * n_tasks)
    tasks = []
    for k in range(n_tasks):
        classes = (arrival[2 * k], arrival[2 * k + 1])
        tr, te = np.flatnonzero(np.isin(ytr, classes)), np.flatnonzero(np.isin(yte, classes))
        order = rng.permutation(tr)[: _trim(len(tr))]
        tasks.append(Task(xtr[order], [int(v) for v in ytr[order]], xte[te], [int(v) for v in yte[te]], classes))
    return tasks


def split_digits(seed: int) -> list[Task]:
    """Split-Digits: 5 tasks of 2 classes."""
    return _split(*_digits(seed), seed)


def permuted_digits(seed: int, n_tasks: int = 5) -> list[Task]:
    """Permuted-Digits: the identity and ``n_tasks - 1`` fixed pixel permutations, all 10 classes each."""
    xtr, ytr, xte, yte = _digits(seed)
    perms = np.random.default_rng(seed + 1)
    order_rng = np.random.default_rng(seed + 2)
    tasks = []
    for k in range(n_tasks):
        perm = np.arange(xtr.shape[1]) if k == 0 else perms.permutation(xtr.shape[1])
        order = order_rng.permutation(len(ytr))[: _trim(len(ytr))]
        tasks.append(Task(xtr[order][:, perm], [int(v) for v in ytr[order]], xte[:, perm], [int(v) for v in yte], tuple(range(10))))
    return tasks


def mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D generated locally with its standard arguments (``get_dataset_args()``, seed 42).

    ``make_dataset`` only computes; ``get_dataset`` (which may download) is
    never called. It seeds numpy's and ``random``'s global generators, so
    their states are restored afterwards. ``mnist1d.utils`` imports pyplot,
    so the Agg backend is selected first.
    """
    import matplotlib

    matplotlib.use("Agg")
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return (data["x"].astype(np.float64), data["y"].astype(int), data["x_test"].astype(np.float64), data["y_test"].astype(int))


def split_mnist1d(seed: int) -> list[Task]:
    """Split-MNIST-1D: 5 tasks of 2 classes; the seed orders the stream."""
    return _split(*_mnist1d_cached(), seed)


@lru_cache(maxsize=1)
def _mnist1d_cached() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return mnist1d_arrays()


RIVER_EVERY = 2000
RIVER_CONCEPTS = 4
RIVER_TEST = 500


def river_stream(generator: str, seed: int, every: int = RIVER_EVERY, concepts: int = RIVER_CONCEPTS, n_test: int = RIVER_TEST) -> list[Task]:
    """A river drift stream cut into its concepts; test sets from fresh copies of each concept's generator."""
    from itertools import islice

    from connectors.synthetic import GENERATORS, SyntheticSource

    source = SyntheticSource(generator, seed=seed, every=every, concepts=concepts)
    events = list(islice(source.read_from(0), source.max_events))  # read_from itself is endless; the partition bounds it
    total = len(events)
    tasks = []
    for k in range(concepts):
        chunk = events[k * every : (k + 1) * every]
        test = list(islice(iter(GENERATORS[generator](seed, k)), total, total + n_test))
        labels = sorted({e.label for e in chunk} | {y for _, y in test}, key=str)
        tasks.append(
            Task([_str_keys(e.features) for e in chunk], [e.label for e in chunk], [_str_keys(x) for x, _ in test], [y for _, y in test], tuple(labels))
        )
    return tasks


def _str_keys(x: dict[Any, Any]) -> dict[str, Any]:
    """Features as a JSON object carries them: string names."""
    return {str(k): v for k, v in x.items()}


def _river(name: str) -> Callable[[int], list[Task]]:
    def build(seed: int) -> list[Task]:
        return river_stream(name, seed)

    return build


def with_default_learner(scenario: Scenario, scaled: bool, in_default: bool) -> Scenario:
    """``scenario``'s stream learned by ``torch:mlp``, whose head grows with the classes, on raw or standardised inputs.

    >>> s = with_default_learner(SCENARIOS["split-digits"], scaled=True, in_default=False)
    >>> s.name, s.model, s.model_params(s.tasks(0))["scale"], "outputs" in s.model_params(s.tasks(0))
    ('split-digits-mlp-scaled', 'torch:mlp', True, False)
    """
    learner = "mlp-scaled" if scaled else "mlp"
    inputs = "inputs standardised with running statistics" if scaled else "inputs as they come"
    description = f"{scenario.description.removesuffix(', one 10-way head')}; the default learner torch:mlp (its head grows with the classes), {inputs}"
    return replace(scenario, name=f"{scenario.name}-{learner}", description=description, learner=learner, stream=scenario.name, in_default=in_default)


_TORCH = [
    Scenario("split-digits", "torch", "Split-Digits, class-incremental: 5 tasks of 2 classes, one 10-way head", split_digits),
    Scenario("split-digits-task", "torch", "Split-Digits, task-incremental: predictions masked to the task's 2 classes", split_digits, task_aware=True),
    Scenario("permuted-digits", "torch", "Permuted-Digits: identity + 4 fixed pixel permutations, 10 classes each", permuted_digits),
    Scenario("split-mnist1d", "torch", "Split-MNIST-1D, class-incremental: 5 tasks of 2 classes (generated locally)", split_mnist1d),
]
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        *_TORCH,
        *[with_default_learner(s, scaled, s.name == "split-digits") for s in _TORCH if s.name != "split-digits-task" for scaled in (False, True)],
        Scenario("sea", "river", f"SEA: {RIVER_CONCEPTS} concepts (variants) of {RIVER_EVERY} events", _river("sea")),
        Scenario("agrawal", "river", f"Agrawal: {RIVER_CONCEPTS} concepts (classification functions) of {RIVER_EVERY} events", _river("agrawal")),
        Scenario("hyperplane", "river", f"Hyperplane: {RIVER_CONCEPTS} concepts (hyperplanes) of {RIVER_EVERY} events", _river("hyperplane")),
        Scenario("rbf", "river", f"RandomRBF: {RIVER_CONCEPTS} concepts (centroid sets) of {RIVER_EVERY} events", _river("rbf")),
    ]
}
"""Every scenario by name."""


@lru_cache(maxsize=8)
def _cached_tasks(name: str, seed: int, limit: int = 0) -> list[Task]:
    tasks = SCENARIOS[name].build(seed)
    if not limit:
        return tasks
    n = max(BATCH, _trim(limit))
    return [Task(t.x_train[:n], t.y_train[:n], t.x_test[:limit], t.y_test[:limit], t.classes) for t in tasks]
