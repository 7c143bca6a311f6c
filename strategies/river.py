"""River-side strategies: what ``--strategy`` means for river learners.

>>> from river import linear_model, tree
>>> ResetOnDrift().on_boundary(linear_model.LogisticRegression(l2=0.1)).l2
0.1
>>> type(Ensemble(n_models=3).wrap(tree.HoeffdingTreeClassifier())).__name__
'ADWINBaggingClassifier'
"""

from __future__ import annotations

from typing import Any

from stream_learner.errors import ConfigError
from stream_learner.learners.strategy import RiverStrategy


class ResetOnDrift(RiverStrategy):
    """Re-learn from scratch at each boundary (drift or task change): a fresh clone of the model."""

    def on_boundary(self, model: Any) -> Any:
        return model.clone()


class Ensemble(RiverStrategy):
    """Wrap the model in a river drift-adaptive ensemble (ADWIN or leveraging bagging).

    Args:
        n_models: copies of the model in the ensemble; more is steadier, but each event trains every copy, so time and memory grow with it.
        method: adwin_bagging (online bagging; when ADWIN flags drift, the worst member is replaced) or leveraging_bagging (the same, heavier resampling: more diverse, slower).
        seed: seeds the ensemble's random resampling weights, so runs repeat; change it for another draw.
    """

    @classmethod
    def unit_test_params(cls) -> dict[str, Any]:
        """Small settings for :mod:`stream_learner.checks`."""
        return {"n_models": 2}

    METHODS = {"adwin_bagging": "ADWINBaggingClassifier", "leveraging_bagging": "LeveragingBaggingClassifier"}

    def __init__(self, n_models: int = 5, method: str = "adwin_bagging", seed: int = 42) -> None:
        if method not in self.METHODS:
            raise ConfigError(f"ensemble method must be one of {', '.join(self.METHODS)}, not {method!r}")
        if int(n_models) < 1:
            raise ConfigError(f"n_models must be at least 1, not {n_models}")
        self.n_models = int(n_models)
        self.method = method
        self.seed = seed

    def wrap(self, model: Any) -> Any:
        from river import base, ensemble

        if not isinstance(model, base.Classifier):
            raise ConfigError(f"the ensemble strategy needs a river classifier, not {type(model).__name__}")
        cls = getattr(ensemble, self.METHODS[self.method])
        return cls(model, n_models=self.n_models, seed=self.seed)
