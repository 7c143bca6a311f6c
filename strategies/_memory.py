"""The rehearsal memory of the online strategies, and the replay batches Avalanche's loaders would draw from it.

:class:`ClassBalancedMemory` is Avalanche's ``ClassBalancedBuffer`` with
``adaptive_size=True`` (ER-ACE's, MIR's and GDumb's storage policy) kept as
tensors: the memory is split evenly over the classes seen so far (the
remainder to the smallest class indices, which is how Avalanche's set of the
engine's contiguous class indices iterates), and each class keeps a reservoir
sample: every event gets a ``torch.rand`` weight and a class keeps its
highest-weighted events, newest batch first among the candidates, sorted by
weight. The same draws from the same torch RNG give the same memory, in the
same order, as Avalanche's buffer (``tests/unit/test_online_strategies.py``);
updating it per micro-batch costs a few tensor operations instead of
Avalanche's dataset subsets and concatenations.

:func:`loader_order` gives the order in which a fresh shuffling ``DataLoader``
over ``n`` items reads them (:func:`loader_batch` its first batch), drawing
from the global torch RNG what the loader draws.

>>> torch.manual_seed(0) and None
>>> memory = ClassBalancedMemory(4)
>>> memory.add(torch.arange(6.0).unsqueeze(1), torch.tensor([0, 0, 0, 1, 1, 1]), torch.zeros(6, dtype=torch.long))
>>> len(memory), sorted(memory.tensors()[1].tolist())
(4, [0, 0, 1, 1])
"""

from __future__ import annotations

from typing import Any

import torch

Rows = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class ClassBalancedMemory:
    """At most ``max_size`` events, split evenly over the classes seen, a reservoir sample of each class.

    With ``balanced=False`` it is one reservoir over every event (Avalanche's
    ``ReservoirSamplingBuffer``): a uniform sample of the stream so far.
    """

    def __init__(self, max_size: int, balanced: bool = True) -> None:
        self.max_size = int(max_size)
        self.balanced = balanced
        self.groups: dict[int, list[torch.Tensor]] = {}  # group (class, or 0) -> [x, y, task, weights], weights descending

    def __len__(self) -> int:
        return sum(len(g[1]) for g in self.groups.values())

    def sizes(self) -> dict[int, int]:
        """Each seen class's share of the memory."""
        seen = sorted(self.groups)
        base, extra = divmod(self.max_size, max(1, len(seen)))
        return {c: base + (i < extra) for i, c in enumerate(seen)}

    def add(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        """Offer a batch's events (drawing one weight per event, class by class in order of first appearance)."""
        if len(y) == 0:
            return
        x, y, t = x.detach().cpu(), y.detach().cpu(), t.detach().cpu()
        labels = y.tolist() if self.balanced else [0] * len(y)
        order = list(dict.fromkeys(labels))
        fresh = {c: c not in self.groups for c in order}
        for c in order:
            if fresh[c]:
                self.groups[c] = [x[:0], y[:0], t[:0], torch.zeros(0)]
        sizes = self.sizes()
        for c in order:
            rows = torch.tensor([i for i, v in enumerate(labels) if v == c])
            weights = torch.rand(len(rows))
            gx, gy, gt, gw = self.groups[c]
            cat = [torch.cat([x[rows], gx]), torch.cat([y[rows], gy]), torch.cat([t[rows], gt]), torch.cat([weights, gw])]
            kept, idx = cat[3].sort(descending=True)
            idx = idx[: sizes[c]]
            self.groups[c] = [cat[0][idx], cat[1][idx], cat[2][idx], kept[: sizes[c]]]
        for c, size in sizes.items():
            self.groups[c] = [part[:size] for part in self.groups[c]]

    def tensors(self, exclude: frozenset[int] = frozenset()) -> Rows:
        """The stored events, class groups in order of first appearance, optionally without some classes."""
        parts = [g for c, g in self.groups.items() if c not in exclude]
        if not parts:
            return torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        return torch.cat([g[0] for g in parts]), torch.cat([g[1] for g in parts]), torch.cat([g[2] for g in parts])

    def interleaved(self) -> torch.Tensor:
        """Positions in :meth:`tensors` taking the groups in turn: each group's first event, then each one's second...

        >>> memory = ClassBalancedMemory(6)
        >>> memory.add(torch.zeros(5, 1), torch.tensor([0, 0, 0, 1, 1]), torch.zeros(5, dtype=torch.long))
        >>> memory.interleaved().tolist()
        [0, 3, 1, 4, 2]
        """
        starts, lengths, at = [], [], 0
        for g in self.groups.values():
            starts.append(at)
            lengths.append(len(g[1]))
            at += len(g[1])
        return torch.tensor([s + j for j in range(max(lengths, default=0)) for s, n in zip(starts, lengths) if j < n], dtype=torch.long)

    def state_dict(self) -> list[list[Any]]:
        return [[c, *(part.clone() for part in g)] for c, g in self.groups.items()]

    def load_state_dict(self, state: list[list[Any]]) -> None:
        self.groups = {int(c): [x.clone(), y.clone(), t.clone(), w.clone()] for c, x, y, t, w in state}


def loader_order(n: int) -> torch.Tensor:
    """The order in which a fresh shuffling ``DataLoader`` over ``n`` items reads them, drawn as it draws it.

    It draws its iterator's base seed, then its sampler's seed, from the global
    torch RNG; the permutation comes from a generator seeded with the latter.

    >>> torch.manual_seed(1) and None
    >>> first = loader_order(10)[:4]
    >>> torch.manual_seed(1) and None
    >>> first.tolist() == next(iter(torch.utils.data.DataLoader(range(10), batch_size=4, shuffle=True))).tolist()
    True
    """
    torch.empty((), dtype=torch.int64).random_()  # the iterator's base seed
    seed = int(torch.empty((), dtype=torch.int64).random_().item())  # the RandomSampler's generator seed
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def loader_batch(n: int, batch_size: int) -> torch.Tensor:
    """Indices of the first batch of a fresh ``DataLoader(range(n), batch_size, shuffle=True)``."""
    return loader_order(n)[:batch_size]


def experience_loader_draw() -> None:
    """What Avalanche's loop draws from the torch RNG to start each online experience's own loader (its base seed)."""
    torch.empty((), dtype=torch.int64).random_()
