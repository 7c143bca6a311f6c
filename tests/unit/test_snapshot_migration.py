"""Snapshots of format 1 (a pickled ``KeyedLearner``) restore into the current state and go on as the release that wrote them did.

The snapshots and what the old release gave after restoring them were
written by ``tests/data/format1/make_format1_snapshots.py`` with that
release's code (see its docstring); the signing key is in each case's JSON.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest

from stream_learner.delayed import LabelRecord
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.errors import SnapshotError
from stream_learner.events import Event
from stream_learner.learners.base import LearnerSpec
from stream_learner.snapshot import open_envelope, read_header, seal
from stream_learner.state import decode, encode

DATA = Path(__file__).parents[1] / "data" / "format1"
CASES = sorted(p.stem for p in DATA.glob("*.snap"))


def _case(name: str) -> tuple[dict[str, Any], bytes]:
    document = json.loads((DATA / f"{name}.json").read_text())
    header, payload = open_envelope((DATA / f"{name}.snap").read_bytes(), signing_key=document["signing_key"].encode())
    assert header.format_version == 1
    return document, payload


def _config(document: dict[str, Any]) -> EngineConfig:
    return EngineConfig(**{**document, "learner": LearnerSpec(**document["learner"])})


def _item(item: dict[str, Any]) -> Event | LabelRecord:
    if "label_for" in item:
        return LabelRecord(item["label_for"], "k", item["label"])
    return Event(item["id"], "k", item["features"], item["label"], item["task"], 0, item["offset"])


def _outputs(step: KeyedLearner, batches: list[list[Any]], now: float) -> dict[str, Any]:
    """What the generator recorded, the same way: predictions as rows, records without their time."""
    predictions, metrics, dead = [], [], []
    for batch in batches:
        out = step.process(batch, now=now)
        for p in out.predictions:
            proba = p.get("proba")
            predictions.append([p["id"], p["prediction"], sorted(proba.items(), key=str) if proba else None, p["model_version"], p["concept"]])
        metrics.extend({k: v for k, v in m.items() if k != "ts"} for m in out.metrics)
        dead.extend([d["error"], d["raw"] if isinstance(d["raw"], str) else None] for d in out.dead_letters)
    final = step.finish(now=now)
    metrics.extend({k: v for k, v in m.items() if k != "ts"} for m in final.metrics)
    return json.loads(json.dumps({"predictions": predictions, "metrics": metrics, "dead_letters": dead}))


def _rounded(predictions: list[list[Any]]) -> list[list[Any]]:
    """Predictions with their probabilities to 6 decimals: a torch release may round a float32 network's last digit otherwise (seen at the 7th)."""
    return [[*p[:2], [[label, round(q, 6)] for label, q in p[2]] if p[2] else p[2], *p[3:]] for p in predictions]


@pytest.mark.parametrize("name", CASES)
def test_a_format_1_snapshot_goes_on_exactly_as_the_release_that_wrote_it(name: str) -> None:
    document, payload = _case(name)
    step = KeyedLearner.restore(payload, _config(document["config"]))
    batches = [[_item(item) for item in batch] for batch in document["later"]]
    got, expected = _outputs(step, batches, now=2.0e9), document["expected"]
    assert len(got["predictions"]) == len(expected["predictions"]) > 0
    assert _rounded(got["predictions"]) == _rounded(expected["predictions"])
    assert got["metrics"] == expected["metrics"]
    assert got["dead_letters"] == expected["dead_letters"]


@pytest.mark.parametrize("name", CASES)
def test_a_format_1_payload_decodes_into_plain_data_that_encodes_again(name: str) -> None:
    _, payload = _case(name)
    state = decode(payload)
    again = decode(encode(state))  # raises if anything in it is not plain data
    assert again["events"] == state["events"] > 0 and again["spec"] == state["spec"]


def test_a_format_1_payload_that_is_not_a_learner_is_refused_in_one_line() -> None:
    with pytest.raises(SnapshotError, match=r"^snapshot holds a dict, not a learner$"):
        decode(pickle.dumps({"not": "a learner"}))
    with pytest.raises(SnapshotError, match=r"^learner state of format 1 cannot be read: UnpicklingError: "):
        decode(b"\x80\x05garbage")


def test_a_state_of_a_later_format_is_refused_in_one_line() -> None:
    payload = encode({"version": 1})
    later = payload[:7] + bytes([3]) + payload[8:]
    with pytest.raises(SnapshotError, match=r"^learner state format 3 cannot be read; this release reads formats 1 to 2$"):
        decode(later)


def test_a_state_naming_any_class_is_refused_before_it_is_built() -> None:
    body = pickle.dumps({"x": print}, protocol=pickle.HIGHEST_PROTOCOL)
    payload = b"SLSTATE" + struct.pack(">BQ", 2, len(body)) + body
    with pytest.raises(SnapshotError, match=r"^learner state names builtins.print, which is not plain data$"):
        decode(payload)


def test_an_envelope_of_a_later_format_is_refused_in_one_line() -> None:
    blob = seal(b"state", signing_key=b"k", key="k", learner_kind="river", strategy="none", events_seen=1, source_offsets={0: 1})
    later = blob.replace(b'"format_version":2', b'"format_version":3')
    with pytest.raises(SnapshotError, match=r"^snapshot format 3 is not supported \(this release reads formats 1 to 2\)$"):
        read_header(later)
