"""Stored offsets past a partition's end: the cluster lost its data, or the topic was recreated.

A first service reads 5,000 events on the session broker and keeps their
offsets in its recovery state and its Redis snapshots. The same topic on a
fresh broker (a cluster that lost its data) then holds 3,000 new events, so
the stored next offset, 5,000, lies past the partition's end. Before
``kafka.offset_out_of_range``, kafka-python reset such a partition to its
end silently: 0 of the 3,000 events were predicted, and the run said nothing.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_kafka_e2e import produce_all, read_topic, settings_for
from test_kafka_start import ENGINE, event

from connectors.redis_store import RedisSnapshotStore
from stream_learner.app.kafka_run import run_kafka
from stream_learner.app.telemetry import Telemetry
from stream_learner.errors import OffsetOutOfRangeError
from stream_learner.settings import Settings

pytestmark = pytest.mark.integration

N_OLD, N_NEW, N_LATE = 5000, 3000, 200
HINT = "the topic was recreated, or the cluster lost records? Set kafka.offset_out_of_range to earliest or latest to go on from there"


@dataclass
class Stale:
    settings: Settings  # the first service's (on the session broker)
    recovery: Path  # its recovery state: next offset 5,000


def updated(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """``settings`` with some fields of some sections replaced."""
    return settings.model_copy(update={name: getattr(settings, name).model_copy(update=fields) for name, fields in sections.items()})


@pytest.fixture(scope="module")
def stale(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Stale:
    recovery = tmp_path_factory.mktemp("recovery")
    settings = settings_for(kafka_bootstrap, redis_url, uuid.uuid4().hex[:10], topic_partitions=1)
    settings = updated(settings, recovery={"dir": recovery}, snapshot={"every_events": 1000})
    produce_all(settings, [event("old", i) for i in range(N_OLD)])
    assert run_kafka(settings, ENGINE, handle_signals=False)["predictions"] == N_OLD
    return Stale(settings, recovery)


def on_fresh_broker(stale: Stale, bootstrap: str, policy: str) -> Settings:
    """The first service's settings against the fresh broker (the test's own: its output topics are new too)."""
    return updated(stale.settings, kafka={"bootstrap_servers": bootstrap, "offset_out_of_range": policy})


def predicted(settings: Settings) -> list[str]:
    return [r["id"] for r in read_topic(settings.kafka.bootstrap_servers, settings.kafka.predictions_topic)]


def resets(telemetry: Telemetry, topic: str, policy: str) -> float | None:
    return telemetry.sample("stream_learner_kafka_offset_resets_total", topic=topic, partition="0", policy=policy)


def check(settings: Settings, policy: str, what: str, caplog: pytest.LogCaptureFixture) -> None:
    """One run from a stored next offset of 5,000 on the partition holding 3,000 events, and, after a reset, a second with 200 more."""
    topic = settings.kafka.input_topic
    where = f"offset {N_OLD} of Kafka partition {topic}:0 is out of range: the partition holds offsets 0 to {N_NEW - 1}"
    telemetry = Telemetry()
    caplog.clear()
    if policy == "error":
        with pytest.raises(OffsetOutOfRangeError) as caught:
            run_kafka(settings, ENGINE, handle_signals=False, telemetry=telemetry)
        assert str(caught.value) == f"{what}{where}; {HINT}"
        assert predicted(settings) == []
        return
    summary = run_kafka(settings, ENGINE, handle_signals=False, telemetry=telemetry)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and where in r.getMessage()]
    assert len(warnings) == 1 and f"kafka.offset_out_of_range={policy}" in warnings[0]
    assert resets(telemetry, topic, policy) == 1
    if policy == "earliest":  # every new event, once
        assert summary["predictions"] == N_NEW and predicted(settings) == [f"new-{i}" for i in range(N_NEW)]
        return
    assert summary["predictions"] == 0 and predicted(settings) == []  # latest: what the partition held is skipped, said above
    produce_all(settings, [event("late", i) for i in range(N_LATE)])
    again = Telemetry()
    summary = run_kafka(settings, ENGINE, handle_signals=False, telemetry=again)  # goes on from the end it moved to
    assert summary["predictions"] == N_LATE and predicted(settings) == [f"late-{i}" for i in range(N_LATE)]
    assert resets(again, topic, policy) is None


@pytest.mark.parametrize("policy", ["error", "earliest", "latest"])
def test_a_recovery_offset_past_the_end_stops_or_moves_and_is_said(
    stale: Stale, throwaway_broker: tuple[str, Any], tmp_path: Path, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = on_fresh_broker(stale, throwaway_broker[0], policy)
    produce_all(fresh, [event("new", i) for i in range(N_NEW)])
    recovery = tmp_path / "recovery"
    shutil.copytree(stale.recovery, recovery)
    fresh = fresh.model_copy(update={"app": f"{fresh.app}-recovered-{policy}"})  # its snapshots stay apart from the first service's
    check(updated(fresh, recovery={"dir": recovery}, snapshot={"resume": False}), policy, "", caplog)


@pytest.mark.parametrize("policy", ["error", "earliest", "latest"])
def test_a_snapshot_offset_past_the_end_stops_or_moves_and_is_said(
    stale: Stale, throwaway_broker: tuple[str, Any], redis_url: str, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = f"{stale.settings.app}-{policy}"  # a new replica (no recovery state) of its own, given the first service's snapshot
    source = RedisSnapshotStore.from_url(redis_url, app=stale.settings.app)
    target = RedisSnapshotStore.from_url(redis_url, app=app)
    try:
        target.save("default", source.load("default", source.latest("default")))
    finally:
        source.close()
        target.close()
    fresh = on_fresh_broker(stale, throwaway_broker[0], policy).model_copy(update={"app": app})
    produce_all(fresh, [event("new", i) for i in range(N_NEW)])
    check(updated(fresh, recovery={"dir": None}), policy, "the snapshot of model key 'default': ", caplog)
