"""Averaged gradient episodic memory, Avalanche's ``AGEMPlugin`` driven per micro-batch.

Memory and reference batches are Avalanche's own code: at a boundary the
plugin's ``update_memory`` keeps a random subset of ``patterns_per_experience``
events of the window (``random.shuffle``), and each reference batch is the
one the next ``next()`` on its ``GroupBalancedInfiniteDataLoader`` gives:
``sample_size // experiences`` events of every stored experience, in stored
order, cycling, which are cut here straight from the stored tensors (the
same batches and the same torch RNG draw, without a loader per step).
The shuffles draw from the strategy's own Python RNG, seeded with the
learner's seed as Avalanche's ``RNGManager`` seeds ``random`` with a run's
seed, and kept in the snapshot, so runs repeat and resume exactly.
Avalanche's plugin keeps every experience forever (its batch reaches zero,
and crashes, past ``sample_size`` experiences); here the memory keeps the last
``max_experiences`` as compact tensors, and at least one event per experience
is drawn. The reference gradient and the projection are Avalanche's own.

A drift detector fires some events after the change, so a detected window
ends with events of the new concept, which would enter the memory of the
concept that ended. So each boundary first looks, within the last ``rewind`` events,
for where the prequential error rose (:class:`~strategies._changepoint.Rewinding`,
as EWC does), and the memory samples only the events before it. At an
explicit task boundary the error does not rise: nothing changes.

>>> AGEM(patterns_per_experience=10, sample_size=5, max_experiences=2).max_experiences
2
>>> AGEM(rewind=-1)
Traceback (most recent call last):
...
stream_learner.errors.ConfigError: rewind must not be negative, not -1
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch

from strategies._avalanche import AvalancheStrategy, dataset_tensors, quietly, window_dataset
from strategies._changepoint import Rewinding
from stream_learner.errors import ConfigError


@contextmanager
def drawing_from(rng: random.Random) -> Iterator[None]:
    """Python's global ``random`` draws from ``rng`` inside (which keeps the draws), its own state back outside.

    >>> rng = random.Random(3)
    >>> with drawing_from(rng):
    ...     a = random.random()
    >>> a == random.Random(3).random(), rng.random() == a
    (True, False)
    """
    outer = random.getstate()
    random.setstate(rng.getstate())
    try:
        yield
    finally:
        rng.setstate(random.getstate())
        random.setstate(outer)


@lru_cache(maxsize=1)
def _plugin_class() -> type:
    from avalanche.training.plugins import AGEMPlugin

    class StreamAGEMPlugin(AGEMPlugin):
        """A-GEM with Avalanche's memory update and reference batches, a bounded compact memory and a seeded subset."""

        def __init__(self, patterns_per_experience: int, sample_size: int, max_experiences: int, seed: int) -> None:
            super().__init__(patterns_per_experience, sample_size)
            self.max_experiences = max_experiences
            self.rng = random.Random(seed)
            self.stored: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
            self.per = 1
            self.slices: list[int] = []
            self.draws = 0
            self.seeded = False

        @torch.no_grad()
        def update_memory(self, dataset: Any, num_workers: int = 0, **kwargs: Any) -> None:
            with drawing_from(self.rng):
                super().update_memory(dataset, num_workers=0)
            tensors = dataset_tensors(self.buffers[-1])
            self.buffers[-1] = window_dataset(*tensors)
            del self.buffers[: -self.max_experiences]
            self.reload([*self.stored, tensors][-len(self.buffers) :])

        def reload(self, stored: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None) -> None:
            """Start the reference batches over the buffers from the first, as Avalanche's ``update_memory`` does.

            Avalanche's ``GroupBalancedInfiniteDataLoader`` (``batch_size=per``,
            no shuffle) reads each buffer in stored order through a sequential
            ``BatchSampler`` that restarts when it runs out: draw ``k`` takes
            from buffer ``b`` the ``k mod ceil(len(b) / per)``-th slice of
            ``per`` events (the last one shorter), the buffers' slices
            concatenated in order; an empty buffer gives nothing. Here those
            slices are cut from the stored tensors, with no loader.
            """
            self.stored = [dataset_tensors(b) for b in self.buffers] if stored is None else stored
            self.per = max(1, self.sample_size // len(self.buffers))
            self.slices = [math.ceil(len(y) / self.per) for _, y, _ in self.stored]
            self.buffer_dataloader = None  # Avalanche's loader, built by its update_memory, is never read
            self.buffer_dliter = iter(())
            self.draws = 0
            self.seeded = False

        def sample_from_memory(self) -> list[torch.Tensor]:
            """The next reference batch: what ``next()`` on Avalanche's loader returns, RNG draw included."""
            if not self.seeded:
                if not any(self.slices):
                    raise RuntimeError("The never ending sampler must able to create a mini-batch")
                # the loader's first next() starts a DataLoader iterator, which draws its base seed from torch's RNG
                torch.empty((), dtype=torch.int64).random_()
                self.seeded = True
            k, per = self.draws, self.per
            self.draws += 1
            xs, ys, ts = [], [], []
            for (x, y, t), slices in zip(self.stored, self.slices):
                if slices:
                    start = (k % slices) * per
                    xs.append(x[start : start + per])
                    ys.append(y[start : start + per])
                    ts.append(t[start : start + per])
            return [torch.cat(xs), torch.cat(ys), torch.cat(ts)]

        def resume(self, draws: int) -> None:
            """Carry on after ``draws`` reference batches (the loader's seed draw was made before the snapshot if any)."""
            self.reload()
            self.draws = draws
            self.seeded = draws > 0

    return StreamAGEMPlugin


class AGEM(Rewinding, AvalancheStrategy):
    """Averaged GEM (Avalanche AGEMPlugin): project gradients that would raise the loss on memory.

    Args:
        patterns_per_experience: events kept per concept, a random subset of the ended concept's window (so at most the learner's window); more is more representative, costs memory.
        sample_size: events per reference batch, split over the stored concepts, whose gradient no update may oppose; larger is steadier but costs a bigger extra pass per micro-batch.
        max_experiences: how many of the latest concepts keep their memory (older ones are dropped); raise it to protect more; each gives at least one event to every reference batch.
        rewind: events a boundary looks back for where the error rose, so the memory takes only events before the change; 0 turns it off; raise it if the detector fires late.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"sample_size": 8, "patterns_per_experience": 10, "max_experiences": 3}

    def __init__(self, patterns_per_experience: int = 100, sample_size: int = 64, max_experiences: int = 10, rewind: int = 100) -> None:
        if int(patterns_per_experience) < 1 or int(sample_size) < 1 or int(max_experiences) < 1:
            raise ConfigError("A-GEM's patterns_per_experience, sample_size and max_experiences must be at least 1")
        self.patterns_per_experience = int(patterns_per_experience)
        self.sample_size = int(sample_size)
        self.max_experiences = int(max_experiences)
        self.rewinding(rewind)

    def make_plugins(self) -> list[Any]:
        """The plugin, its Python RNG seeded with the learner's seed (``setup`` runs under the learner's torch RNG)."""
        cls = _plugin_class()
        seed = torch.initial_seed()
        return [quietly(lambda: cls(self.patterns_per_experience, self.sample_size, self.max_experiences, seed))]

    @property
    def memory(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The stored experiences, oldest first, as ``(x, y, task)`` tensors."""
        return [] if self.template is None else [dataset_tensors(b) for b in self.plugins[0].buffers]

    def state_dict(self) -> dict[str, Any]:
        if self.template is None:
            return super().state_dict()
        plugin = self.plugins[0]
        version, words, gauss = plugin.rng.getstate()
        return {**super().state_dict(), "buffers": [list(b) for b in self.memory], "draws": plugin.draws, "rng": [version, list(words), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        plugin = self.plugins[0]
        version, words, gauss = state["rng"]
        plugin.rng.setstate((version, tuple(words), gauss))
        plugin.buffers = [window_dataset(*b) for b in state["buffers"]]
        if plugin.buffers:
            plugin.resume(state["draws"])
        else:
            plugin.stored, plugin.slices, plugin.draws, plugin.seeded = [], [], 0, False
