"""The checks catch what they are named for: each fails a strategy built to break its rule, naming itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream_learner.checks import CheckFailed, check_strategy, list_checks


def _run(strategy: str, check: str) -> str:
    (found,) = [c for c in list_checks(strategy) if c.name == check]
    with pytest.raises(CheckFailed) as failed:
        found()
    return str(failed.value)


@pytest.mark.parametrize(
    ("strategy", "check", "why"),
    [
        ("checks_forgetful", "snapshot_round_trip_is_exact", "the restored learner learned differently"),
        ("checks_hoarder", "memory_stays_bounded", "the state grew from"),
        ("checks_shared", "clones_are_independent", "a copy's learning changed the original"),
        ("checks_impure", "predicting_is_pure", "predicting the same events twice gave different predictions"),
    ],
)
def test_a_check_fails_the_strategy_that_breaks_its_rule(broken: None, strategy: str, check: str, why: str) -> None:
    family = "river" if strategy == "checks_impure" else "torch"
    message = _run(strategy, check)
    assert message.startswith(f"check {check!r} failed for strategy {strategy!r} with a {family} learner: {why}")


def test_check_strategy_names_the_first_check_that_fails(broken: None) -> None:
    import broken_strategies

    with pytest.raises(CheckFailed, match="^check 'memory_stays_bounded' failed for strategy 'checks_hoarder'"):
        check_strategy(broken_strategies.Hoarder)


def test_a_strategy_class_not_registered_is_one_clear_failure() -> None:
    from strategies import TorchStrategy

    class Unlisted(TorchStrategy):
        """Not declared under the entry points."""

    with pytest.raises(CheckFailed, match="^check 'registered' failed: .*Unlisted is not registered under the 'stream_learner.strategies' entry points"):
        check_strategy(Unlisted)


def test_params_override_unit_test_params() -> None:
    (check,) = [c for c in list_checks("ensemble", {"n_models": 3}) if c.name == "predicting_is_pure"]
    assert check.spec.strategy_params == {"n_models": 3} and check.spec.model == "logreg"
    assert [c.spec.strategy_params for c in list_checks("ensemble")][0] == {"n_models": 2}


def test_importing_the_checks_imports_no_pytest() -> None:
    script = "import sys, stream_learner.checks; print('pytest' in sys.modules, '_pytest' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False"]
