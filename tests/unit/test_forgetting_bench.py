"""The forgetting suite's pieces: live forgetting through the engine, the fidelity column, scenarios, definitions.

The command itself is smoke-tested in ``tests/integration/test_bench_forgetting.py``;
the full suite is ``stream-learner bench forgetting`` (``benchmarks/README.md``).
"""

from __future__ import annotations

import doctest
import socket

import pytest

from benchmarks import fidelity, forgetting, report, scenarios
from benchmarks.fidelity import run_avalanche, summarise
from benchmarks.forgetting import agreement, plan, run_engine
from benchmarks.scenarios import BATCH, SCENARIOS, limited
from stream_learner.errors import ConfigError, StrategyLoadError


@pytest.mark.parametrize("module", [scenarios, fidelity, forgetting, report])
def test_benchmark_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0


def test_live_forgetting_is_high_for_naive_and_near_zero_for_cumulative_on_split_digits() -> None:
    naive = run_engine(SCENARIOS["split-digits"], "naive", {}, 0, "oracle")
    cumulative = run_engine(SCENARIOS["split-digits"], "cumulative", {}, 0, "oracle")
    for run in (naive, cumulative):
        live = run["live"]
        assert run["dead_letters"] == 0 and run["events"] == run["task_ends"][-1]
        assert len(live["matrix"]) == len(run["matrix"]) == 5  # one live row per task end, like R
        assert live["consistent"] is True  # published figures == the offline formulas on the published matrix
        assert live["close"] is True  # and close to the held-out figures
    # naive: only the last task survives; forgetting shows live, on the metrics records
    assert naive["live"]["average_forgetting"] > 0.8 and naive["average_forgetting"] > 0.8
    assert naive["average_accuracy"] < 0.3 and naive["bwt"] < -0.8
    # cumulative: no forgetting, and it is the upper bound
    assert cumulative["live"]["average_forgetting"] < 0.1 and cumulative["average_forgetting"] < 0.1
    assert cumulative["average_accuracy"] > 0.85
    assert all(0 <= a <= 1 for _, a in naive["curve"]) and naive["curve"][-1][0] == naive["events"]


def test_drift_detected_boundaries_mark_the_task_changes() -> None:
    run = run_engine(SCENARIOS["split-digits"], "naive", {}, 0, "drift")
    ends = run["task_ends"][:-1]
    assert len(run["detections"]) >= 3
    for at in run["detections"]:  # each detection comes shortly after a true task end
        assert any(0 <= at - end <= 120 for end in ends), (at, ends)
    assert run["live"]["consistent"] is True and run["live"]["concepts"] == len(run["detections"]) + 1
    assert run["live"]["close"] is None  # concepts are not tasks: not compared with the held-out matrix


def test_naive_through_the_engine_is_avalanches_own_loop_exactly() -> None:
    """Same MLP, same seed, same batches: the engine's naive run is Avalanche's, to the last digit."""
    tiny = limited(SCENARIOS["split-digits"], 40)
    engine = run_engine(tiny, "naive", {}, 1, "oracle")
    avalanche = run_avalanche(tiny, "naive", {}, 1)
    assert avalanche["reference"] == "Naive"
    assert engine["matrix"] == avalanche["matrix"]


@pytest.mark.parametrize("strategy", ["er_ace", "mir", "slda"])
def test_online_strategies_through_the_engine_are_avalanches_own_online_loop(strategy: str) -> None:
    """ER-ACE and MIR against Avalanche's loop over micro-batch experiences, SLDA against its StreamingLDA: the same accuracy matrix.

    SLDA's is compared once every class is seen: before, Avalanche's StreamingLDA
    scores the unseen classes 0 and sometimes predicts one, the engine predicts
    only classes it has seen.
    """
    tiny = limited(SCENARIOS["split-digits"], 40)
    params = {**forgetting.DEFAULT_PARAMS.get(strategy, {}), **({"mem_size": 30, "subsample": 20} if strategy == "mir" else {})}
    engine = run_engine(tiny, strategy, params, 1, "oracle")
    avalanche = run_avalanche(tiny, strategy, params, 1)
    if strategy == "slda":
        assert engine["matrix"][-1] == pytest.approx(avalanche["matrix"][-1], abs=0.01)  # solved, not pseudo-inverted: to float rounding
    else:
        assert engine["matrix"] == avalanche["matrix"]


def test_split_scenarios_take_the_classes_in_each_seeds_order() -> None:
    orders = [[c for t in SCENARIOS["split-digits"].tasks(seed) for c in t.classes] for seed in range(3)]
    assert orders[0] == list(range(10)) and all(sorted(o) == orders[0] for o in orders) and len({tuple(o) for o in orders}) == 3
    assert [c for t in SCENARIOS["split-mnist1d"].tasks(2) for c in t.classes] == orders[2]


