"""The learner's per-micro-batch pattern against Avalanche's own ``strategy.train(experience)``, step by step.

Both sides start from the same MLP (``torch.manual_seed(seed)``, as the
learner seeds its model), use SGD with the same learning rate, micro-batches
of ``B`` events in the stream's order (``train(..., shuffle=False)``) and see
three experiences of ``N = 2 * B`` events, each with every class (so the
learner's output layer never grows and label ``k`` is unit ``k`` on both
sides). The learner is told of each experience's end by ``on_boundary``.

* naive, LwF: identical parameters after every experience.
* EWC (online): identical importances after each boundary and identical
  parameters after every experience (the penalty is Avalanche's own).
* Replay: identical parameters while the buffer is empty, the same events in
  the buffer after the boundary; later the replayed batch is drawn
  differently (the learner: a random permutation of the buffer; Avalanche's
  ``ReplayDataLoader``: the buffer in order), so with the whole buffer
  replayed each step the parameters agree up to float rounding only.
* A-GEM: identical parameters while the memory is empty, the same events
  in memory after the boundary; the reference batch (the whole memory here)
  comes in another order, so later parameters agree up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from strategies._avalanche import _template_module, quietly, window_dataset
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.torch import MLP, TorchLearner

B, N, CLASSES, INPUTS, HIDDEN, LR, SEED = 32, 64, 3, 4, 16, 0.1, 0
_template_module()  # Avalanche's first import, without its import-time warnings


def _experiences() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three domain-shifted, easily learned experiences; the stream's first labels are 0, 1, 2 in order."""
    g = torch.Generator().manual_seed(11)
    out = []
    for k in range(3):
        y = torch.arange(N) % CLASSES
        x = torch.randn(N, INPUTS, generator=g) * 0.3
        x[torch.arange(N), y] += 1.0 + k  # the class shows in its own column, more strongly each experience
        out.append((x.float(), y.long()))
    return out


def _engine(strategy: str | None, params: dict[str, Any]) -> TorchLearner:
    spec = LearnerSpec("torch:mlp", {"hidden": [HIDDEN], "batch_size": B, "lr": LR, "scale": False, "next_class_row": False}, seed=SEED, strategy=strategy, strategy_params=params)
    learner = build_learner(spec)
    assert isinstance(learner, TorchLearner)
    return learner


def _avalanche(build: Callable[..., Any], outputs: int = CLASSES) -> tuple[Any, torch.nn.Module]:
    from avalanche.training.plugins import EvaluationPlugin

    torch.manual_seed(SEED)
    model = MLP(INPUTS, outputs, hidden=[HIDDEN])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    kw = {"model": model, "optimizer": optimizer, "criterion": torch.nn.CrossEntropyLoss(), "train_mb_size": B, "train_epochs": 1, "device": "cpu"}
    return quietly(lambda: build(**kw, evaluator=EvaluationPlugin(loggers=[]))), model


