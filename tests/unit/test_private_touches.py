"""Each place that touches another library's private names, behind its one named function, tested against the pinned version."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
from kafka import KafkaProducer

from connectors.kafka_producer import ProducerProcess, _Child
from connectors.kafka_records import FAST_PATHS_ENV, fast_paths
from strategies._avalanche import (
    begin_experience,
    dataset_tensors,
    end_experience,
    meta_iteration,
    point_at_window,
    quietly,
    reservoir_weights,
    restore_reservoir,
    window_dataset,
)
from strategies.lamaml import LaMAML, _template_class
from stream_learner.errors import ConfigError
from stream_learner.learners.torch import MLP

# -- kafka-python (pinned >=3.0.12,<3.1) ----------------------------------------------------------


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("0", False)])
def test_the_fast_paths_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(FAST_PATHS_ENV, raising=False)
    else:
        monkeypatch.setenv(FAST_PATHS_ENV, value)
    assert fast_paths() is on


def test_a_bad_fast_paths_value_stops_the_producer_before_its_child_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAST_PATHS_ENV, "yes")
    with pytest.raises(ConfigError, match="^STREAM_LEARNER_KAFKA_FAST_PATHS must be 0 .* or 1 .*, not 'yes'$"):
        ProducerProcess({"bootstrap_servers": ["127.0.0.1:1"]})


class _Unset(KafkaProducer):
    def __del__(self) -> None:  # KafkaProducer's closes what __init__ opened
        pass


def test_the_bulk_append_steps_aside_for_send_where_the_producers_internals_are_not_as_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer without the accumulator and transaction manager it read (as a renamed internal would leave it): send() places every record."""
    monkeypatch.delenv(FAST_PATHS_ENV, raising=False)
    receive, results = multiprocessing.Pipe(duplex=False)
    child = _Child({"bootstrap_servers": ["127.0.0.1:1"]}, "gzip", 5, 30.0, results)
    child.producer = object.__new__(_Unset)  # none of the fields KafkaProducer.__init__ sets
    try:
        assert child._bulk_append() is None
        kind, line = receive.recv()
        assert kind == "warning" and line.startswith("the Kafka producer's fast path stepped aside (AttributeError: "), line
    finally:
        receive.close()
        results.close()


# -- Avalanche (pinned ==0.6.0) -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _avalanche_imported_quietly() -> None:
    """Avalanche's first import warns (deprecations of its dependencies), as the strategies' own first import hides."""
    import importlib

    quietly(lambda: importlib.import_module("avalanche.training.templates"))


def _window(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g), torch.zeros(n, dtype=torch.long)


def test_window_dataset_holds_the_tensors_its_targets_and_task_labels() -> None:
    x, y, t = _window(7, seed=1)
    dataset = window_dataset(x, y, t)
    back = dataset_tensors(dataset)
    assert torch.equal(back[0], x) and torch.equal(back[1], y) and torch.equal(back[2], t)
    assert list(dataset.targets) == y.tolist() and list(dataset.targets_task_labels) == t.tolist()
    assert len(window_dataset(*_window(0, seed=1))) == 0


def test_a_restored_reservoir_replaces_the_same_samples_as_the_original() -> None:
    from avalanche.training.storage_policy import ReservoirSamplingBuffer

    original = ReservoirSamplingBuffer(5)
    quietly(lambda: original.update_from_dataset(window_dataset(*_window(12, seed=2))))
    weights = reservoir_weights(original)
    restored = ReservoirSamplingBuffer(5)
    restore_reservoir(restored, *dataset_tensors(original.buffer), weights.clone())
    weights.zero_()  # a copy: the buffer's own weights are untouched
    later = window_dataset(*_window(12, seed=3))
    for buffer in (original, restored):
        torch.manual_seed(4)
        quietly(lambda b=buffer: b.update_from_dataset(later))
    kept, again = dataset_tensors(original.buffer), dataset_tensors(restored.buffer)
    assert all(torch.equal(a, b) for a, b in zip(kept, again))
    assert torch.equal(reservoir_weights(original), reservoir_weights(restored))


