"""Learning without forgetting, Avalanche's ``LwFPlugin`` driven per micro-batch.

At each boundary the plugin keeps a copy of the model as teacher; every
later micro-batch adds a distillation loss on the teacher's classes.

>>> LwF(alpha=0.5).alpha
0.5
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from torch import nn

from strategies._avalanche import AvalancheStrategy, quietly
from stream_learner.errors import ConfigError
from stream_learner.learners.torch import output_layer


class LwF(AvalancheStrategy):
    """Learning without forgetting (Avalanche LwFPlugin): distil the previous concept's model.

    Args:
        alpha: weight of the distillation loss (the model's outputs against the teacher's, the model kept at the last boundary); raise it to forget less, lower it if new concepts learn slowly.
        temperature: softmax temperature of the distillation (above 0); higher passes on more of the teacher's ranking of unlikely classes; 2 is the usual value.
    """

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0) -> None:
        if float(alpha) < 0 or not float(temperature) > 0:
            raise ConfigError(f"LwF needs alpha >= 0 and temperature > 0 (got alpha={alpha}, temperature={temperature})")
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def make_plugins(self) -> list[Any]:
        from avalanche.training.plugins import LwFPlugin

        return [quietly(lambda: LwFPlugin(alpha=self.alpha, temperature=self.temperature))]

    @property
    def _lwf(self) -> Any:
        return self.plugins[0].lwf

    def state_dict(self) -> dict[str, Any]:
        lwf = self._lwf if self.template is not None else None
        state = super().state_dict()
        if lwf is not None and lwf.prev_model is not None:
            state["teacher"] = lwf.prev_model.state_dict()
            state["teacher_outputs"] = output_layer(lwf.prev_model)[2].out_features
            state["classes"] = {int(t): sorted(int(c) for c in cs) for t, cs in lwf.prev_classes_by_task.items()}
            state["expcount"] = lwf.expcount
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "teacher" not in state:
            return
        lwf = self._lwf
        teacher = copy.deepcopy(self.template.model)
        parent, attr, layer = output_layer(teacher)
        if layer.out_features != state["teacher_outputs"]:
            setattr(parent, attr, nn.Linear(layer.in_features, state["teacher_outputs"], bias=layer.bias is not None).to(layer.weight.device))
        teacher.load_state_dict(state["teacher"])
        lwf.prev_model = teacher
        lwf.prev_classes_by_task = defaultdict(set, {t: set(cs) for t, cs in state["classes"].items()})
        lwf.expcount = state["expcount"]