def _train_side_by_side(learner: TorchLearner, template: Any, check: Callable[[int], None]) -> None:
    """Each experience: the learner learns its events one by one, Avalanche trains on it; then ``check(k)``."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    data = _experiences()
    datasets = [window_dataset(x, y, torch.zeros(N, dtype=torch.long)) for x, y in data]
    stream = list(quietly(lambda: benchmark_from_datasets(train=datasets)).train_stream)
    for k, ((x, y), experience) in enumerate(zip(data, stream)):
        for row, label in zip(x.tolist(), y.tolist()):
            learner.learn({f"f{j}": v for j, v in enumerate(row)}, label)
        learner.on_boundary(k + 1)
        quietly(lambda e=experience: template.train(e, eval_streams=[], shuffle=False))
        check(k)


def _same(learner: TorchLearner, model: torch.nn.Module, exact: bool = True) -> None:
    for p, q in zip(learner.model.parameters(), model.parameters()):
        if exact:
            assert torch.equal(p, q), (p - q).abs().max()
        else:
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[tuple[float, ...]]:
    return sorted((*r, float(c)) for r, c in zip(x.tolist(), y.tolist()))


def _buffer(storage: Any) -> tuple[torch.Tensor, torch.Tensor]:
    items = [(item[0], int(item[1])) for item in storage.buffer]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def test_naive_is_avalanches_naive_exactly() -> None:
    from avalanche.training import Naive

    learner = _engine("naive", {})
    template, model = _avalanche(Naive)
    _train_side_by_side(learner, template, lambda k: _same(learner, model))
    assert learner.updates == 3 * N // B


def test_online_ewc_has_avalanches_importances_and_parameters_exactly() -> None:
    from avalanche.training import EWC

    learner = _engine("ewc", {"mode": "online", "ewc_lambda": 50.0, "decay_factor": 0.9})
    template, model = _avalanche(lambda **kw: EWC(**kw, ewc_lambda=50.0, mode="online", decay_factor=0.9))
    theirs = next(p for p in template.plugins if type(p).__name__ == "EWCPlugin")

    def check(k: int) -> None:
        _same(learner, model)
        ours = learner.strategies[0].plugins[0]
        mine, avalanche = ours.importances[max(ours.importances)], theirs.importances[k]
        assert mine.keys() == avalanche.keys()
        for name in mine:
            assert torch.equal(mine[name].data, avalanche[name].data), name
            assert torch.equal(ours.saved_params[max(ours.saved_params)][name].data, theirs.saved_params[k][name].data)

    _train_side_by_side(learner, template, check)


def test_lwf_is_avalanches_lwf_exactly() -> None:
    from avalanche.training import LwF

    learner = _engine("lwf", {"alpha": 2.0, "temperature": 2.0})
    template, model = _avalanche(lambda **kw: LwF(**kw, alpha=2.0, temperature=2.0))
    _train_side_by_side(learner, template, lambda k: _same(learner, model))
    assert learner.strategies[0].plugins[0].lwf.prev_model is not None


def test_replay_matches_avalanche_until_the_replayed_batches_are_drawn() -> None:
    from avalanche.training import Naive
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ReservoirSamplingBuffer

    size = 2 * N  # the buffer keeps every event of the first two experiences, and all of it is replayed each step
    learner = _engine("replay", {"mem_size": size, "batch_size_mem": size})

    class Reservoir(ReservoirSamplingBuffer):  # type: ignore[misc]
        def update(self, strategy: Any, **kwargs: Any) -> None:
            self.post_adapt(strategy, strategy.experience)  # what ReplayPlugin's call does, without its deprecation warning

    storage = Reservoir(size)
    template, model = _avalanche(lambda **kw: Naive(**kw, plugins=[ReplayPlugin(size, batch_size_mem=size, storage_policy=storage)]))
    data = _experiences()

    def check(k: int) -> None:
        _same(learner, model, exact=k == 0)  # the first experience replays nothing
        if k < 2:
            seen = [torch.cat([x for x, _ in data[: k + 1]]), torch.cat([y for _, y in data[: k + 1]])]
            assert _rows(*learner.strategies[0].memory[:2]) == _rows(*seen) == _rows(*_buffer(storage))

    _train_side_by_side(learner, template, check)


def test_agem_matches_avalanche_until_the_reference_batches_are_drawn() -> None:
    from avalanche.training import AGEM

    learner = _engine("agem", {"patterns_per_experience": N, "sample_size": 3 * N})
    template, model = _avalanche(lambda **kw: AGEM(**kw, patterns_per_exp=N, sample_size=3 * N))
    _train_side_by_side(learner, template, lambda k: _same(learner, model, exact=k == 0))


# -- the online strategies: each micro-batch is one of Avalanche's online experiences ---------------------------

OB = 8  # events per micro-batch (and per online experience)
HEAD = 10  # the online cases run the suite's fixed-width head (torch:benchmarks.scenarios:mlp): it never grows, and Avalanche's is the same


def _online_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Micro-batches of a class-incremental stream: all three classes first (the head starts at three units), then old and new ones apart."""
    g = torch.Generator().manual_seed(5)
    plan = [[0, 1, 2], [0, 1], [0, 1], [0, 1], [2], [2], [1, 2], [2], [0, 2]]
    out = []
    for classes in plan:
        y = torch.tensor([classes[i % len(classes)] for i in range(OB)])
        x = torch.randn(OB, INPUTS, generator=g) * 0.3
        x[torch.arange(OB), y] += 1.0
        out.append((x.float(), y.long()))
    return out


