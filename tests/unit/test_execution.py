from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from stream_learner.app.execution import execute


def _flow(step, out: list) -> Dataflow:
    flow = Dataflow("t")
    op.output("out", op.map("step", op.input("in", flow, TestingSource(range(5))), step), TestingSink(out))
    return flow


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dataflow_runs_to_its_end_on_one_or_more_workers(workers: int) -> None:
    out: list[int] = []
    execute(_flow(lambda x: x * 2, out), epoch_seconds=1.0, workers=workers)
    assert sorted(out) == [0, 2, 4, 6, 8]


def test_ctrl_c_inside_an_operator_is_a_keyboard_interrupt_not_a_bytewax_error() -> None:
    def interrupted(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(_flow(interrupted, []), epoch_seconds=1.0)


def test_other_errors_keep_their_bytewax_wrapper() -> None:
    def broken(x: int) -> int:
        raise ValueError("boom")

    with pytest.raises(Exception, match="boom|step") as caught:
        execute(_flow(broken, []), epoch_seconds=1.0)
    assert not isinstance(caught.value, KeyboardInterrupt)
