"""La-MAML, Avalanche's ``lamaml_v2`` meta-learning template driven per micro-batch.

La-MAML owns the whole update (look-ahead inner updates on fast weights,
then a meta-update with learned per-parameter learning rates), so it is the
strategy's :meth:`train_step`; its reservoir buffer is updated at each
boundary from the window and compacted, and each step's buffer batch (the
rows of Avalanche's own ``randperm`` draw) is indexed from its tensors. The network must accept
``forward(x, t)`` (the built-in ``torch:mlp`` does). Note that La-MAML
re-initialises the network's weights (Kaiming) when it is set up.

>>> LaMAML(n_inner_updates=2).n_inner_updates
2
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, ClassVar

import torch

from strategies._avalanche import (
    begin_experience,
    dataset_tensors,
    end_experience,
    meta_iteration,
    point_at_window,
    quietly,
    reservoir_weights,
    restore_reservoir,
    window_dataset,
    without_evaluation,
)
from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TorchStrategy, TrainStep


@lru_cache(maxsize=1)
def _template_class() -> type:
    """Avalanche's La-MAML template, its private experience steps overridden (avalanche-lib ==0.6.0, pinned; tested)."""

    def load() -> type:
        from avalanche.training.supervised.lamaml_v2 import Buffer
        from avalanche.training.supervised.lamaml_v2 import LaMAML as AvalancheLaMAML
        from avalanche.training.templates import SupervisedMetaLearningTemplate
        from avalanche.training.utils import trigger_plugins

        class TensorBuffer(Buffer):
            """Avalanche's La-MAML buffer, its batches cut from the stored tensors rather than a subset dataset per step.

            Avalanche's ``get_buffer_batch`` draws ``randperm(len)[:buffer_mb_size]``,
            takes that subset of the stored dataset and stacks its items in that
            order; here the same draw indexes the stored ``(x, y, task)`` tensors
            (made once per stored dataset): the same rows, in the same order.
            """

            source: Any = None
            tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

            def get_buffer_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                stored = self.storage_policy.buffer
                if len(stored) == 0:
                    return super().get_buffer_batch()  # Avalanche's own (it cannot stack an empty batch)
                tensors = self.tensors
                if stored is not self.source or tensors is None:
                    x, y, t = dataset_tensors(stored)
                    tensors = self.tensors = x.to(self.device), y.to(self.device).long(), t.to(self.device).long()
                    self.source = stored
                x, y, t = tensors
                rnd_ind = torch.randperm(len(stored))[: self.buffer_mb_size]
                return x[rnd_ind], y[rnd_ind], t[rnd_ind]

        class _PluginsOnly(SupervisedMetaLearningTemplate):
            """Sits after LaMAML in the MRO: a boundary runs plugin hooks, not dataset adaptation or a dataloader."""

            def _before_training_exp(self, **kwargs: Any) -> None:
                trigger_plugins(self, "before_training_exp", **kwargs)

        class StreamLaMAML(AvalancheLaMAML, _PluginsOnly):
            """Avalanche's La-MAML v2 whose experience set-up needs no dataloader, and whose buffer batches need no dataset."""

            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.buffer.__class__ = TensorBuffer

            def _after_training_exp(self, **kwargs: Any) -> None:
                # LaMAML's own buffer update, through the storage policy's non-deprecated post_adapt
                self.buffer.storage_policy.post_adapt(self, self.experience)
                super(AvalancheLaMAML, self)._after_training_exp(**kwargs)

        return StreamLaMAML

    return quietly(load)


