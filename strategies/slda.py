"""Streaming LDA (Hayes and Kanan, CVPR-W 2020), Avalanche's ``StreamingLDA`` as the network's output layer.

The representation is the input of the network's output layer (its last
``nn.Linear``), computed by the network as it was built and never trained:
for ``torch:mlp`` the hidden layers' output (random ReLU features), for
``torch:linear`` the encoded input itself (standardised when the learner
scales, with its running statistics). Streaming LDA keeps, in that space,
one mean per class, their count and one shared covariance, updated one event
at a time exactly as Avalanche's ``StreamingLDA.fit`` does; no gradient is
ever taken. After each micro-batch the output layer is set to the LDA
classifier, as Avalanche's ``StreamingLDA.predict`` scores:
``weight = (Lambda @ means.T).T`` and ``bias = -0.5 * sum(means.T * Lambda @ means.T)``,
``Lambda`` the inverse of the shrunk covariance
``(1 - shrinkage) * Sigma + shrinkage * I`` (solved rather than Avalanche's
pseudo-inverse: the same classifier to float rounding, many times faster).
So every prediction is the LDA's, and nothing depends on the order of
classes or on boundaries: a class learned once is never forgotten unless its
statistics change. Memory is fixed: ``classes x features`` means and a
``features x features`` covariance.

>>> SLDA(shrinkage=1e-3).shrinkage
0.001
"""

from __future__ import annotations

from typing import Any

import torch

from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import TorchStrategy, TrainStep
from stream_learner.learners.torch import output_layer


class SLDA(TorchStrategy):
    """Streaming LDA (Avalanche StreamingLDA) as the output layer, on the fixed input of the network's output layer.

    Args:
        shrinkage: weight (above 0, at most 1) of the identity mixed into the shared covariance before inverting it; raise it if features are many or events per class few.
        streaming_update_sigma: true updates the shared covariance with every event; false keeps its all-ones start and learns only class means (cheaper, cruder): leave it true.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {}

    def __init__(self, shrinkage: float = 1e-4, streaming_update_sigma: bool = True) -> None:
        if not 0 < float(shrinkage) <= 1:
            raise ConfigError(f"SLDA's shrinkage must be in (0, 1], not {shrinkage}")
        self.shrinkage = float(shrinkage)
        self.streaming_update_sigma = bool(streaming_update_sigma)
        self.model: Any = None
        self.means = torch.zeros(0)
        self.counts = torch.zeros(0)
        self.sigma = torch.zeros(0)
        self.updates = 0

    def setup(self, model: Any, optimizer: Any, criterion: Any, device: Any) -> None:
        """Size the statistics to the output layer (zero rows for classes added since)."""
        layer = output_layer(model)[2]
        if layer.bias is None:
            raise ConfigError("SLDA sets the output layer's weight and bias: the network's last nn.Linear needs a bias")
        self.model = model
        d, k = layer.in_features, layer.out_features
        if len(self.means) == 0:
            self.means = torch.zeros((k, d), device=layer.weight.device)
            self.counts = torch.zeros(k, device=layer.weight.device)
            self.sigma = torch.ones((d, d), device=layer.weight.device)  # Avalanche's start; the first update replaces it
        elif len(self.means) < k:
            grow = k - len(self.means)
            self.means = torch.cat([self.means, self.means.new_zeros((grow, d))])
            self.counts = torch.cat([self.counts, self.counts.new_zeros(grow)])

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output layer's input for ``x``, and the network's output (one forward pass, in eval mode)."""
        layer = output_layer(self.model)[2]
        seen: list[torch.Tensor] = []
        handle = layer.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
        training = self.model.training
        self.model.eval()
        try:
            out = self.model(x)
        finally:
            handle.remove()
            self.model.train(training)
        return seen[-1], out

    @torch.no_grad()
    def train_step(self, step: TrainStep) -> Any:
        feats, out = self.features(step.x)
        for f, y in zip(feats, step.y):
            self.fit(f.unsqueeze(0), y.unsqueeze(0))
        self.write_head()
        return step.criterion(out, step.y)

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Avalanche's ``StreamingLDA.fit``: one event (``x`` of shape ``1 x d``) into the covariance and its class mean."""
        if self.streaming_update_sigma:
            x_minus_mu = x - self.means[y]
            mult = torch.matmul(x_minus_mu.transpose(1, 0), x_minus_mu)
            delta = mult * self.updates / (self.updates + 1)
            self.sigma = (self.updates * self.sigma + delta) / (self.updates + 1)
        self.means[y, :] += (x - self.means[y, :]) / (self.counts[y] + 1).unsqueeze(1)
        self.counts[y] += 1
        self.updates += 1

    def scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The LDA classifier as ``(weight, bias)`` of a linear layer."""
        d = self.sigma.shape[0]
        shrunk = (1 - self.shrinkage) * self.sigma + self.shrinkage * torch.eye(d, device=self.sigma.device)
        m = self.means.transpose(1, 0)
        w = torch.linalg.solve(shrunk, m)
        c = 0.5 * torch.sum(m * w, dim=0)
        return w.transpose(1, 0), -c

    @torch.no_grad()
    def write_head(self) -> None:
        """Make the output layer the LDA classifier."""
        layer = output_layer(self.model)[2]
        weight, bias = self.scores()
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)

    def state_dict(self) -> dict[str, Any]:
        return {"means": self.means.clone(), "counts": self.counts.clone(), "sigma": self.sigma.clone(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.means, self.counts, self.sigma = state["means"].clone(), state["counts"].clone(), state["sigma"].clone()
        self.updates = state["updates"]
