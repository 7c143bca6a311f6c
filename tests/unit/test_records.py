"""The typed output records (:mod:`stream_learner.records`) and the pydantic contracts (:mod:`stream_learner.events`) agree.

Each ``TypedDict`` names exactly its contract's fields (a field added to one
and not the other fails here), a key the builder may leave out has a default
in the contract, and a fixed ``type`` is the same on both sides. The records
of a real short run through the embedded dataflow have exactly the typed
keys, nested ones included, and validate against their contracts.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import orjson
import pytest
from pydantic import BaseModel

from stream_learner import records
from stream_learner.app.runner import RunOptions, run
from stream_learner.engine import EngineConfig
from stream_learner.events import (
    MAX_RECORD_BYTES,
    ControlAnswer,
    DeadLetter,
    DelayedLabelCounts,
    DriftRecord,
    FeatureDriftRecord,
    FeatureScore,
    ForgettingSummary,
    MetricsRecord,
    OriginModel,
    Prediction,
    PromotionEvidence,
    PromotionRecord,
    ReuseEvidence,
    ShadowPrediction,
)
from stream_learner.learners.base import LearnerSpec

PAIRS: list[tuple[type, type[BaseModel]]] = [
    (records.PredictionDict, Prediction),
    (records.ShadowPredictionDict, ShadowPrediction),
    (records.MetricsDict, MetricsRecord),
    (records.ForgettingDict, ForgettingSummary),
    (records.DelayedLabelCountsDict, DelayedLabelCounts),
    (records.DriftDict, DriftRecord),
    (records.ReuseEvidenceDict, ReuseEvidence),
    (records.PromotionDict, PromotionRecord),
    (records.PromotionEvidenceDict, PromotionEvidence),
    (records.FeatureDriftDict, FeatureDriftRecord),
    (records.FeatureScoreDict, FeatureScore),
    (records.ControlDict, ControlAnswer),
    (records.DeadLetterDict, DeadLetter),
    (records.OriginDict, OriginModel),
]


def _name(pair: tuple[type, type[BaseModel]]) -> str:
    return pair[0].__name__


@pytest.mark.parametrize("pair", PAIRS, ids=_name)
def test_each_typed_record_names_exactly_its_contracts_fields(pair: tuple[type, type[BaseModel]]) -> None:
    typed, contract = pair
    assert set(get_type_hints(typed)) == set(contract.model_fields)


@pytest.mark.parametrize("pair", PAIRS, ids=_name)
def test_a_key_the_builder_may_leave_out_has_a_default_in_the_contract(pair: tuple[type, type[BaseModel]]) -> None:
    typed, contract = pair
    assert not {name for name in typed.__optional_keys__ if contract.model_fields[name].is_required()}  # type: ignore[attr-defined]


@pytest.mark.parametrize("pair", [p for p in PAIRS if "type" in p[1].model_fields], ids=_name)
def test_a_fixed_type_is_the_same_on_both_sides(pair: tuple[type, type[BaseModel]]) -> None:
    typed, contract = pair
    hint = get_type_hints(typed)["type"]
    assert get_origin(hint) is Literal
    assert get_args(hint) == (contract.model_fields["type"].default,)


@pytest.mark.parametrize("pair", PAIRS, ids=_name)
def test_a_nested_record_is_typed_by_its_contracts_nested_models_dict(pair: tuple[type, type[BaseModel]]) -> None:
    typed, contract = pair
    nested = {typed_: model for typed_, model in PAIRS}
    hints = get_type_hints(typed)
    for name, field in contract.model_fields.items():
        models = [t for t in _members(field.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
        dicts = [t for t in _members(hints[name]) if is_typeddict(t)]
        assert [nested[d] for d in dicts] == models, name


def test_the_delayed_label_states_are_the_keys_of_the_delayed_label_counts() -> None:
    assert get_args(records.DelayedLabelState) == tuple(get_type_hints(records.DelayedLabelCountsDict))


def test_a_record_with_a_key_outside_its_type_fails_the_conformance_check() -> None:
    """The check the run's records go through below is not vacuous."""
    drift = {"type": "drift", "key": "k", "detector": "adwin", "at_event": 1, "concept": 0, "ts": 0.0}
    _conforms(drift, records.DriftDict)
    with pytest.raises(AssertionError, match="surplus"):
        _conforms({**drift, "surplus": 1}, records.DriftDict)
    with pytest.raises(AssertionError, match="origin"):
        _conforms({"reason": "empty", "error": "e", "raw": "", "origin": {"topic": "t", "partition": 0}, "ts": 0.0}, records.DeadLetterDict)
    feature_drift = {"type": "feature_drift", "key": "k", "statistic": "psi", "at_event": 1, "concept": 0, "ts": 0.0}
    _conforms({**feature_drift, "features": [{"name": "a", "psi": 0.5}]}, records.FeatureDriftDict)
    with pytest.raises(AssertionError, match=r"features\[1\]: missing \['psi'\]"):
        _conforms({**feature_drift, "features": [{"name": "a", "psi": 0.5}, {"name": "b"}]}, records.FeatureDriftDict)