def _online_side_by_side(learner: TorchLearner, template: Any, check: Callable[[int], None]) -> None:
    """Each micro-batch: the learner learns its events one by one, Avalanche trains on it as one experience; then ``check(k)``."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    data = _online_batches()
    datasets = [window_dataset(x, y, torch.zeros(OB, dtype=torch.long)) for x, y in data]
    stream = list(quietly(lambda: benchmark_from_datasets(train=datasets)).train_stream)
    for k, ((x, y), experience) in enumerate(zip(data, stream)):
        for row, label in zip(x.tolist(), y.tolist()):
            learner.learn({f"f{j}": v for j, v in enumerate(row)}, label)
        quietly(lambda e=experience: template.train(e, eval_streams=[], shuffle=False))
        check(k)


def _online_engine(strategy: str, params: dict[str, Any]) -> TorchLearner:
    options = {"hidden": [HIDDEN], "outputs": HEAD, "batch_size": OB, "lr": LR, "scale": False, "next_class_row": False}
    spec = LearnerSpec("torch:benchmarks.scenarios:mlp", options, seed=SEED, strategy=strategy, strategy_params=params)
    learner = build_learner(spec)
    assert isinstance(learner, TorchLearner)
    return learner


def _same_memory(ours: Any, storage: Any) -> None:
    x, y, _ = ours.tensors()
    theirs = [(item[0], int(item[1])) for item in storage.buffer]
    assert len(theirs) == len(y)
    assert torch.equal(x, torch.stack([r for r, _ in theirs])) and y.tolist() == [c for _, c in theirs]


def test_er_ace_is_avalanches_online_er_ace_exactly() -> None:
    from avalanche.training.supervised import ER_ACE

    learner = _online_engine("er_ace", {"mem_size": 10, "batch_size_mem": 4})
    template, model = _avalanche(lambda **kw: ER_ACE(**{**kw, "train_mb_size": OB}, mem_size=10, batch_size_mem=4), HEAD)

    def check(k: int) -> None:
        _same(learner, model)
        _same_memory(learner.strategies[0].memory, template.storage_policy)

    _online_side_by_side(learner, template, check)
    assert len(learner.strategies[0].memory) == 10


def test_mir_is_avalanches_online_mir_exactly() -> None:
    from avalanche.training import Naive
    from avalanche.training.plugins import MIRPlugin

    learner = _online_engine("mir", {"mem_size": 12, "subsample": 6, "batch_size_mem": 3})
    plugin = MIRPlugin(batch_size_mem=3, mem_size=12, subsample=6)
    template, model = _avalanche(lambda **kw: Naive(**{**kw, "train_mb_size": OB}, plugins=[plugin]), HEAD)
    replayed: list[int] = []

    def check(k: int) -> None:
        _same(learner, model)
        _same_memory(learner.strategies[0].memory, plugin.storage_policy)
        replayed.append(plugin.replay_loader is not None)

    _online_side_by_side(learner, template, check)
    assert sum(replayed) >= 4  # the interfered events were chosen and replayed on most micro-batches


def test_gdumb_is_avalanches_gdumb_exactly_with_one_micro_batch_per_experience() -> None:
    """Each micro-batch is an experience ending in a boundary: reset, then Avalanche's shuffled epochs over the same memory."""
    from avalanche.training import Naive
    from avalanche.training.plugins import GDumbPlugin

    learner = _online_engine("gdumb", {"mem_size": 10, "epochs": 2, "batch_size": 4})
    plugin = GDumbPlugin(mem_size=10)
    template, model = _avalanche(lambda **kw: Naive(**{**kw, "train_mb_size": 4, "train_epochs": 2}, plugins=[plugin]), HEAD)
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    data = _online_batches()
    datasets = [window_dataset(x, y, torch.zeros(OB, dtype=torch.long)) for x, y in data]
    stream = list(quietly(lambda: benchmark_from_datasets(train=datasets)).train_stream)
    for k, ((x, y), experience) in enumerate(zip(data, stream)):
        for row, label in zip(x.tolist(), y.tolist()):
            learner.learn({f"f{j}": v for j, v in enumerate(row)}, label)
        learner.on_boundary(k + 1)
        quietly(lambda e=experience: template.train(e, eval_streams=[], shuffle=True))
        _same(learner, template.model)  # GDumb's reset gives Avalanche's template a new model object
        _same_memory(learner.strategies[0].memory, plugin.storage_policy)


def test_slda_has_avalanches_statistics_and_scores() -> None:
    """The engine's head is Avalanche's StreamingLDA over the same features: equal statistics, equal scores to float rounding."""
    from avalanche.training import StreamingLDA

    learner = _online_engine("slda", {"shrinkage": 1e-3})
    torch.manual_seed(SEED)
    body = MLP(INPUTS, HEAD, hidden=[HIDDEN]).body  # the engine's body, built from the same seed
    template = quietly(lambda: StreamingLDA(slda_model=body, criterion=torch.nn.CrossEntropyLoss(), input_size=HIDDEN, num_classes=HEAD, shrinkage_param=1e-3, train_mb_size=OB, device="cpu", evaluator=None))
    _online_side_by_side(learner, template, lambda k: None)
    ours = learner.strategies[0]
    assert torch.equal(ours.means, template.muK) and torch.equal(ours.counts, template.cK) and torch.equal(ours.sigma, template.Sigma)
    x = torch.stack([torch.cat([b[0] for b in _online_batches()])]).squeeze(0)
    with torch.no_grad():
        torch.testing.assert_close(learner.model(x), template.predict(body(x)), rtol=1e-4, atol=1e-4)
    assert ours.updates == 9 * OB
