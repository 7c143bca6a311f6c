"""The event latency (histogram, page and remote page) and the page's fine accuracy points, kept bounded over many keys."""

from __future__ import annotations

from typing import Any

import pytest

from stream_learner.app.accuracy_points import POINT_EVERY, scored_predictions
from stream_learner.app.dashboard import RemoteEngine
from stream_learner.app.latency import LATENCY_BUCKETS, LatencyHistogram, quantile
from stream_learner.app.telemetry import MAX_POINTS, MAX_WATCHED, MetricsServer, Telemetry
from stream_learner.delayed import LabelRecord
from stream_learner.events import Event
from stream_learner.predictions import Predictions


def test_a_latency_on_a_bound_counts_in_that_bound_s_bucket_and_above_the_last_in_the_last() -> None:
    h = LatencyHistogram()
    h.add([(0.001, 2), (0.0010001, 3), (10.0, 1), (60.0, 4)])
    counts, total = h.counts()
    assert counts[0] == 2 and counts[1] == 3 and counts[len(LATENCY_BUCKETS) - 1] == 1 and counts[-1] == 4
    assert h.count == 10 and total == pytest.approx(0.002 + 0.0030003 + 10 + 240)
    assert h.quantile(0.99) == 10.0  # above the last bound: that bound, as Prometheus says it
    assert quantile(LATENCY_BUCKETS, counts, 0.1) == pytest.approx(0.0005)  # the first bucket starts at 0


def test_the_histogram_and_the_page_count_every_prediction_in_its_interval() -> None:
    now = [100.0]
    t = Telemetry(clock=lambda: now[0])
    t.on_latency([(0.02, 1000)])
    t.on_read(1000)  # samples the page's series (each at most every half second)
    now[0] += 1
    t.on_latency([(0.2, 10), (0.4, 90)])
    t.on_read(100)
    assert t.sample("stream_learner_event_latency_seconds_count") == 1100
    assert t.sample("stream_learner_event_latency_seconds_bucket", le="0.025") == 1000
    assert t.sample("stream_learner_event_latency_seconds_bucket", le="0.25") == 1010
    assert t.sample("stream_learner_event_latency_seconds_bucket", le="+Inf") == 1100
    assert t.sample("stream_learner_event_latency_seconds_sum") == pytest.approx(20 + 2 + 36)
    latency = t.state()["latency"]
    assert [p[0] for p in latency["points"]] == [100.0, 101.0] and [p[3] for p in latency["points"]] == [1000, 100]
    first, second = latency["points"]
    assert 0.01 < first[1] <= first[2] <= 0.025  # each point only its own interval's latencies
    assert 0.25 < second[1] <= second[2] <= 0.5
    assert latency["events"] == 1100 and latency["p50_seconds"] == pytest.approx(0.01 + 0.015 * 550 / 1000)  # the run's, over both


def test_a_remote_page_draws_the_latency_of_the_predictions_between_two_polls() -> None:
    engine = Telemetry()
    server = MetricsServer(engine, 0, "127.0.0.1")
    remote = RemoteEngine(f"http://127.0.0.1:{server.port}/metrics")
    try:
        remote.poll()
        assert remote.state()["latency"]["points"] == []
        engine.on_latency([(0.003, 50)])
        remote.poll()
        engine.on_latency([(2.0, 50)])
        remote.poll()
        remote.poll()  # nothing new: no point
        latency = remote.state()["latency"]
        assert [p[3] for p in latency["points"]] == [50, 50]
        assert 0.0025 < latency["points"][0][1] <= 0.005 and 1.0 < latency["points"][1][2] <= 2.5
        assert latency["events"] == 100 and latency["p99_seconds"] == engine.state()["latency"]["p99_seconds"]
    finally:
        remote.close()
        server.close()


def _predictions(ids: list[str], predicted: list[Any]) -> Predictions:
    return Predictions("k", 0.0, [(i, y, None, 0, 0) for i, y in zip(ids, predicted)])


def test_each_labelled_prediction_is_scored_at_its_event_position_even_where_events_went_unpredicted() -> None:
    events: list[Event | LabelRecord] = [
        Event("a", "k", {}, True, None, 0, 0),
        LabelRecord("old", "k", False),  # a delayed label: learned, not predicted here
        Event("b", "k", {}, None, None, 0, 1),  # unlabelled
        Event("c", "k", {}, False, None, 0, 2),  # a dead letter: no prediction
        Event("d", "k", {}, False, None, 0, 3),
    ]
    made = _predictions(["a", "b", "d"], [True, True, True])
    assert scored_predictions(events, made, 12, lambda y, y_pred: int(y != y_pred)) == [(10, 0), (12, 1)]


def test_fine_points_are_kept_for_the_keys_with_a_history_only_and_bounded_in_number() -> None:
    t = Telemetry(top_keys=2)
    assert [t.wants_accuracy_points(f"k{i}") for i in range(4)] == [True, True, False, False]
    right = [(i, 0.0) for i in range(1, 2 * MAX_POINTS * POINT_EVERY + 1)]
    for key in ("k0", "k3"):
        t.on_accuracy_scored(key, right)
    fine = t.state("k0")["keys"]["k0"]["fine_points"]
    assert len(fine) == MAX_POINTS and fine[0] == [2 * POINT_EVERY, 1.0] and fine[-1][0] == len(right)  # the whole run, at half the resolution
    assert t.state("k3")["keys"]["k3"]["fine_points"] == []  # scored before the page showed it: not kept
    assert t.wants_accuracy_points("k3")  # shown now: watched from here on
    t.on_accuracy_scored("k3", [(i, 1.0) for i in range(1, POINT_EVERY + 1)])
    assert t.state("k3")["keys"]["k3"]["fine_points"] == [[POINT_EVERY, 0.0]]
    for i in range(4, 4 + MAX_WATCHED):  # the page shows more keys than it watches: the first watched key's history goes
        assert not t.wants_accuracy_points(f"k{i}")  # seen, beyond the labelled keys
        t.state(f"k{i}")
    assert not t.wants_accuracy_points("k3")
