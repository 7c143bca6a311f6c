"""What operators' commands changed in one model key's step: whether learning is paused, and which commands were applied.

A command read twice (a restart that reads the control topic again from an
earlier offset, a command written twice) must act once: the step keeps the
ids of the last :data:`REMEMBERED` commands it applied, in its state, and
answers a repeated one as a duplicate.

>>> operator = Operator()
>>> operator.first_time("c-1"), operator.first_time("c-1")
(True, False)
>>> Operator.from_state(operator.state_dict()).first_time("c-1")
False
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from stream_learner.state import expect_version

REMEMBERED = 1000
"""Command ids a key remembers: far more than operators send within a command's time to live (:data:`stream_learner.control.MAX_AGE`)."""
VERSION = 1


class Operator:
    """Learning paused or not, and the ids of the commands applied (the last :data:`REMEMBERED`)."""

    def __init__(self) -> None:
        self.paused = False
        self._applied: OrderedDict[str, None] = OrderedDict()

    def first_time(self, command_id: str) -> bool:
        """Whether this command was not applied before; it counts as applied from now on."""
        if command_id in self._applied:
            return False
        self._applied[command_id] = None
        if len(self._applied) > REMEMBERED:
            self._applied.popitem(last=False)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "paused": self.paused, "applied": list(self._applied)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Operator:
        expect_version(state, "the operator's state", VERSION)
        operator = cls()
        operator.paused = state["paused"]
        operator._applied = OrderedDict.fromkeys(state["applied"])
        return operator
