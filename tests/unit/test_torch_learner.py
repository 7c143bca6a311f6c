"""The torch learner: encoding, class-incremental growth, micro-batches, determinism, snapshots."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import pytest
import torch

from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import ConfigError
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.torch import PRESETS, FeatureEncoder, TorchLearner, output_layer, resolve_device


def _learner(**params: object) -> TorchLearner:
    learner = build_learner(LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 4, **params}, seed=3))
    assert isinstance(learner, TorchLearner)
    return learner


def _stream(n: int, classes: int = 3, offset: int = 0) -> list[tuple[dict[str, float], int]]:
    g = torch.Generator().manual_seed(7 + offset)
    xs = torch.randn(n, 4, generator=g)
    return [({f"f{j}": float(v) for j, v in enumerate(row)}, (int(row[0] > 0) + int(row[1] > 0)) % classes + offset) for row in xs]


def test_encoder_has_a_stable_column_order_and_one_hot_categories() -> None:
    enc = FeatureEncoder(max_categories=2)
    enc.fit({"z": 1.0, "a": "red", "m": True})
    assert enc.numeric == ["m", "z"] and enc.categorical == ["a"]
    assert enc.encode({"z": 2.0, "m": False, "a": "red"}, grow=True) == [0.0, 2.0, 1.0, 0.0]
    assert enc.encode({"a": "blue", "m": True, "z": 1}) == [1.0, 1.0, 0.0, 0.0]  # predicting never grows the vocabulary
    assert enc.vocab == {"a": {"red": 0}}
    enc.encode({"a": "blue"}, grow=True)
    assert enc.encode({"a": "green"}, grow=True) == [0.0, 0.0, 0.0, 1.0]  # overflow shares the last slot
    assert enc.encode({"unseen": 5.0, "z": 3.0}) == [0.0, 3.0, 0.0, 0.0]


def test_list_features_and_bools_go_through_the_fast_path() -> None:
    enc = FeatureEncoder()
    enc.fit({0: 1.0, 1: True, 2: 3})
    assert enc.encode({0: 0.5, 1: False, 2: 7}) == [0.5, False, 7]
    assert torch.tensor([enc.encode({0: 0.5, 1: True})], dtype=torch.float32).tolist() == [[0.5, 1.0, 0.0]]


def test_predicting_before_learning_and_predicting_is_pure() -> None:
    learner = _learner()
    x = {"f0": 1.0, "f1": -1.0, "f2": 0.0, "f3": 2.0}
    assert learner.predict(x) == (None, None)
    for xi, yi in _stream(12):
        learner.learn(xi, yi)
    before = pickle.dumps(learner)
    first = learner.predict(x)
    assert learner.predict(x) == first
    assert pickle.dumps(learner) == before


def test_micro_batches_and_class_incremental_growth_keep_weights() -> None:
    learner = _learner()
    for xi, yi in _stream(8, classes=2):
        learner.learn(xi, yi)
    assert learner.updates == 2 and sorted(learner.classes) == [0, 1]
    head = output_layer(learner.model)[2]
    old_w = head.weight.detach().clone()
    assert head.out_features == 3  # the two classes and the next new class's row
    for xi, yi in _stream(3, classes=1, offset=5):
        learner.learn(xi, yi)
    assert learner.updates == 2 and len(learner.pending) == 3  # not a full micro-batch yet
    learner.learn(*_stream(1, classes=1, offset=5)[0])
    head = output_layer(learner.model)[2]
    assert head.out_features == 4 and learner.classes[-1] == 5
    # the old rows were carried over (then moved by one small SGD step), not re-initialised
    assert (head.weight[:3] - old_w).abs().max() < 0.1
    assert (old_w.abs().max()) > 0.1
    label, proba = learner.predict(_stream(1)[0][0])
    assert set(proba) == {0, 1, 5} and abs(sum(proba.values()) - 1) < 1e-5


def test_growth_keeps_adam_state() -> None:
    learner = _learner(optimizer="adam", lr=0.01)
    for xi, yi in _stream(8, classes=2):
        learner.learn(xi, yi)
    learner.learn(*_stream(1, classes=1, offset=9)[0])
    learner.on_boundary(1)  # flushes the pending event: the head grows to 4
    head = output_layer(learner.model)[2]
    state = learner.optimizer.state[head.weight]
    assert state["exp_avg"].shape == head.weight.shape
    assert state["step"].item() == 3  # two updates before growing, one after


def test_same_seed_same_predictions_and_a_restored_learner_makes_the_same_next_update() -> None:
    data = _stream(40)
    a, b = _learner(), _learner()
    for xi, yi in data[:30]:
        a.learn(xi, yi)
        b.learn(xi, yi)
    x = data[35][0]
    assert a.predict(x) == b.predict(x)
    restored = pickle.loads(pickle.dumps(a))
    assert restored.predict(x) == a.predict(x)
    for xi, yi in data[30:]:
        a.learn(xi, yi)
        restored.learn(xi, yi)
    for p, q in zip(a.model.parameters(), restored.model.parameters()):
        assert torch.equal(p, q)


def test_snapshot_state_loads_with_weights_only() -> None:
    learner = _learner()
    for xi, yi in _stream(10):
        learner.learn(xi, yi)
    blob = learner.__getstate__()["state"]
    state = torch.load(io.BytesIO(blob), weights_only=True)
    assert set(state["model"]) == {k for k, _ in learner.model.state_dict().items()}
    assert state["classes"] == learner.classes and len(state["pending"]) == 2


def test_user_factory_and_a_bare_linear_network() -> None:
    learner = build_learner(LearnerSpec("torch:torch.nn:Linear", {"batch_size": 2}))
    for xi, yi in _stream(6, classes=2) + _stream(2, classes=1, offset=4):
        learner.learn(xi, yi)
    assert isinstance(learner.model, torch.nn.Linear) and learner.model.out_features == 4  # three classes and the next one's row


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("torch:mlp", {"optimizer": "rmsprop"}, "optimizer must be"),
        ("torch:mlp", {"batch_size": 0}, "at least 1"),
        ("torch:mlp", {"widths": [3]}, "bad parameters for model 'torch:mlp'"),
        ("torch:nowhere.at_all:build", {}, "cannot import torch model factory"),
        ("torch:nonsense", {}, "unknown torch model"),
    ],
)
def test_bad_models_are_config_errors(model: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_learner(LearnerSpec(model, params))


def test_too_many_classes_become_dead_letters_in_the_engine() -> None:
    step = KeyedLearner("k", EngineConfig(learner=LearnerSpec("torch:mlp", {"max_classes": 2, "hidden": [4], "batch_size": 2}), detector=None))
    events = [Event(str(i), "k", {"x": float(i)}, f"c{i}", None, 0, i) for i in range(3)]
    out = step.process(events, now=0.0)
    assert len(out.predictions) == 2 and len(out.dead_letters) == 1
    assert "max_classes" in out.dead_letters[0]["error"]


def test_river_models_do_not_import_torch() -> None:
    script = "import sys\nfrom stream_learner.learners.base import LearnerSpec\nfrom stream_learner.learners.factory import build_learner\nbuild_learner(LearnerSpec('logreg'))\nimport stream_learner.engine\nassert 'torch' not in sys.modules, 'torch imported'\nassert 'avalanche' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_device_auto_takes_a_gpu_when_present_and_an_absent_gpu_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _learner(device="cpu").device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="sees 1 CUDA GPU"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _learner().device == torch.device("cpu")  # device="auto"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        _learner(device="cuda")
    with pytest.raises(ConfigError, match="unknown torch device 'gpu0'"):
        _learner(device="gpu0")


def test_predict_many_and_announced_events_give_the_one_by_one_predictions() -> None:
    data = _stream(60)
    one, ahead = _learner(), _learner()
    for xi, yi in data[:10]:
        one.learn(xi, yi)
        ahead.learn(xi, yi)
    xs = [dict(x) for x, _ in data[10:]]
    ahead.lookahead(xs)
    passes = []
    forward = ahead._predict_rows
    ahead._predict_rows = lambda rows: passes.append(len(rows)) or forward(rows)  # type: ignore[method-assign]
    for i, (x, (_, y)) in enumerate(zip(xs, data[10:])):
        expected, got = one.predict(x), ahead.predict(x)
        assert got[0] == expected[0] and got[1] == pytest.approx(expected[1], abs=1e-6)
        if i % 7 != 3:  # some events come unlabelled: the model changes only every 4 labelled ones
            one.learn(x, y)
            ahead.learn(x, y)
        if i == 20:
            one.on_boundary(1)
            ahead.on_boundary(1)
    assert one.updates == ahead.updates > 5
    assert len(passes) < len(xs) / 2 and max(passes) == 4  # one forward pass up to each update (batch_size 4)
    for p, q in zip(one.model.parameters(), ahead.model.parameters()):
        assert torch.equal(p, q)  # learning reused the announced events' encoded rows
    many = one.predict_many(xs[:5])
    assert [m[0] for m in many] == [one.predict(x)[0] for x in xs[:5]]
    assert ahead.predict({"f0": 9.0})[0] is not None  # not announced: predicted alone


def test_announced_events_that_fail_fail_alone_and_new_classes_refresh_the_predictions() -> None:
    learner = _learner()
    for xi, yi in _stream(8, classes=2):
        learner.learn(xi, yi)
    good, bad = {"f0": 1.0, "f1": 0.0, "f2": 0.0, "f3": 0.0}, {"f0": "x", "f1": [1]}
    learner.lookahead([good, bad, good])
    assert learner.predict(good)[0] in (0, 1)
    with pytest.raises(TypeError):
        learner.predict(bad)
    for xi, yi in _stream(4, classes=1, offset=5):
        learner.learn(xi, yi)
    assert set(learner.predict(good)[1]) == {0, 1, 5}  # the grown model, not the announced batch's


def test_the_network_learns_in_train_mode_predicts_in_eval_mode_and_a_custom_train_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    class Frozen(torch.nn.Linear):
        def train(self, mode: bool = True) -> Frozen:
            return super().train(False)

    modes: list[tuple[bool, bool]] = []

    def recorded(n_inputs: int, n_outputs: int) -> torch.nn.Module:
        net = torch.nn.Sequential(Frozen(n_inputs, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, n_outputs))
        net.register_forward_hook(lambda module, args, out: modes.append((net[0].training, net[1].training)))
        return net

    monkeypatch.setitem(PRESETS, "recorded", recorded)
    learner = build_learner(LearnerSpec("torch:recorded", {"batch_size": 4}, seed=3))
    for x, y in _stream(8, classes=2):
        learner.learn(x, y)
    assert modes == [(False, True)] * 2  # two micro-batches, dropout on, the frozen layer left as its train() says
    modes.clear()
    learner.predict(_stream(1)[0][0])
    assert modes == [(False, False)]


def _same_state(a: object, b: object) -> bool:
    """Equal state trees: tensors by value, containers item by item."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("strategy", [None, "ewc", "replay"])
