"""The fidelity column: the same scenario through Avalanche 0.6's own loop.

For each torch strategy the engine runs, the Avalanche counterpart is built
with the same parameters (the engine strategy's defaults filled in) and
trained the way Avalanche users train: ``strategy.train(experience)`` per
task, one epoch, ``train_mb_size`` 10, SGD lr 0.1, the same MLP built right
after Avalanche's ``RNGManager.set_random_seeds(seed)`` (which seeds torch
as the engine's learner does, so both sides start from the same weights,
and also ``random`` and numpy, which some plugins draw from).

* Each experience holds the task's training events in the stream's order
  (a seeded shuffle) and is not reshuffled (``shuffle=False``), so both
  sides see the same micro-batches; only Cumulative, whose union of
  experiences must be mixed, and GDumb, which trains epochs over its
  memory, use Avalanche's default shuffling.
* The online methods (:data:`ONLINE`: ER-ACE, MIR) run as Avalanche runs
  online continual learning: each task is cut into experiences of one
  micro-batch (``train_mb_size`` events), the accuracy row taken after each
  task's last one. Their per-task version stores a whole experience before
  training on it, which a stream cannot do.
* Streaming LDA predicts with ``StreamingLDA.predict`` on the features of
  the MLP's hidden layers (the engine's ``slda`` head has the same input).
  It scores a class not seen yet 0 and sometimes predicts one; the engine
  predicts only classes it has seen, so the two differ before the last task.
* Labels are renumbered in order of first appearance in the stream, which
  is how the engine assigns output units, so "unit k" means the same class
  on both sides.
* Prediction is Avalanche's: the arg-max over all outputs (task-incremental
  scenarios: over the task's classes).

===========================  =========================================================
engine strategy              Avalanche counterpart
===========================  =========================================================
``naive``                    ``Naive``
``replay``                   ``Naive`` + ``ReplayPlugin`` (reservoir or class-balanced storage policy)
``ewc``                      ``EWC`` (``mode``, ``ewc_lambda``, ``decay_factor``)
``lwf``                      ``LwF``
``agem``                     ``AGEM``
``gem``                      ``GEM``
``lamaml``                   ``lamaml_v2.LaMAML``
``cumulative``               ``Cumulative`` (the upper bound the engine strategy streams)
``er_ace``                   ``ER_ACE``, online (an experience per micro-batch)
``mir``                      ``Naive`` + ``MIRPlugin``, online (an experience per micro-batch)
``gdumb``                    ``Naive`` + ``GDumbPlugin`` (``epochs`` epochs of ``batch_size``, shuffled)
``slda``                     ``StreamingLDA`` on the MLP's hidden layers
``avalanche:PLUGIN``         ``Naive`` + that plugin
===========================  =========================================================

>>> sorted(COUNTERPARTS)[:3]
['agem', 'avalanche', 'cumulative']
"""

from __future__ import annotations

import inspect
import time
import warnings
from functools import partial
from typing import Any, Callable

import numpy as np

from benchmarks.scenarios import BATCH, TORCH_PARAMS, Scenario, Task, mlp
from stream_learner.errors import ConfigError
from stream_learner.forgetting import average_accuracy, average_forgetting, bwt