def _lamaml() -> tuple[LaMAML, torch.nn.Module]:
    torch.manual_seed(0)
    model = MLP(4, 3, hidden=[8])
    strategy = LaMAML(**LaMAML.unit_test_params())
    strategy.setup(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(), torch.device("cpu"))
    return strategy, model


def test_meta_iteration_updates_as_avalanches_own_training_epoch() -> None:
    (ours, our_model), (theirs, their_model) = _lamaml(), _lamaml()
    before = [p.detach().clone() for p in our_model.parameters()]
    batch = list(_window(6, seed=5))
    torch.manual_seed(6)
    ours.template.mbatch = batch
    loss = meta_iteration(ours.template)
    torch.manual_seed(6)
    theirs.template.dataloader = [batch]
    theirs.template._stop_training = False
    theirs.template.training_epoch()
    assert torch.isfinite(loss) and any(not torch.equal(a, p) for a, p in zip(before, our_model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(our_model.parameters(), their_model.parameters()))


def test_begin_and_end_experience_run_the_templates_boundary_steps() -> None:
    strategy, model = _lamaml()
    template = strategy.template
    shapes = {name.replace(".", "_"): p.shape for name, p in model.named_parameters()}
    assert {name: a.shape for name, a in template.alpha_params.items()} == shapes  # begin_experience at set-up made them
    x, y, t = _window(9, seed=7)
    point_at_window(template, x, y, t)
    quietly(lambda: end_experience(template))
    assert len(template.buffer.storage_policy.buffer) == 9 and template.clock.train_exp_counter == 1
    template.model = wider = MLP(4, 5, hidden=[8])
    begin_experience(template)
    assert {name: a.shape for name, a in template.alpha_params.items()} == {name.replace(".", "_"): p.shape for name, p in wider.named_parameters()} != shapes


def test_the_private_names_used_exist_in_the_pinned_avalanche() -> None:
    """A renamed private would make an override dead silently: each name the strategies call or override is still Avalanche's."""
    from avalanche.training.storage_policy import ReservoirSamplingBuffer
    from avalanche.training.supervised.lamaml_v2 import LaMAML as AvalancheLaMAML

    steps = ("_before_training_iteration", "_make_empty_loss", "_before_inner_updates", "_inner_updates", "_after_inner_updates",
             "_before_outer_update", "_outer_update", "_after_outer_update", "_after_training_iteration", "_before_training_exp", "_after_training_exp")
    assert all(callable(getattr(AvalancheLaMAML, name, None)) for name in steps)
    assert isinstance(ReservoirSamplingBuffer(3)._buffer_weights, torch.Tensor)
    stream = _template_class()
    assert {"_before_training_exp", "_after_training_exp"} <= {name for cls in stream.__mro__[:3] for name in vars(cls)}


# -- pydantic-settings ----------------------------------------------------------------------------


def test_settings_loaded_at_once_on_many_threads_each_see_their_own_environment_and_file(tmp_path: Path) -> None:
    """No per-call state on the class (the environment and file once went through class attributes under a lock)."""
    from concurrent.futures import ThreadPoolExecutor

    from stream_learner.settings import load_settings

    def load(i: int) -> tuple[int, int, str]:
        config = tmp_path / f"{i}.json"
        config.write_text(json.dumps({"kafka": {"input_topic": f"in-{i}", "linger_ms": 1}}))
        s = load_settings(config, {"kafka": {"linger_ms": i}}, environ={"STREAM_LEARNER_KAFKA__GZIP_LEVEL": str(1 + i % 9)})
        return s.kafka.linger_ms, s.kafka.gzip_level, s.kafka.input_topic

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(load, range(64))) == [(i, 1 + i % 9, f"in-{i}") for i in range(64)]


# -- Bytewax (pinned ==0.21.1) --------------------------------------------------------------------


def test_the_service_runs_dataflows_without_bytewaxs_testing_module() -> None:
    """``bytewax.testing``'s run_main and cluster_main are for unit tests; the service runs through ``bytewax.run.cli_main``."""
    import subprocess
    import sys

    probe = "import sys, stream_learner.app.cli, stream_learner.app.runner, stream_learner.app.kafka_run; print('bytewax.testing' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"
