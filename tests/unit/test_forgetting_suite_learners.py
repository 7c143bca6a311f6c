"""The forgetting suite runs the engine's default learner (``torch:mlp``, a growing head) beside the fixed-head MLP, on raw and standardised inputs."""

from __future__ import annotations

from benchmarks.forgetting import plan, run_engine
from benchmarks.scenarios import SCENARIOS, TORCH_MODEL, limited


def test_the_default_learner_scenarios_learn_the_same_streams_with_torch_mlp_raw_and_scaled() -> None:
    fixed, raw, scaled = SCENARIOS["split-digits"], SCENARIOS["split-digits-mlp"], SCENARIOS["split-digits-mlp-scaled"]
    assert fixed.model == TORCH_MODEL and raw.model == scaled.model == "torch:mlp"
    for seed in (0, 1):  # the same tasks, in each seed's class order
        assert [t.y_train for t in raw.tasks(seed)] == [t.y_train for t in fixed.tasks(seed)] == [t.y_train for t in scaled.tasks(seed)]
    tasks = fixed.tasks(0)
    p_fixed, p_raw, p_scaled = fixed.model_params(tasks), raw.model_params(tasks), scaled.model_params(tasks)
    assert "outputs" not in p_raw and p_raw["scale"] is False and p_scaled["scale"] is True
    assert {k: v for k, v in p_fixed.items() if k not in ("outputs", "scale")} == {k: v for k, v in p_raw.items() if k != "scale"}  # the head and the scaling differ, nothing else


def test_the_default_set_runs_the_default_learner_on_split_digits_and_all_runs_every_scenario() -> None:
    default = plan(strategies=["naive"], seeds=1)
    scenarios = {j.scenario for j in default}
    assert {"split-digits", "split-digits-mlp", "split-digits-mlp-scaled"} <= scenarios
    assert not scenarios & {"permuted-digits-mlp", "split-mnist1d-mlp", "split-mnist1d-mlp-scaled"}
    assert {j.scenario for j in plan(["all"], ["naive"], seeds=1)} == set(SCENARIOS)
    avalanche = {j.scenario for j in default if j.mode == "avalanche"}
    assert "split-digits" in avalanche and not any(s.endswith(("-mlp", "-mlp-scaled")) for s in avalanche)  # Avalanche's loop runs the fixed head only


def test_a_default_learner_run_goes_through_the_engine_with_its_growing_head() -> None:
    run = run_engine(limited(SCENARIOS["split-digits-mlp"], 40), "replay", {"mem_size": 50}, 1, "oracle")
    assert run["dead_letters"] == 0 and len(run["matrix"]) == 5 and run["live"]["consistent"] is True