def effective_params(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the engine strategy's own defaults filled in (what the engine really runs)."""
    from stream_learner.learners.strategy import load_class

    cls = load_class(strategy.partition(":")[0])
    defaults = {
        p.name: p.default
        for p in inspect.signature(cls).parameters.values()
        if p.default is not inspect.Parameter.empty and p.name != "target"
    }
    return {**defaults, **params}


def _replay(p: dict[str, Any], kw: dict[str, Any]) -> Any:
    from avalanche.training import Naive
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ClassBalancedBuffer, ReservoirSamplingBuffer

    size = int(p["mem_size"])
    storage = ReservoirSamplingBuffer(size) if p.get("policy", "reservoir") == "reservoir" else ClassBalancedBuffer(size, adaptive_size=True)
    return Naive(**kw, plugins=[ReplayPlugin(size, batch_size_mem=p.get("batch_size_mem"), storage_policy=storage)])


def _ewc(p: dict[str, Any], kw: dict[str, Any]) -> Any:
    from avalanche.training import EWC

    online = p.get("mode", "online") == "online"
    return EWC(**kw, ewc_lambda=float(p["ewc_lambda"]), mode=p.get("mode", "online"), decay_factor=float(p["decay_factor"]) if online else None)


def _lamaml(p: dict[str, Any], kw: dict[str, Any]) -> Any:
    from avalanche.training.supervised.lamaml_v2 import LaMAML

    return LaMAML(**kw, **p)


def _er_ace(p: dict[str, Any], kw: dict[str, Any]) -> Any:
    from avalanche.training.supervised import ER_ACE

    return ER_ACE(**kw, mem_size=int(p["mem_size"]), batch_size_mem=int(p["batch_size_mem"]))


def _mir(p: dict[str, Any], kw: dict[str, Any]) -> Any:
    from avalanche.training import Naive
    from avalanche.training.plugins import MIRPlugin

    return Naive(**kw, plugins=[MIRPlugin(batch_size_mem=int(p["batch_size_mem"]), mem_size=int(p["mem_size"]), subsample=int(p["subsample"]))])


def _gdumb(p: dict[str, Any], kw: dict[str, Any]) -> Any:
    from avalanche.training import Naive
    from avalanche.training.plugins import GDumbPlugin

    return Naive(**{**kw, "train_mb_size": int(p["batch_size"]), "train_epochs": int(p["epochs"])}, plugins=[GDumbPlugin(mem_size=int(p["mem_size"]))])


def _slda(p: dict[str, Any], kw: dict[str, Any]) -> Any:
    from avalanche.training import StreamingLDA

    model = kw["model"]
    return StreamingLDA(
        slda_model=model.body, criterion=kw["criterion"], input_size=model.head.in_features, num_classes=model.head.out_features,
        shrinkage_param=float(p["shrinkage"]), streaming_update_sigma=bool(p["streaming_update_sigma"]),
        train_mb_size=kw["train_mb_size"], train_epochs=1, device=kw["device"], evaluator=kw["evaluator"],
    )


def _plugin(p: dict[str, Any], kw: dict[str, Any], target: str) -> Any:
    from avalanche.training import Naive

    from strategies.avalanche import AvalanchePlugin

    return Naive(**kw, plugins=[AvalanchePlugin._import(target)(**p)])


def _simple(cls_name: str, rename: dict[str, str] | None = None, keep: tuple[str, ...] = ()) -> Callable[[dict[str, Any], dict[str, Any]], Any]:
    def build(p: dict[str, Any], kw: dict[str, Any]) -> Any:
        import avalanche.training as training

        args = {(rename or {}).get(k, k): v for k, v in p.items() if k in keep}
        return getattr(training, cls_name)(**kw, **args)

    return build


COUNTERPARTS: dict[str, Callable[..., Any]] = {
    "naive": _simple("Naive"),
    "replay": _replay,
    "ewc": _ewc,
    "lwf": _simple("LwF", keep=("alpha", "temperature")),
    "agem": _simple("AGEM", {"patterns_per_experience": "patterns_per_exp"}, keep=("patterns_per_experience", "sample_size")),
    "gem": _simple("GEM", {"patterns_per_experience": "patterns_per_exp"}, keep=("patterns_per_experience", "memory_strength")),
    "lamaml": _lamaml,
    "cumulative": _simple("Cumulative"),
    "er_ace": _er_ace,
    "mir": _mir,
    "gdumb": _gdumb,
    "slda": _slda,
    "avalanche": _plugin,
}
"""Engine strategy name to the builder of its Avalanche counterpart."""
ONLINE = frozenset({"er_ace", "mir"})
"""Counterparts trained as Avalanche trains online: one experience per micro-batch."""
SHUFFLED = frozenset({"cumulative", "gdumb"})
"""Counterparts trained with Avalanche's default shuffling (over a union of experiences, or a memory)."""


def has_counterpart(strategy: str) -> bool:
    """Whether the fidelity column can be computed for this engine strategy."""
    return strategy.partition(":")[0] in COUNTERPARTS


def class_order(tasks: list[Task]) -> dict[Any, int]:
    """Labels in order of first appearance in the stream: the engine's output units."""
    order: dict[Any, int] = {}
    for task in tasks:
        for y in task.y_train:
            order.setdefault(y, len(order))
    for task in tasks:  # classes only ever seen in test sets come last
        for y in task.y_test:
            order.setdefault(y, len(order))
    return order


def run_avalanche(scenario: Scenario, strategy: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train ``strategy``'s Avalanche counterpart on ``scenario`` and return the accuracy matrix and timings."""
    import torch

    from strategies._avalanche import window_dataset

    name, _, target = strategy.partition(":")
    if name not in COUNTERPARTS:
        raise ConfigError(f"strategy {strategy!r} has no Avalanche counterpart")
    tasks = scenario.tasks(seed)
    units = class_order(tasks)
    p = effective_params(strategy, params)
    torch.set_num_threads(int(TORCH_PARAMS["threads"]))
    quietly(lambda: _seed_everything(seed))  # Avalanche's own seeding: random, numpy and torch
    n_inputs = np.asarray(tasks[0].x_train).shape[1]
    model = mlp(n_inputs, len(units), hidden=TORCH_PARAMS["hidden"], outputs=TORCH_PARAMS["outputs"])
    optimizer = torch.optim.SGD(model.parameters(), lr=TORCH_PARAMS["lr"])

    def load() -> Any:
        from avalanche.training.plugins import EvaluationPlugin

        kw = dict(model=model, optimizer=optimizer, criterion=torch.nn.CrossEntropyLoss(), train_mb_size=BATCH, train_epochs=1, device="cpu", evaluator=EvaluationPlugin(loggers=[]))
        return COUNTERPARTS[name](p, kw, target) if name == "avalanche" else COUNTERPARTS[name](p, kw)

    template = quietly(load)
    shuffle = name in SHUFFLED
    step = BATCH if name in ONLINE else 0
    datasets, last = [], []  # last: the index of each task's last experience
    for task in tasks:
        x = torch.tensor(np.asarray(task.x_train), dtype=torch.float32)
        y = torch.tensor([units[v] for v in task.y_train], dtype=torch.long)
        for start in range(0, len(y), step or len(y)):
            end = start + (step or len(y))
            datasets.append(window_dataset(x[start:end], y[start:end], torch.zeros(len(y[start:end]), dtype=torch.long)))
        last.append(len(datasets) - 1)

    def build_benchmark() -> Any:
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

        return benchmark_from_datasets(train=datasets)

    experiences = list(quietly(build_benchmark).train_stream)
    tests = [(torch.tensor(np.asarray(t.x_test), dtype=torch.float32), np.array([units[v] for v in t.y_test]), [units[c] for c in t.classes]) for t in tasks]
    # GDumb's plugin gives the template a fresh model at each experience: read the template's, never a name bound before
    score = (lambda x: template.predict(template.model(x))) if name == "slda" else (lambda x: template.model(x))
    matrix: list[list[float]] = []
    seconds = 0.0
    for i, experience in enumerate(experiences):
        started = time.perf_counter()
        quietly(partial(template.train, experience, eval_streams=[], shuffle=shuffle))
        seconds += time.perf_counter() - started
        if i in last:
            matrix.append(_evaluate(template.model, score, tests, scenario.task_aware))
    events = sum(len(t.y_train) for t in tasks)
    plugins = [type(p).__name__ for p in template.plugins if type(p).__name__.endswith("Plugin") and type(p).__name__ != "EvaluationPlugin"]
    return {
        "reference": "+".join([type(template).__name__, *plugins]),
        **summarise(matrix),
        "events": events,
        "seconds": seconds,
        "events_per_second": events / seconds if seconds else None,
    }


def _seed_everything(seed: int) -> None:
    from avalanche.training.determinism.rng_manager import RNGManager

    RNGManager.set_random_seeds(seed)


def quietly(call: Callable[[], Any]) -> Any:
    """Run Avalanche code without its warnings reaching the console.

    Its ``@deprecated`` helpers switch the warning filters to ``always``
    themselves, so ignoring is not enough: the warnings are recorded and dropped.
    """
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("ignore")
        return call()


def _evaluate(model: Any, score: Callable[[Any], Any], tests: list[tuple[Any, np.ndarray, list[int]]], task_aware: bool) -> list[float]:
    """Accuracy of ``score``'s arg-max on each test set, ``model`` in eval mode meanwhile."""
    import torch

    model.eval()
    row = []
    with torch.no_grad():
        for x, y, classes in tests:
            logits = score(x)
            if task_aware:
                allowed = torch.tensor(classes)
                predicted = allowed[logits[:, allowed].argmax(1)].numpy()
            else:
                predicted = logits.argmax(1).numpy()
            row.append(float((predicted == y).mean()))
    model.train()
    return row


def summarise(matrix: list[list[float]]) -> dict[str, Any]:
    """The accuracy matrix ``R[i][j]`` (after task ``i``, on task ``j``) and its three figures.

    Computed with :mod:`stream_learner.forgetting`'s own functions, exactly as
    the engine's live tracker does: task ``j`` counts from the row where it
    was first learned (``R[i][j]`` for ``j > i`` is not "seen" yet), the last
    task is current, and task ``i`` ended at row ``i``.

    >>> s = summarise([[0.9, 0.3], [0.5, 0.8]])
    >>> s["average_accuracy"], s["average_forgetting"], s["bwt"]
    (0.65, 0.4, -0.4)
    """
    rows: list[list[float | None]] = [[v if j <= i else None for j, v in enumerate(r)] for i, r in enumerate(matrix)]
    last = len(rows) - 1
    return {
        "matrix": matrix,
        "average_accuracy": average_accuracy(rows[-1]),
        "average_forgetting": average_forgetting(rows, last),
        "bwt": bwt(rows, last, ends={i: i for i in range(last)}),
    }
