"""Where a concept ended, when a drift detector says so late.

A drift detector fires some events after the change, once the model has
already learned from the first events of the new concept, so the window a
boundary receives ends with them. :class:`Rewinding` keeps the prequential
errors of the last micro-batches (:class:`Trail`) and at a boundary finds,
within the last ``rewind`` events, where the error rose (:func:`rise_start`,
ADWIN's bound at confidence 0.05); the strategy then consolidates the concept
on the events before that point and, if it asks, with the parameters from
before them (:func:`rewound`). At an explicit task boundary the error does not
rise and nothing changes. ``rewind`` 0 turns it off.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch

from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TrainStep


def rise_start(errors: torch.Tensor, within: int, delta: float = 0.05) -> int:
    """Where the error sequence's last significant rise starts, or ``len(errors)`` when it does not rise.

    Among the cuts in the last ``within`` positions, the one whose later mean
    exceeds the earlier mean by most beyond ADWIN's bound at confidence ``delta``.

    >>> rise_start(torch.tensor([0.0] * 200 + [1.0] * 20), within=100)
    200
    >>> rise_start(torch.tensor([1.0] * 20 + [0.0] * 200), within=100)
    220
    """
    e = errors.double()
    n = len(e)
    if n < 2 or within < 1:
        return n
    total = torch.cumsum(e, 0)
    cut = torch.arange(max(1, n - within), n)
    n0 = cut.double()
    n1 = n - n0
    head = total[cut - 1] / n0
    tail = (total[-1] - total[cut - 1]) / n1
    m = 1 / n0 + 1 / n1
    dd = math.log(2 * math.log(n) / delta)
    bound = torch.sqrt(2 * m * e.var(unbiased=False) * dd) + 2 / 3 * m * dd
    margin = tail - head - bound
    best = int(margin.argmax())
    return int(cut[best]) if margin[best] > 0 else n


class Trail:
    """The current concept's recent micro-batches: their prequential errors and (optionally) the parameters before each update.

    :meth:`concept_end` finds where the errors rose, at a micro-batch start
    within the last ``span`` events, and the parameters from before that
    micro-batch. Parameters (when ``parameters``) are kept for the micro-batches
    of the last ``span`` events, errors for ``8 * span``.
    """

    def __init__(self, span: int, parameters: bool = True) -> None:
        self.span = span
        self.parameters = parameters
        self.batches: deque[list[Any]] = deque()  # [events, errors, parameters before the update (or [])]

    def before(self, model: Any) -> None:
        """A micro-batch starts: keep the parameters it will update."""
        self.batches.append([0, None, [p.detach().clone() for p in model.parameters()] if self.parameters else []])

    def after(self, step: TrainStep) -> None:
        """The micro-batch was learned: keep its prequential errors (the forward pass ran before the update)."""
        entry = self.batches[-1]
        new = step.new
        entry[0] = new
        logits = step.logits
        entry[1] = torch.zeros(new, dtype=torch.bool) if logits is None else (logits[:new].argmax(1) != step.y[:new]).cpu()
        seen = 0
        for entry in reversed(self.batches):
            seen += entry[0]
            if seen > self.span:
                entry[2] = []
        while seen - self.batches[0][0] >= 8 * self.span:
            seen -= self.batches.popleft()[0]

    def concept_end(self, n: int) -> tuple[int, list[torch.Tensor] | None]:
        """How many of the window's ``n`` events precede the rise, and the parameters before them (``None``: no rise, or not kept)."""
        done = [b for b in self.batches if b[1] is not None]
        if not done:
            return n, None
        errors = torch.cat([b[1] for b in done])[-n:]
        reach = 0  # events of the last micro-batches within ``span``
        for b in reversed(done):
            if reach + b[0] > self.span:
                break
            reach += b[0]
        cut = rise_start(errors, min(reach, len(errors)))
        start = len(errors) - sum(b[0] for b in done)  # where the trail starts, in positions of ``errors``
        for entry in done:
            if start + entry[0] > cut:
                keep = n - len(errors) + start
                return (keep, entry[2] or None) if keep > 0 else (n, None)
            start += entry[0]
        return n, None

    def clear(self) -> None:
        self.batches.clear()

    def state_dict(self) -> list[list[Any]]:
        return [[b[0], b[1], list(b[2])] for b in self.batches if b[1] is not None]

    def load_state_dict(self, batches: list[list[Any]]) -> None:
        self.batches = deque([list(b) for b in batches])


@contextmanager
def rewound(model: Any, params: list[torch.Tensor] | None) -> Iterator[None]:
    """Run with the model's parameters set to ``params`` (when given), then put the current ones back.

    The output layer may have grown since ``params`` were kept (new classes
    arrived after the errors rose): its rows that existed then are rewound,
    the rows added since keep their current values.

    >>> layer = torch.nn.Linear(2, 3)
    >>> with rewound(layer, [torch.zeros(2, 2), torch.zeros(2)]):
    ...     layer.bias[:2].tolist(), bool(layer.bias[2] == layer.bias[2])
    ([0.0, 0.0], True)
    """
    if params is None:
        yield
        return
    current = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, v in zip(model.parameters(), params):
            (p if p.shape == v.shape else p[: v.shape[0]]).copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(model.parameters(), current):
                p.copy_(v)


class Rewinding:
    """Mixin for an :class:`~strategies._avalanche.AvalancheStrategy`: its boundary hooks see the concept as it was before the errors rose.

    A strategy calls :meth:`rewinding` in its constructor; with
    ``rewind_parameters`` the boundary hooks also run with the parameters
    from before the rise (the model keeps what it learned since).
    """

    rewind_parameters: ClassVar[bool] = False

    def rewinding(self, rewind: int) -> None:
        if int(rewind) < 0:
            raise ConfigError(f"rewind must not be negative, not {rewind}")
        self.rewind = int(rewind)
        self.trail = Trail(self.rewind, parameters=self.rewind_parameters)

    def before_step(self, step: TrainStep) -> None:
        super().before_step(step)  # type: ignore[misc]
        if self.rewind:
            self.trail.before(step.model)

    def after_step(self, step: TrainStep) -> None:
        super().after_step(step)  # type: ignore[misc]
        if self.rewind:
            self.trail.after(step)

    def on_boundary(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> None:
        """The boundary hooks on the window's events before the errors rose (with the parameters from before them)."""
        keep, params = self.trail.concept_end(len(y))
        self.trail.clear()
        if self.template is None:  # type: ignore[attr-defined]
            return
        with rewound(self.template.model, params):  # type: ignore[attr-defined]
            super().on_boundary(x[:keep], y[:keep], task[:keep])  # type: ignore[misc]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "trail": self.trail.state_dict()}  # type: ignore[misc]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (older layouts are upgraded by :func:`~stream_learner.state.rewinding_state`)."""
        super().load_state_dict(state)  # type: ignore[misc]
        self.trail.load_state_dict(state["trail"])