class LaMAML(TorchStrategy):
    """La-MAML meta-learning (Avalanche lamaml_v2): look-ahead updates with learned learning rates.

    Args:
        n_inner_updates: look-ahead updates per micro-batch, each on one part of it; use a divisor of the learner's batch_size (or a part can be empty); more costs time.
        second_order: true differentiates through the look-ahead updates; false uses the first-order approximation, faster and lighter: set false for big networks.
        grad_clip_norm: look-ahead gradients are clamped to plus or minus this value and meta-gradients clipped to this norm; lower it if training diverges.
        learn_lr: true learns the per-parameter learning rates from the meta-loss at every micro-batch; false keeps them at alpha_init.
        lr_alpha: learning rate of the updates to the per-parameter learning rates (with learn_lr); lower it if they swing, raise it if they adapt too slowly.
        sync_update: true makes the meta-update with the learner's optimizer and lr; false with the learned per-parameter rates (the learner's lr then goes unused).
        alpha_init: starting value of every per-parameter learning rate (look-ahead and meta-updates); with learn_lr false it stays the rate; lower it if training diverges.
        max_buffer_size: capacity of the reservoir buffer in events, updated at each boundary from the ended concept's window; larger remembers more.
        buffer_mb_size: buffer events mixed into each micro-batch's meta-loss, from the first boundary on; raise it to weigh past concepts more.
    """

    next_class_row: ClassVar[bool] = False
    """The learner's head grows to exactly the classes seen: its meta-learned rates and replay already keep new classes from pushing old ones down, and a new class learns faster from a fresh row than from the pushed-down next-class row."""

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"n_inner_updates": 2, "second_order": False, "max_buffer_size": 20, "buffer_mb_size": 5}

    def __init__(
        self,
        n_inner_updates: int = 5,
        second_order: bool = True,
        grad_clip_norm: float = 1.0,
        learn_lr: bool = True,
        lr_alpha: float = 0.25,
        sync_update: bool = False,
        alpha_init: float = 0.1,
        max_buffer_size: int = 200,
        buffer_mb_size: int = 10,
    ) -> None:
        if int(n_inner_updates) < 1 or int(max_buffer_size) < 1 or int(buffer_mb_size) < 1:
            raise ConfigError("La-MAML's n_inner_updates, max_buffer_size and buffer_mb_size must be at least 1")
        self.params = dict(
            n_inner_updates=int(n_inner_updates), second_order=bool(second_order), grad_clip_norm=float(grad_clip_norm),
            learn_lr=bool(learn_lr), lr_alpha=float(lr_alpha), sync_update=bool(sync_update), alpha_init=float(alpha_init),
            max_buffer_size=int(max_buffer_size), buffer_mb_size=int(buffer_mb_size),
        )
        self.n_inner_updates = int(n_inner_updates)
        self.template: Any = None

    def setup(self, model: Any, optimizer: Any, criterion: Any, device: Any) -> None:
        if self.template is None:
            if len(inspect.signature(model.forward).parameters) < 2:
                raise ConfigError(f"La-MAML needs a network with forward(x, t); {type(model).__name__}.forward takes only x")
            from avalanche.training.plugins import EvaluationPlugin

            cls = _template_class()
            self.template = without_evaluation(quietly(
                lambda: cls(model=model, optimizer=optimizer, criterion=criterion, device=device, evaluator=EvaluationPlugin(loggers=[]), **self.params)
            ))
        else:
            self.template.model = model
            self.template.optimizer = optimizer
        begin_experience(self.template)  # creates or widens the per-parameter learning rates

    def train_step(self, step: TrainStep) -> Any:
        t = self.template
        t.mbatch = [step.x, step.y, step.task]
        loss = meta_iteration(t)
        t.loss, t.mbatch = None, None
        t.meta_losses = []
        t.initial_fast_params = None
        return loss

    def on_boundary(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> None:
        t = self.template
        if t is None:
            return
        point_at_window(t, x, y, task)
        try:
            quietly(lambda: end_experience(t))
            storage = t.buffer.storage_policy
            storage.buffer = window_dataset(*dataset_tensors(storage.buffer))
            begin_experience(t)
        finally:
            t.experience = None
            t.adapted_dataset = None

    def __len__(self) -> int:
        return 0 if self.template is None else len(self.template.buffer)

    def state_dict(self) -> dict[str, Any]:
        t = self.template
        if t is None:
            return {}
        storage = t.buffer.storage_policy
        return {
            "experiences": t.clock.train_exp_counter,
            "alpha": {k: v.detach().clone() for k, v in t.alpha_params.items()},
            "buffer": [*dataset_tensors(storage.buffer), reservoir_weights(storage)],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        t = self.template
        t.clock.train_exp_counter = state["experiences"]
        with torch.no_grad():
            for k, v in state["alpha"].items():
                t.alpha_params[k] = torch.nn.Parameter(v.to(t.device).clone(), requires_grad=True)
        t.optimizer_alpha = torch.optim.SGD(t.alpha_params.parameters(), lr=t.lr_alpha)
        restore_reservoir(t.buffer.storage_policy, *state["buffer"])
