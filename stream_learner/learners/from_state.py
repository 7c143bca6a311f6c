"""The learner a state describes: the one way back from ``learner.state_dict()``, for every family.

The state names its family (and, for a river learner with strategies, holds
their states); the run's :class:`~stream_learner.learners.base.LearnerSpec`
names the strategies to load, which are code, not state. Torch is imported
only for a torch learner.

>>> from stream_learner.learners.factory import build_learner
>>> spec = LearnerSpec("logreg", strategy="reset")
>>> learner = build_learner(spec)
>>> learner.learn({"x": 1.0}, True)
>>> type(learner_from_state(learner.state_dict(), spec)).__name__, learner_from_state(learner.state_dict(), spec).predict({"x": 1.0}) == learner.predict({"x": 1.0})
('RiverStrategyLearner', True)
"""

from __future__ import annotations

from typing import Any

from stream_learner.errors import SnapshotError
from stream_learner.learners.base import Learner, LearnerSpec


def learner_from_state(state: dict[str, Any], spec: LearnerSpec) -> Learner:
    """The learner ``state`` (what a learner's ``state_dict()`` returned) describes, with the strategies ``spec`` names.

    Every layout of every family's state names its family (a format-1
    snapshot's too, once converted); a family this release does not know is
    refused in one line, as each family refuses a layout it cannot read.
    """
    family = state["family"]
    if family == "torch":
        from stream_learner.learners.torch import TorchLearner

        return TorchLearner.from_state(state, spec)
    if family != "river":
        raise SnapshotError(f"the learner's state is of the family {family!r}; this release reads river and torch learners (a snapshot of a newer release?)")
    if "strategies" in state:
        from stream_learner.learners.strategy import RiverStrategyLearner

        return RiverStrategyLearner.from_state(state, spec)
    from stream_learner.learners.river import RiverLearner

    return RiverLearner.from_state(state)