def test_the_records_of_a_real_run_have_exactly_their_typed_keys_and_validate_against_their_contracts(tmp_path: Path) -> None:
    lines = [json.dumps({"features": {"a": i, "b": i % 3}, "label": i % 2 == 0, "task": i // 30}) for i in range(60)]
    too_large = json.dumps({"features": {"a": "x" * MAX_RECORD_BYTES}})  # its dead letter carries raw_bytes and raw_sha256
    lines[10:10] = ["{not json", '{"features": {"a": "x"}, "label": true}', too_large]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    engine = EngineConfig(
        learner=LearnerSpec("logreg"), detector=None, metrics_every=20, label_window=8, with_proba=True, feature_drift={"window": 10, "every": 5}
    )
    run(RunOptions(source=f"file:{path}", engine=engine, out=tmp_path / "out", progress=False, console=False))

    def read(name: str) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in (tmp_path / "out" / name).read_bytes().splitlines()]

    predictions, outputs, dead = read("predictions.jsonl"), read("metrics.jsonl"), read("dead_letters.jsonl")
    metrics = [r for r in outputs if r["type"] == "metrics"]
    drifts = [r for r in outputs if r["type"] == "drift"]
    feature_drifts = [r for r in outputs if r["type"] == "feature_drift"]  # feature a grows with every event
    assert (len(predictions), len(dead), len(drifts)) == (60, 3, 1) and len(metrics) >= 3 and feature_drifts
    assert {d["reason"] for d in dead} == {"invalid_json", "schema", "too_large"}
    assert "delayed_labels" in metrics[-1] and "raw_sha256" in dead[-1]  # optional keys show up too
    for record in predictions:
        _conforms(record, records.PredictionDict)
        Prediction.model_validate(record)
    for record in metrics:
        _conforms(record, records.MetricsDict)
        MetricsRecord.model_validate(record)
    for record in drifts:
        _conforms(record, records.DriftDict)
        DriftRecord.model_validate(record)
    for record in feature_drifts:
        _conforms(record, records.FeatureDriftDict)
        FeatureDriftRecord.model_validate(record)
    for record in dead:
        _conforms(record, records.DeadLetterDict)
        DeadLetter.model_validate(record)


def _members(hint: Any) -> tuple[Any, ...]:
    """The types a value of ``hint`` holds, through unions (``X | None`` too) and lists: ``list[X] | None`` gives ``X, None``."""
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(m for arg in get_args(hint) for m in _members(arg))
    if get_origin(hint) is list:
        return _members(get_args(hint)[0])
    return (hint,)


def _conforms(record: dict[str, Any], typed: Any, where: str = "record") -> None:
    """``record`` has every required key of ``typed``, no other key, and the same of each nested typed record."""
    keys = set(record)
    assert keys <= set(get_type_hints(typed)), f"{where}: keys outside {typed.__name__}: {sorted(keys - set(get_type_hints(typed)))}"
    assert typed.__required_keys__ <= keys, f"{where}: missing {sorted(typed.__required_keys__ - keys)}"
    for name, hint in get_type_hints(typed).items():
        for member in filter(is_typeddict, _members(hint)):
            value = record.get(name)
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, dict):
                    _conforms(item, member, f"{where}.{name}[{i}]" if isinstance(value, list) else f"{where}.{name}")
