"""Trusted sources hand the learner one EventBatch per read, and the learner treats it exactly as the events it stands for."""

from __future__ import annotations

import time
from itertools import islice
from typing import Any

import orjson
import pytest

import connectors.base
from connectors.base import SourceBatch
from connectors.files import JsonlFileSource
from connectors.memory import MemorySource
from connectors.synthetic import SyntheticSource
from stream_learner.engine import EngineConfig, KeyedLearner
from stream_learner.events import EventBatch
from stream_learner.learners.base import LearnerSpec


def _read_all(source: Any, resume_state: int | None = None) -> list[Any]:
    """The items of every batch the source's partition hands over (each batch one stamped SourceBatch)."""
    part = source.build_part("input", "0", resume_state)
    items = []
    try:
        while True:
            before = time.time()
            [batch] = part.next_batch()
            assert type(batch) is SourceBatch and before <= batch.read_at <= time.time()
            items += batch.items
    except StopIteration:
        return items


def test_a_pair_source_reads_batches_of_consecutive_offsets_counted_and_bounded() -> None:
    reads: list[int] = []
    source = SyntheticSource("sea", seed=1, every=100, concepts=3, batch_size=40, max_events=250, on_read=reads.append)
    batches = _read_all(source)
    assert all(type(b) is EventBatch for b in batches)
    assert [(b.first_offset, len(b)) for b in batches] == [(0, 40), (40, 40), (80, 40), (120, 40), (160, 40), (200, 40), (240, 10)]
    assert reads == [len(b) for b in batches]
    events = [e for b in batches for e in b.events()]
    assert events == list(islice(source.read_from(0), 250))  # the same ids, features and labels as one Event each
    resumed = _read_all(source, resume_state=230)  # Bytewax's resume state is the next offset
    assert [e.offset for b in resumed for e in b.events()] == list(range(230, 250))


def test_a_file_batch_ends_at_its_byte_budget_so_wide_records_cannot_fill_the_memory(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [orjson.dumps({"features": {"x": "w" * 69}, "label": i % 2}) for i in range(25)]  # 100 bytes each
    (tmp_path / "wide.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(connectors.base, "DEFAULT_BATCH_BYTES", 1_000)
    part = JsonlFileSource(tmp_path / "wide.jsonl", batch_size=10_000).build_part("input", "0", None)
    sizes = []
    with pytest.raises(StopIteration):
        while True:
            [batch] = part.next_batch()
            sizes.append(len(batch.items))
    assert sizes == [10, 10, 5] and part.snapshot() == 25  # each batch ends with the record that reaches 1,000 bytes; none is lost


def test_a_batch_steps_the_learner_exactly_as_its_events_do(drift_pairs) -> None:
    config = EngineConfig(metrics_every=250, forgetting_every=500)
    batches = _read_all(MemorySource(drift_pairs, name="mem", batch_size=300))
    by_batch, by_event = KeyedLearner("default", config), KeyedLearner("default", config)
    outs_batch = [by_batch.process(b, now=1.0) for b in batches]
    outs_event = [by_event.process(b.events(), now=1.0) for b in batches]
    assert [list(o.predictions) for o in outs_batch] == [list(o.predictions) for o in outs_event]
    assert [o.metrics for o in outs_batch] == [o.metrics for o in outs_event]
    assert sum(r["type"] == "drift" for o in outs_batch for r in o.metrics) >= 1
    assert (by_batch.events, by_batch.learned, by_batch.next_offsets) == (by_event.events, by_event.learned, {0: 3000})
    assert outs_batch[0].predictions[0]["id"] == "mem:0:0"


def test_a_restored_learner_skips_what_it_learned_within_a_batch(drift_pairs) -> None:
    first = _read_all(MemorySource(drift_pairs[:500], batch_size=500))[0]
    learner = KeyedLearner("default", EngineConfig())
    learner.process(EventBatch(first.topic, first.key, 0, 0, first.pairs[:320]), now=0.0)
    restored = KeyedLearner.from_state(learner.state_dict(), learner.config)
    learned_before = EventBatch(first.topic, first.key, 0, 100, first.pairs[100:300])
    assert not restored.process(learned_before, now=0.0).predictions and restored.cadence.since_snapshot == learner.cadence.since_snapshot
    out = restored.process(first, now=0.0)  # the source re-reads from an earlier offset after a crash
    assert [p["id"] for p in out.predictions] == [f"memory:0:{i}" for i in range(320, 500)]
    assert restored.events == 500
    rest = KeyedLearner("default", EngineConfig())
    rest.process(first, now=0.0)
    assert restored.learner.predict({"attr": 1.0})[1] == rest.learner.predict({"attr": 1.0})[1]


def test_an_event_of_a_batch_that_the_model_rejects_becomes_a_dead_letter_with_its_origin() -> None:
    learner = KeyedLearner("default", EngineConfig(learner=LearnerSpec("river.linear_model.LogisticRegression"), source="mem"))
    batch = EventBatch("mem", "default", 0, 10, [({"x": 1.0}, True), ({"x": "text"}, True), ({"x": 2.0}, False)])
    out = learner.process(batch, now=0.0)
    assert [p["id"] for p in out.predictions] == ["mem:0:10", "mem:0:12"]
    (dead,) = out.dead_letters
    assert dead["reason"] == "schema" and dead["origin"] == {"topic": "mem", "partition": 0, "offset": 11}
    assert orjson.loads(dead["raw"]) == {"id": "mem:0:11", "key": "default", "features": {"x": "text"}, "label": True, "task": None}
