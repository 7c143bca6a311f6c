"""RAR: repeated augmented rehearsal (Zhang et al., NeurIPS 2022), written to the paper.

Experience replay in its online form, with the paper's two changes: each
micro-batch is learned ``repeats`` times, each time together with a fresh
batch of ``batch_size_mem`` events drawn from the memory, and each time
through a fresh random augmentation of the combined batch, so that the
repeated passes fit the stored events without overfitting them (the paper's
analysis: repetition alone overfits a small memory; augmentation makes the
repeats useful). The paper augments images (crops, flips); here the events
are feature vectors, so the augmentation is feature-agnostic: Gaussian
jitter of ``noise`` (in the units the network sees: standardised when the
learner scales) and each feature zeroed with probability ``mask``. The
memory is a reservoir sample of the stream (the paper's), updated after each
micro-batch. With ``repeats=1``, ``noise=0`` and ``mask=0`` it is plain online
experience replay.

Avalanche 0.6 has no counterpart (its ``RARPlugin`` is another method,
retrospective adversarial replay). Read for this, nothing copied: the
authors' repository's README (YaqianZhang/RepeatedAugmentedRehearsal: the
repeats are its ``--mem_iters``, the augmentation RandAugment) and CapyMOA's
``RAR`` (each repeat a fresh reservoir sample and a fresh augmentation).

>>> RAR(repeats=3).repeats
3
"""

from __future__ import annotations

from typing import Any

import torch

from strategies._memory import ClassBalancedMemory
from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TorchStrategy, TrainStep


def augment(x: torch.Tensor, noise: float, mask: float) -> torch.Tensor:
    """``x`` with Gaussian jitter of standard deviation ``noise``, each value zeroed with probability ``mask``.

    >>> torch.equal(augment(torch.ones(2, 3), 0.0, 0.0), torch.ones(2, 3))
    True
    """
    if noise:
        x = x + noise * torch.randn_like(x)
    if mask:
        x = x * (torch.rand_like(x) >= mask)
    return x


class RAR(TorchStrategy):
    """Repeated augmented rehearsal: replay each micro-batch several times, each with fresh memory samples and a fresh augmentation.

    Args:
        mem_size: memory capacity in events, a uniform reservoir sample of the stream (not class-balanced); raise it to remember more of the past.
        batch_size_mem: memory events drawn afresh for each repeat and trained with the micro-batch; raise it to weigh the past more.
        repeats: updates on each micro-batch; 1 with noise 0 and mask 0 is plain online replay; more fits the memory better at that many times the cost.
        noise: standard deviation of the Gaussian jitter on each repeat's features, in the units the network sees (standardised if the learner scales); 0 turns it off.
        mask: probability (0 to below 1) that each feature value of a repeat's batch is zeroed; 0 turns it off; raise it for more augmentation.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"mem_size": 20, "batch_size_mem": 5, "repeats": 2}

    def __init__(self, mem_size: int = 200, batch_size_mem: int = 10, repeats: int = 3, noise: float = 0.1, mask: float = 0.1) -> None:
        if int(mem_size) < 1 or int(batch_size_mem) < 1 or int(repeats) < 1:
            raise ConfigError(f"RAR's mem_size, batch_size_mem and repeats must be at least 1 (got {mem_size}, {batch_size_mem}, {repeats})")
        if float(noise) < 0 or not 0 <= float(mask) < 1:
            raise ConfigError(f"RAR's noise must not be negative and its mask must be in [0, 1) (got {noise}, {mask})")
        self.batch_size_mem = int(batch_size_mem)
        self.repeats = int(repeats)
        self.noise = float(noise)
        self.mask = float(mask)
        self.memory = ClassBalancedMemory(int(mem_size), balanced=False)

    def train_step(self, step: TrainStep) -> Any:
        model, optimizer = step.model, step.optimizer
        mx, my, _ = self.memory.tensors()
        losses = []
        for _ in range(self.repeats):
            x, y = step.x, step.y
            if len(my):
                idx = torch.randperm(len(my))[: self.batch_size_mem]
                x, y = torch.cat([x, mx[idx].to(x.device)]), torch.cat([y, my[idx].to(y.device)])
            optimizer.zero_grad(set_to_none=True)
            loss = step.criterion(model(augment(x, self.noise, self.mask)), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        new = step.new
        self.memory.add(step.x[:new], step.y[:new], step.task[:new])
        return torch.stack(losses).mean()

    def __len__(self) -> int:
        return len(self.memory)

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