def test_task_incremental_predicts_among_the_tasks_classes() -> None:
    tiny = limited(SCENARIOS["split-digits-task"], 60)
    task = run_engine(tiny, "naive", {}, 0, "oracle")
    single = run_engine(limited(SCENARIOS["split-digits"], 60), "naive", {}, 0, "oracle")
    assert task["average_accuracy"] > single["average_accuracy"] + 0.3  # masking to the task's classes undoes most forgetting
    assert task["live"]["close"] is None  # the engine's own predictions have no task id


def test_scenarios_are_seeded_trimmed_and_split_as_documented() -> None:
    split = SCENARIOS["split-digits"].tasks(0)
    assert [t.classes for t in split] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert all(len(t.y_train) % BATCH == 0 and set(t.y_train) == set(t.classes) == set(t.y_test) for t in split)
    assert scenarios.split_digits(0)[0].y_train == split[0].y_train and scenarios.split_digits(1)[0].y_train != split[0].y_train
    permuted = SCENARIOS["permuted-digits"].tasks(0)
    assert len(permuted) == 5 and all(len(t.classes) == 10 for t in permuted)
    assert sorted(permuted[0].x_test[0]) == sorted(permuted[3].x_test[0]) and list(permuted[0].x_test[0]) != list(permuted[3].x_test[0])
    sea = SCENARIOS["sea"].tasks(0)
    assert [len(t.y_train) for t in sea] == [scenarios.RIVER_EVERY] * scenarios.RIVER_CONCEPTS
    assert len(sea[0].y_test) == scenarios.RIVER_TEST and set(sea[0].x_test[0]) == {"0", "1", "2"}


def test_mnist1d_is_generated_locally_without_any_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("mnist1d tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    x, y, x_test, y_test = scenarios.mnist1d_arrays()
    assert x.shape == (4000, 40) and x_test.shape == (1000, 40) and sorted(set(y.tolist())) == list(range(10))


def test_summary_figures_follow_the_live_definitions() -> None:
    # R[l][j] for a task not yet learned is ignored, as the live tracker never has it
    s = summarise([[0.9, 0.8, 0.7], [0.6, 0.9, 0.9], [0.3, 0.6, 0.9]])
    assert s["average_accuracy"] == pytest.approx(0.6)
    assert s["average_forgetting"] == pytest.approx(((0.9 - 0.3) + (0.9 - 0.6)) / 2)
    assert s["bwt"] == pytest.approx(((0.3 - 0.9) + (0.6 - 0.9)) / 2)


def test_agreement_flags_a_live_figure_that_does_not_follow_from_its_matrix() -> None:
    matrix = [[0.9, None], [0.5, 0.8]]
    live = {"matrix": matrix, "columns": [0, 1], "current": 1, "evaluations": 2, "average_accuracy": 0.65, "average_forgetting": 0.4, "bwt": -0.4}
    offline = {"matrix": [[0.88, 0.1], [0.52, 0.79]], "average_accuracy": 0.655, "average_forgetting": 0.36, "bwt": -0.36}
    good = agreement(live, offline, comparable=True)
    assert good["consistent"] is True and good["close"] is True
    assert good["gap"]["max_cell"] == pytest.approx(0.02)
    bad = agreement({**live, "average_forgetting": 0.3}, offline, comparable=True)
    assert bad["consistent"] is False
    far = agreement(live, {**offline, "average_accuracy": 0.5}, comparable=True)
    assert far["close"] is False
    assert agreement(live, offline, comparable=False)["close"] is None


def test_plan_covers_every_registered_strategy_of_each_family_and_rejects_bad_choices() -> None:
    jobs = plan(["split-digits", "sea"], seeds=3)
    torch_strategies = {j.strategy for j in jobs if j.scenario == "split-digits"}
    assert {"naive", "replay", "ewc", "lwf", "agem", "gem", "lamaml", "cumulative", forgetting.GENERIC_PLUGIN} <= torch_strategies
    assert {"er_ace", "mir", "gdumb", "slda", "rar"} <= torch_strategies
    counterparts = {j.strategy for j in jobs if j.mode == "avalanche"}
    assert {"er_ace", "mir", "gdumb", "slda"} <= counterparts and "rar" not in counterparts  # Avalanche has no repeated augmented rehearsal
    assert {j.strategy for j in jobs if j.scenario == "sea"} >= {"naive", "reset", "ensemble"}
    assert {j.mode for j in jobs if j.scenario == "sea"} == {"oracle", "drift"}  # no Avalanche loop for river learners
    assert len([j for j in jobs if j.scenario == "split-digits" and j.strategy == "replay"]) == 3 * 3
    with pytest.raises(ConfigError, match="unknown scenario 'nope'"):
        plan(["nope"])
    with pytest.raises(StrategyLoadError, match="unknown strategy 'nope'"):
        plan(["sea"], ["nope"])
    with pytest.raises(ConfigError, match="no chosen strategy supports scenario 'sea'"):
        plan(["sea"], ["replay"])
    with pytest.raises(ConfigError, match="--seeds must be at least 1"):
        plan(["sea"], seeds=0)
    with pytest.raises(ConfigError, match="unknown boundaries 'oops'"):
        plan(["sea"], modes=("oops",))
