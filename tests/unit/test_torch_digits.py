"""Continual learning actually works through the engine: Split-Digits and Permuted-Digits (one seed, lean).

The quick benchmark, over several seeds, is ``python -m benchmarks.continual_digits``; the full
suite is ``stream-learner bench forgetting`` (benchmarks/README.md). Both use the suite's scenarios
(each task trimmed to whole micro-batches, a 10-way head from the start) and strategy parameters.
"""

from __future__ import annotations

from benchmarks.continual_digits import PERMUTED, SPLIT, run


def test_replay_keeps_old_classes_on_class_incremental_split_digits() -> None:
    naive = run("split", *SPLIT["naive"], seed=0)
    replay = run("split", *SPLIT["replay"], seed=0)
    assert SPLIT["replay"][1]["mem_size"] == 200
    assert naive.average_accuracy < 0.3 and naive.forgetting > 0.8  # naive only knows the last task
    assert replay.average_accuracy >= 0.65 and replay.forgetting <= 0.35  # seed 0: 0.70 / 0.31
    assert len(replay.matrix) == 5 and all(len(row) == 5 for row in replay.matrix)


def test_online_ewc_beats_naive_on_permuted_digits() -> None:
    naive = run("permuted", *PERMUTED["naive"], seed=0)
    ewc = run("permuted", *PERMUTED["ewc"], seed=0)
    assert PERMUTED["ewc"][1]["mode"] == "online"
    assert ewc.average_accuracy > naive.average_accuracy + 0.03
    assert ewc.forgetting < naive.forgetting
