"""ER-ACE: experience replay with the asymmetric cross-entropy (Caccia et al., ICLR 2022), Avalanche's ``ER_ACE`` streamed.

Online, as the method was designed: each micro-batch is one of Avalanche's
online experiences. The micro-batch first enters the class-balanced memory
(:class:`~strategies._memory.ClassBalancedMemory`, Avalanche's storage policy
for ``ER_ACE``); then, from the second micro-batch on and once the memory
holds ``batch_size_mem`` events, a replay batch is drawn as Avalanche's fresh
replay loader draws it, and the loss is Avalanche's ``ACECriterion``: the
mean of the cross-entropy of the replayed events over every class, and the
cross-entropy of the micro-batch over *only the classes in the micro-batch*.
The new classes' logits then do not push the old ones down, which is what
makes plain replay forget in class-incremental streams. Boundaries change
nothing: the memory is updated at every micro-batch.

Each micro-batch draws from the learner's torch RNG what Avalanche's loop
draws for one online experience (the memory's weights, the experience
loader's seed, the replay loader's seeds), so the engine and Avalanche's own
``ER_ACE.train`` over micro-batch experiences end with the same parameters
(``tests/unit/test_avalanche_equivalence.py``).

>>> ERACE(mem_size=50, batch_size_mem=5).memory.max_size
50
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from strategies._memory import ClassBalancedMemory, experience_loader_draw, loader_batch
from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TorchStrategy, TrainStep


def ace_loss(out_in: torch.Tensor, y_in: torch.Tensor, out_buffer: torch.Tensor, y_buffer: torch.Tensor, criterion: Any = F.cross_entropy) -> torch.Tensor:
    """Avalanche's ``ACECriterion``: replay with ``criterion`` (the learner's), the incoming batch over its own classes only.

    >>> out = torch.tensor([[2.0, 0.0, 9.0]])
    >>> replayed = float(F.cross_entropy(out, torch.tensor([0])))  # class 2's logit counts against the replayed row
    >>> round(replayed, 4), round(float(ace_loss(out, torch.tensor([0]), out, torch.tensor([0]))), 4)  # not against the incoming one
    (7.001, 3.5005)
    """
    present = torch.unique(y_in)
    loss_buffer = criterion(out_buffer, y_buffer)
    target = F.one_hot(y_in, num_classes=out_in.shape[1])[:, present]
    logits = out_in[:, present]
    # Avalanche's stable softmax then log, not log_softmax: the same floats as its criterion
    numerator = torch.exp(logits - torch.max(logits, dim=1, keepdim=True)[0])
    softmax = numerator / torch.sum(numerator, dim=1, keepdim=True)
    loss_current = -(target * softmax.log()).sum(1).mean()
    return (loss_buffer + loss_current) / 2


class ERACE(TorchStrategy):
    """ER-ACE (Avalanche ER_ACE, online): replay with the asymmetric cross-entropy; new classes do not push old ones down.

    Args:
        mem_size: capacity of the class-balanced memory in events, split evenly over the classes seen; raise it to keep more events per class.
        batch_size_mem: memory events replayed per micro-batch, from the second micro-batch on and once the memory holds that many; raise it to weigh the past more.
    """

    next_class_row: ClassVar[bool] = False
    """The learner's head grows to exactly the classes seen: its asymmetric loss already keep new classes from pushing old ones down, and a new class learns faster from a fresh row than from the pushed-down next-class row."""

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"mem_size": 20, "batch_size_mem": 5}

    def __init__(self, mem_size: int = 200, batch_size_mem: int = 10) -> None:
        if int(mem_size) < 1 or int(batch_size_mem) < 1:
            raise ConfigError(f"ER-ACE's mem_size and batch_size_mem must be at least 1 (got {mem_size}, {batch_size_mem})")
        self.batch_size_mem = int(batch_size_mem)
        self.memory = ClassBalancedMemory(int(mem_size))
        self.steps = 0

    def train_step(self, step: TrainStep) -> Any:
        model, optimizer = step.model, step.optimizer
        self.memory.add(step.x, step.y, step.task)  # Avalanche's ER_ACE stores an experience before training on it
        experience_loader_draw()
        replay = None
        if self.steps > 0 and len(self.memory) >= self.batch_size_mem:
            x, y, _ = self.memory.tensors()
            idx = loader_batch(len(y), self.batch_size_mem)
            replay = x[idx].to(step.x.device), y[idx].to(step.y.device)
        optimizer.zero_grad(set_to_none=True)
        out = model(step.x)
        if replay is None:
            loss = step.criterion(out, step.y)
        else:
            loss = ace_loss(out, step.y, model(replay[0]), replay[1], step.criterion)
        loss.backward()
        optimizer.step()
        self.steps += 1
        return loss.detach()

    def __len__(self) -> int:
        return len(self.memory)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]
        self.memory.load_state_dict(state["memory"])
