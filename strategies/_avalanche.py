"""Running Avalanche plugins inside the stream, one micro-batch at a time.

Calling ``strategy.train(experience)`` per micro-batch is slow and makes
several plugins grow without bound. Instead each adapter keeps one
long-lived Avalanche ``SupervisedTemplate`` and, per micro-batch, runs the
body of Avalanche's own update step (``SGDUpdate.training_epoch``) with the
plugins' hooks: before-iteration and before-forward hooks, the learner's
forward and criterion, after-forward and before-backward hooks (whose loss
terms are *returned* as the penalty), backward, after-backward and
before-update hooks (A-GEM's projection), the optimizer step, after-update
and after-iteration hooks. At a boundary the template's experience points at
a bounded window of the concept that ended and the after-training-experience
hooks run (EWC importances, buffer updates, LwF's teacher) with the
template's ``train_mb_size`` set to the learner's micro-batch size, as in
Avalanche's loop; each adapter then bounds and compacts what the plugin kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch

from stream_learner.learners.strategy import TorchStrategy, TrainStep

HOOKS = (
    "before_training",
    "before_training_iteration",
    "before_forward",
    "after_forward",
    "before_backward",
    "after_backward",
    "before_update",
    "after_update",
    "after_training_iteration",
    "before_training_exp",
    "after_training_exp",
)


def quietly(load: Callable[[], Any]) -> Any:
    """Import/build Avalanche objects without their import-time deprecation and logger warnings.

    >>> quietly(lambda: 42)
    42
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return load()


@lru_cache(maxsize=1)
def _template_module() -> Any:
    def load() -> Any:
        from avalanche.training import templates

        return templates

    return quietly(load)


# Avalanche's private names (read against avalanche-lib ==0.6.0, which pyproject pins) are each used
# through one function below, each tested in tests/unit/test_private_touches.py.


