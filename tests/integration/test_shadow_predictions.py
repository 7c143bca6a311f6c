"""The challengers' predictions beside the champion's: one per event and challenger, naming it, and the champion's never among them."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

import stream_learner
from stream_learner.errors import ConfigError

pytestmark = pytest.mark.integration


def _band(path: Path, n: int) -> None:
    rng = random.Random(2)
    with path.open("w") as out:
        for i in range(n):
            x = {"a": rng.random(), "b": rng.random()}
            out.write(json.dumps({"id": f"e{i}", "features": x, "label": 0.3 < x["a"] < 0.7}) + "\n")


def test_every_challengers_prediction_goes_to_the_shadow_output_and_follows_the_promotion(tmp_path: Path) -> None:
    _band(tmp_path / "in.jsonl", 2000)
    out = tmp_path / "out"
    summary = stream_learner.run(
        f"file:{tmp_path / 'in.jsonl'}", model="logreg", out=out, detector=None,
        challengers=["hoeffding_tree", "naive_bayes"], shadow_predictions=True, min_champion_events=200, promotion_window=200,
    )  # fmt: skip
    assert summary["promotions"] == 1
    shadow = [json.loads(line) for line in (out / "shadow_predictions.jsonl").read_text().splitlines()]
    served = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(served) == 2000 and len(shadow) == 2 * 2000
    assert Counter(p["id"] for p in shadow) == Counter({f"e{i}": 2 for i in range(2000)})
    first = {p["candidate"] for p in shadow if p["id"] == "e0"}
    last = {p["candidate"] for p in shadow if p["id"] == "e1999"}
    assert first == {"hoeffding_tree", "naive_bayes"} and last == {"logreg", "naive_bayes"}  # the tree serves by the end; the outgoing champion is in the shadow


def test_shadow_predictions_without_a_challenger_are_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        stream_learner.run("synthetic:sea", model="logreg", max_events=10, out=tmp_path, shadow_predictions=True)