def test_from_state_round_trips_the_state_and_the_next_events(strategy: str | None) -> None:
    spec = LearnerSpec("torch:mlp", {"hidden": [8], "batch_size": 4}, seed=3, strategy=strategy)
    learner = build_learner(spec)
    data = _stream(60)
    for xi, yi in data[:22]:
        learner.learn(xi, yi)
    learner.on_boundary(1)
    for xi, yi in data[22:33]:  # a partial micro-batch pending, a window filling
        learner.learn(xi, yi)
    state = learner.state_dict()
    assert state["version"] == 1 and state["family"] == "torch" and learner.buffered == 3
    restored = TorchLearner.from_state(state, spec)
    assert _same_state(restored.state_dict(), state)
    for xi, yi in data[33:]:
        assert restored.predict(xi) == learner.predict(xi)
        learner.learn(xi, yi)
        restored.learn(xi, yi)
    assert _same_state(restored.state_dict(), learner.state_dict())



def test_drop_buffered_forgets_the_events_not_trained_on_yet() -> None:
    learner, twin = _learner(), _learner()
    data = _stream(14)
    for xi, yi in data[:6]:
        learner.learn(xi, yi)
    for xi, yi in data[:4]:
        twin.learn(xi, yi)
    assert learner.buffered == 2 and learner.drop_buffered() == 2 and learner.buffered == 0
    for xi, yi in data[6:]:  # the next micro-batches train as if the two dropped events never came
        learner.learn(xi, yi)
        twin.learn(xi, yi)
    assert learner.updates == twin.updates == 3
    for p, q in zip(learner.model.parameters(), twin.model.parameters()):
        assert torch.equal(p, q)