def window_dataset(x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> Any:
    """An Avalanche classification dataset over tensors (``(x, y, t)`` items).

    Avalanche 0.6 builds a task-aware tensor dataset only through
    ``_make_taskaware_tensor_classification_dataset`` (in its module's ``__all__``).
    """
    from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_tensor_classification_dataset

    if len(y) == 0:
        from avalanche.benchmarks.utils import concat_datasets

        return concat_datasets([])
    return quietly(lambda: _make_taskaware_tensor_classification_dataset(x.detach().cpu(), y.cpu(), targets=y.tolist(), task_labels=t.tolist()))


def reservoir_weights(storage: Any) -> torch.Tensor:
    """A copy of a reservoir buffer's sampling weights (``ReservoirSamplingBuffer._buffer_weights``: no public accessor)."""
    return storage._buffer_weights.clone()


def restore_reservoir(storage: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, weights: torch.Tensor) -> None:
    """Give a reservoir buffer back its samples and their weights, which decide what a later concept's samples replace."""
    storage.buffer = window_dataset(x, y, t)
    storage._buffer_weights = weights


def begin_experience(template: Any) -> None:
    """Run a template's before-training-experience step (``_before_training_exp``: its plugins' hooks and its own set-up)."""
    template._before_training_exp()


def end_experience(template: Any) -> None:
    """Run a template's after-training-experience step (``_after_training_exp``: its plugins' hooks and its own boundary work)."""
    template._after_training_exp()


def meta_iteration(template: Any) -> Any:
    """One iteration of Avalanche's ``MetaUpdate.training_epoch`` on ``template.mbatch``; returns its loss.

    Avalanche runs the iteration only inside its dataloader loop; here are
    its private steps in its order, less the forward it adds for its metrics.
    """
    template._before_training_iteration()
    template.optimizer.zero_grad()
    template.loss = template._make_empty_loss()
    template._before_inner_updates()
    template._inner_updates()
    template._after_inner_updates()
    template._before_outer_update()
    template._outer_update()
    template._after_outer_update()
    template._after_training_iteration()
    return template.loss


def dataset_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Materialise an Avalanche dataset (a buffer) as three tensors, so it holds no parent windows."""
    if dataset is None or len(dataset) == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    xs, ys, ts = [], [], []
    for item in dataset:
        xs.append(item[0])
        ys.append(int(item[1]))
        ts.append(int(item[-1]))
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), torch.tensor(ts, dtype=torch.long)


def without_evaluation(template: Any) -> Any:
    """Drop the evaluation plugins a template adds by itself (the engine measures; they would only cost time)."""
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates.base_sgd import PeriodicEval

    template.plugins = [p for p in template.plugins if not isinstance(p, (EvaluationPlugin, PeriodicEval))]
    template.experience = None
    return template


def overrides_hook(cls: type, hook: str) -> bool:
    """Whether the plugin class ``cls`` does something in ``hook`` (replaces the base plugins' no-op)."""
    from avalanche.core import BasePlugin
    from avalanche.training.plugins import SupervisedPlugin

    method = getattr(cls, hook, None)
    return method is not None and method is not getattr(SupervisedPlugin, hook, None) and method is not getattr(BasePlugin, hook, None)


class WindowExperience:
    """The minimum of an Avalanche experience that plugins read at a boundary."""

    def __init__(self, dataset: Any, index: int, classes: list[int]) -> None:
        self.dataset = dataset
        self.current_experience = index
        self.classes_in_this_experience = classes
        self.task_label = 0
        self.task_labels = [0]
        self.origin_stream = None

    def logging(self) -> WindowExperience:
        return self


def point_at_window(template: Any, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> Any:
    """Make a boundary's window the template's current experience; return its dataset."""
    dataset = window_dataset(x, y, task)
    template.experience = WindowExperience(dataset, template.clock.train_exp_counter, sorted(set(y.tolist())))
    template.adapted_dataset = dataset
    return dataset


class AvalancheStrategy(TorchStrategy):
    """A torch strategy made of Avalanche plugins driven per micro-batch.

    Subclasses return their plugins from :meth:`make_plugins` and may bound
    or compact plugin state in :meth:`after_boundary`.
    """

    template: Any = None
    plugins: list[Any]

    def make_plugins(self) -> list[Any]:
        """The Avalanche plugins this strategy runs."""
        return []

    def make_template(self, model: Any, optimizer: Any, criterion: Any, device: Any, plugins: list[Any]) -> Any:
        templates = _template_module()
        from avalanche.training.plugins import EvaluationPlugin

        return quietly(
            lambda: templates.SupervisedTemplate(
                model=model, optimizer=optimizer, criterion=criterion, train_mb_size=1, device=device,
                plugins=plugins, evaluator=EvaluationPlugin(loggers=[]),
            )
        )

    def setup(self, model: Any, optimizer: Any, criterion: Any, device: Any) -> None:
        if self.template is None:
            _template_module()  # the first Avalanche import, without its import-time warnings
            self.plugins = self.make_plugins()
            self.template = without_evaluation(self.make_template(model, optimizer, criterion, device, self.plugins))
        else:
            self.template.model = model
            self.template.optimizer = optimizer
        self._index_hooks()

    def _index_hooks(self) -> None:
        """For each hook, the plugin methods that do something (the clock last, as Avalanche requires)."""
        members = [*self.plugins, self.template.clock]
        self._hooks: dict[str, list[Callable[..., Any]]] = {name: [getattr(p, name) for p in members if overrides_hook(type(p), name)] for name in HOOKS}

    def _run(self, name: str) -> None:
        template = self.template
        for hook in self._hooks[name]:
            hook(template)

    def _set_batch(self, step: TrainStep) -> None:
        template = self.template
        template.mbatch = [step.x, step.y, step.task]

    def before_step(self, step: TrainStep) -> None:
        template = self.template
        template.train_mb_size = max(template.train_mb_size, step.new)  # the learner's micro-batch size, for the boundary hooks
        self._set_batch(step)
        self._run("before_training_iteration")
        self._run("before_forward")

    def penalty(self, step: TrainStep) -> Any:
        """What the after-forward and before-backward hooks add to the loss (EWC, LwF, MAS...).

        The template's loss starts as a copy of the learner's criterion loss,
        as in Avalanche's own step; the returned penalty is what the hooks
        changed it by, so the learner's loss tensor is never touched.
        """
        if not (self._hooks["after_forward"] or self._hooks["before_backward"]):
            return None
        template = self.template
        self._set_batch(step)
        template.mb_output = step.logits
        template.loss = step.loss.clone()
        self._run("after_forward")
        self._run("before_backward")
        loss, template.loss = template.loss, None
        template.mb_output = None
        if loss.grad_fn is None or loss.grad_fn.name() == "CloneBackward0":
            return None  # the hooks added nothing (e.g. EWC before its first boundary)
        return (loss - step.loss).sum()

    def after_backward(self, step: TrainStep) -> None:
        self._run("after_backward")
        self._run("before_update")

    def after_step(self, step: TrainStep) -> None:
        self._run("after_update")
        self._run("after_training_iteration")
        self.template.mbatch = None

    def on_boundary(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> None:
        template = self.template
        if template is None:
            return
        point_at_window(template, x, y, task)
        try:
            quietly(lambda: self._run("after_training_exp"))
            self.after_boundary()
        finally:
            template.experience = None
            template.adapted_dataset = None

    def after_boundary(self) -> None:
        """Bound and compact what the plugins kept (called after the boundary hooks)."""

    @property
    def experiences(self) -> int:
        """Boundaries seen (Avalanche's ``clock.train_exp_counter``)."""
        return 0 if self.template is None else self.template.clock.train_exp_counter

    def state_dict(self) -> dict[str, Any]:
        return {"experiences": self.experiences, "batch": 1 if self.template is None else self.template.train_mb_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (older layouts are upgraded by :func:`~stream_learner.state.avalanche_strategy_state`)."""
        self.template.clock.train_exp_counter = state["experiences"]
        self.template.train_mb_size = state["batch"]


def pack(value: Any) -> Any:
    """Plugin state as tensors and plain containers (``ParamData`` becomes ``{"__param__": name, "data": tensor}``)."""
    from avalanche.training.utils import ParamData

    if isinstance(value, ParamData):
        return {"__param__": value.name, "data": value.data.detach().clone()}
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: pack(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack(v) for v in value]
    return value


def unpack(value: Any, device: Any = "cpu") -> Any:
    """The inverse of :func:`pack` (lists stay lists)."""
    from avalanche.training.utils import ParamData

    if isinstance(value, dict):
        if "__param__" in value:
            data = value["data"].to(device)
            return ParamData(value["__param__"], init_tensor=data, device=data.device)
        return {k: unpack(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack(v, device) for v in value]
    if torch.is_tensor(value):
        return value.to(device)
    return value
