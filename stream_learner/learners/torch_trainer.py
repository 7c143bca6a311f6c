"""The torch learner's micro-batch trainer: the network, its optimizer and the strategies' hooks.

:class:`MicroBatchTrainer` builds the network when the first micro-batch
arrives, widens its output layer as classes arrive, runs one update per
micro-batch (calling only the hooks each strategy overrides) and lets the
strategies consolidate at a boundary. Every update runs with the trainer's
own torch RNG state, so other keys or libraries drawing from torch's global
generator do not change what it does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from stream_learner.errors import ConfigError, SnapshotError
from stream_learner.learners.strategy import STEP_HOOKS, TrainStep, overrides
from stream_learner.learners.torch_parts import grow_output_layer, output_layer

MakeOptimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class MicroBatchTrainer:
    """Builds, grows and updates a network one micro-batch at a time, with continual-learning strategies.

    Args:
        name: the model's name, for error messages.
        factory: ``factory(n_inputs, n_outputs, **factory_params)`` returns the network.
        make_optimizer: builds the optimizer over the given parameters.
        strategies: the torch strategies, called in order.
        device: where the network lives.
        seed: seeds the trainer's own RNG state.
        next_class_row: a head the trainer grows keeps one row more than the
            classes seen, the next new class's, in the cross-entropy over
            every row; a new class starts as a copy of it.
    """

    def __init__(
        self,
        name: str,
        factory: Callable[..., nn.Module],
        factory_params: dict[str, Any],
        make_optimizer: MakeOptimizer,
        strategies: list[Any],
        device: torch.device,
        seed: int,
        next_class_row: bool,
    ) -> None:
        self.name = name
        self.factory = factory
        self.factory_params = factory_params
        self.make_optimizer = make_optimizer
        self.strategies = strategies
        self.device = device
        self.next_class_row = next_class_row
        self._hooks = {hook: [getattr(s, hook) for s in strategies if overrides(s, hook)] for hook in STEP_HOOKS}
        self._owner = next((s for s in strategies if overrides(s, "train_step")), None)
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.criterion: nn.Module = nn.CrossEntropyLoss()  # over every row of the output layer, the next class's included
        self.outputs = 0  # the output layer's width
        self.next_row = False  # the output layer's last row is the next new class's
        self.updates = 0
        self.version = 0  # bumped whenever the model changes
        self.rng_state = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """Run with the trainer's RNG state as torch's global one, then put the outer state back."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self.rng_state)
        try:
            yield
        finally:
            self.rng_state = torch.get_rng_state()
            torch.set_rng_state(outer)

    def train(self, x: torch.Tensor, y: torch.Tensor, n_inputs: int, n_classes: int) -> None:
        """One update on a micro-batch (task label 0 for every row), first building or widening the network for ``n_classes``."""
        with self.own_rng():
            if self.model is None:
                self._build(n_inputs, n_classes + self.next_class_row, self.next_class_row)
            elif self.outputs < n_classes + self.next_row:
                self._grow(n_classes + self.next_row)
            device = self.device
            self._step(x.to(device), y.to(device), torch.zeros(len(y), dtype=torch.long, device=device))

    def consolidate(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> None:
        """Each strategy's boundary hook on the window of the concept that ended."""
        if self.model is None:
            return
        device = self.device
        with self.own_rng():
            self.model.train()
            for strategy in self.strategies:
                strategy.on_boundary(x.to(device), y.to(device), task.to(device))
            self.model.eval()
        self.version += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of rows, without gradients."""
        if self.device.type != "cpu":
            x = x.to(self.device)
        with torch.no_grad():
            return self.model(x)  # type: ignore[misc]

    def _step(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> None:
        model, optimizer, hooks = self.model, self.optimizer, self._hooks
        model.train()  # type: ignore[union-attr]
        step = TrainStep(model, optimizer, self.criterion, x, y, task, new=x.shape[0])
        for replay_samples in hooks["replay_samples"]:
            extra = replay_samples(step)
            if extra is not None and len(extra[0]):
                step.x = torch.cat([step.x, extra[0].to(self.device)])
                step.y = torch.cat([step.y, extra[1].to(self.device)])
                step.task = torch.cat([step.task, extra[2].to(self.device)])
        for before_step in hooks["before_step"]:
            before_step(step)
        if self._owner is not None:
            step.loss = self._owner.train_step(step)
        else:
            optimizer.zero_grad(set_to_none=True)  # type: ignore[union-attr]
            step.logits = model(step.x)  # type: ignore[misc]
            loss = step.loss = self.criterion(step.logits, step.y)
            for penalty in hooks["penalty"]:
                term = penalty(step)
                if term is not None:
                    loss = loss + term
            loss.backward()
            for after_backward in hooks["after_backward"]:
                after_backward(step)
            optimizer.step()  # type: ignore[union-attr]
        for after_step in hooks["after_step"]:
            after_step(step)
        model.eval()  # type: ignore[union-attr]
        self.updates += 1
        self.version += 1

    def _build(self, n_inputs: int, width: int, next_row: bool) -> None:
        """Build the network asking for ``width`` outputs; with ``next_row`` its last row is the next class's if it has exactly that many."""
        try:
            model = self.factory(n_inputs, max(width, 1), **self.factory_params)
        except Exception as exc:  # noqa: BLE001 - the user's network code: any failure is a configuration error
            raise ConfigError(f"model factory {self.name!r} cannot build the network for {n_inputs} inputs and {max(width, 1)} outputs: {type(exc).__name__}: {exc}") from exc
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model factory {self.name!r} returned {type(model).__name__}, not a torch.nn.Module")
        self.outputs = output_layer(model)[2].out_features
        self.next_row = next_row and self.outputs == width  # a wider head is a fixed one: its unused rows are in the loss already
        self.model = model.to(self.device)
        self.optimizer = self.make_optimizer(self.model.parameters())
        self._setup_strategies()

    def _grow(self, width: int) -> None:
        """Widen the output layer; with a next-class row every added row starts as a copy of it.

        The next-class row has been pushed down on every event learned, as a
        fixed head's unused outputs are, so a class starting from it starts
        below the classes already learned; a freshly initialised row would
        start level with them and, on inputs that are not standardised, soon
        outscore them everywhere.
        """
        copy_row = self.outputs - 1 if self.next_row else None
        self.model, self.optimizer = grow_output_layer(self.model, self.optimizer, width, self.make_optimizer, copy_row)  # type: ignore[arg-type]
        self.outputs = width
        self._setup_strategies()

    def _setup_strategies(self) -> None:
        for strategy in self.strategies:
            strategy.setup(self.model, self.optimizer, self.criterion, self.device)
        self.model.eval()  # type: ignore[union-attr]
        self.version += 1

    def state_dict(self) -> dict[str, Any]:
        """The network, optimizer, RNG, update count and each strategy's state (HEAD's learner keys)."""
        return {
            "n_outputs": self.outputs,
            "next_class_row": self.next_row,
            "model": self.model.state_dict() if self.model is not None else None,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "rng": self.rng_state,
            "updates": self.updates,
            "strategies": [s.state_dict() for s in self.strategies],
        }

    def load_state_dict(self, state: dict[str, Any], n_inputs: int) -> None:
        """Restore :meth:`state_dict` into a trainer built from the same spec."""
        self.updates = state["updates"]
        if state["model"] is not None:
            with self.own_rng():
                self._build(n_inputs, state["n_outputs"], state["next_class_row"])
            self.model.load_state_dict(state["model"])  # type: ignore[union-attr]
            self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[union-attr]
            if len(state["strategies"]) != len(self.strategies):
                raise SnapshotError("snapshot holds state for a different set of strategies")
            for strategy, s_state in zip(self.strategies, state["strategies"]):
                strategy.load_state_dict(s_state)
            self.model.eval()  # type: ignore[union-attr]
        self.rng_state = state["rng"]
        self.version += 1
