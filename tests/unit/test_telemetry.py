"""Telemetry's bookkeeping, the page server's routes, and the read throttle."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_learner.app.dashboard import DashboardServer, RemoteEngine, Serving
from stream_learner.app.run_stats import RunStats
from stream_learner.app.runner import _Throttle
from stream_learner.app.telemetry import MAX_FEATURE_LABELS, MAX_POINTS, MAX_WATCHED, OTHER_FEATURE, OTHER_KEY, RANK_EVERY, MetricsServer, Telemetry
from stream_learner.engine import EngineConfig, StepOutput
from stream_learner.learners.base import LearnerSpec
from stream_learner.records import DriftDict, FeatureDriftDict, FeatureScoreDict, MetricsDict


def _record(events: int, columns: list[int], row: list[float | None]) -> MetricsDict:
    """A metrics record as the engine builds it (``tests/unit/test_records.py`` holds the shape to its contract)."""
    return {
        "type": "metrics", "key": "k", "events": events, "labelled": events, "accuracy": 0.5, "accuracy_window": 0.5,
        "mae": None, "rmse": None, "concept": 0, "concepts": 1, "drifts": 0, "ts": float(events),
        "forgetting": {
            "average": None, "bwt": None, "average_accuracy": None, "average_mae": None, "metric": "accuracy",
            "concepts": len(columns), "columns": columns, "matrix": [row],
        },
    }  # fmt: skip


def test_the_matrix_row_follows_the_kept_concepts() -> None:
    t = Telemetry()
    t.on_outputs([StepOutput(metrics=[_record(1, [0, 1], [0.9, 0.8])])])
    assert t.sample("stream_learner_concept_accuracy_ratio", key="k", concept="1") == 0.8
    t.on_outputs([StepOutput(metrics=[_record(2, [1, 2], [0.7, None])])])  # concept 0 dropped out, 2 not evaluated yet
    assert t.sample("stream_learner_concept_accuracy_ratio", key="k", concept="0") is None
    assert t.sample("stream_learner_concept_accuracy_ratio", key="k", concept="1") == 0.7
    assert t.sample("stream_learner_concept_accuracy_ratio", key="k", concept="2") is None
    assert t.sample("stream_learner_forgetting_average_ratio", key="k") is None  # null stays unset


def test_a_regression_model_reports_its_average_error_not_an_accuracy() -> None:
    t = Telemetry()
    record = _record(1, [0, 1], [0.25, 1.5])
    record["forgetting"].update(average=1.0, bwt=-1.0, average_accuracy=None, average_mae=0.875, metric="mae")
    t.on_outputs([StepOutput(metrics=[record])])
    assert t.sample("stream_learner_average_mae", key="k") == 0.875
    assert t.sample("stream_learner_average_accuracy_ratio", key="k") is None
    assert t.sample("stream_learner_forgetting_average_ratio", key="k") == 1.0


def test_a_regression_models_matrix_row_is_an_error_not_a_percentage() -> None:
    t = Telemetry()
    record = _record(1, [0, 1], [0.25, 1.5])
    record["forgetting"].update(average_accuracy=None, average_mae=0.875, metric="mae")
    t.on_outputs([StepOutput(metrics=[record])])
    assert t.sample("stream_learner_concept_mae", key="k", concept="1") == 1.5
    assert t.sample("stream_learner_concept_accuracy_ratio", key="k", concept="1") is None


def test_the_delayed_label_window_the_last_drift_and_the_runs_end_are_exported() -> None:
    clock = iter(range(100, 200)).__next__
    t = Telemetry(clock=lambda: float(clock()))
    record = _record(10, [0], [0.5])
    record["delayed_labels"] = {"received": 9, "matched": 6, "expired": 2, "unmatched": 1, "waiting": 0, "pending": 3}
    drift: DriftDict = {"type": "drift", "key": "k", "detector": "adwin", "at_event": 7, "concept": 1, "ts": 1.0}
    task: DriftDict = {**drift, "detector": "task", "at_event": 9}  # a task switch is no detected drift
    t.on_outputs([StepOutput(metrics=[drift, task, record])])
    assert {state: t.sample("stream_learner_delayed_labels", key="k", state=state) for state in record["delayed_labels"]} == {
        "received": 9.0, "matched": 6.0, "expired": 2.0, "unmatched": 1.0, "waiting": 0.0, "pending": 3.0,
    }  # fmt: skip
    assert t.sample("stream_learner_last_drift_at_event", key="k") == 7.0
    assert t.sample("stream_learner_end_time_seconds") == 0.0
    t.on_snapshot("k", 1)
    assert t.state()["keys"]["k"]["snapshot_at"] == t.sample("stream_learner_last_snapshot_timestamp_seconds", key="k")
    t.mark_finished({"events": 10})
    assert t.sample("stream_learner_end_time_seconds") > 100


def test_each_new_matrix_row_is_kept_once_at_its_event_position() -> None:
    t = Telemetry()
    rows = [_record(100, [0], [0.9]), _record(200, [0], [0.9]), _record(300, [0, 1], [0.7, 0.8]), _record(300, [0, 1], [0.7, 0.8])]
    t.on_outputs([StepOutput(metrics=rows)])  # the run's final evaluation repeats the last row: kept once
    assert t.state()["keys"]["k"]["evaluations"] == [
        {"at_event": 100, "columns": [0], "row": [0.9]},
        {"at_event": 300, "columns": [0, 1], "row": [0.7, 0.8]},
    ]


def _feature_drift(at_event: int, names: list[str]) -> FeatureDriftDict:
    features: list[FeatureScoreDict] = [{"name": name, "psi": 1.0 - i / 10} for i, name in enumerate(names)]
    return {"type": "feature_drift", "key": "k", "features": features, "statistic": "psi", "at_event": at_event, "concept": 0, "ts": 1.0}


def test_feature_drifts_count_each_drifts_top_features_under_a_bounded_set_of_labels() -> None:
    t = Telemetry()
    first = _feature_drift(10, ["a", "b", "c", "d"])
    fresh = [_feature_drift(20 + i, [f"f{i}"]) for i in range(MAX_FEATURE_LABELS)]  # past the bound from f47 on
    t.on_outputs([StepOutput(metrics=[first, *fresh, _feature_drift(99, ["a", "f49"])])])

    def count(feature: str) -> float | None:
        return t.sample("stream_learner_feature_drifts_total", key="k", feature=feature)

    assert (count("a"), count("b"), count("c"), count("d")) == (2.0, 1.0, 1.0, None)  # only a drift's top three
    assert count("f46") == 1.0 and count("f47") is None
    assert count(OTHER_FEATURE) == 4  # f47, f48, f49, and f49 again
    labels = {s.labels["feature"] for family in t.registry.collect() for s in family.samples if "feature" in s.labels}
    assert len(labels) == MAX_FEATURE_LABELS + 1
    markers = t.state()["keys"]["k"]["feature_drifts"]
    assert [m["at_event"] for m in markers] == [10, *range(20, 20 + MAX_FEATURE_LABELS), 99]
    assert markers[0]["features"] == first["features"][:3] and t.state()["keys"]["k"]["drifts"] == []


def test_a_remote_page_marks_a_feature_drift_where_the_engines_counter_went_up() -> None:
    engine = Telemetry()
    server = MetricsServer(engine, 0, "127.0.0.1")
    remote = RemoteEngine(f"http://127.0.0.1:{server.port}/metrics")
    try:
        engine.on_outputs([StepOutput(predictions=[{"key": "k"}] * 5, metrics=[_record(5, [0], [0.5])])])
        remote.poll()
        engine.on_outputs([StepOutput(predictions=[{"key": "k"}] * 5, metrics=[_feature_drift(8, ["b", "a"])])])
        remote.poll()
        remote.poll()  # nothing new: no second marker
        [marker] = remote.state()["keys"]["k"]["feature_drifts"]
        assert marker["at_event"] == 10 and marker["features"] == [{"name": "a", "psi": None}, {"name": "b", "psi": None}]
        assert "feature_counts" not in remote.state()["keys"]["k"]
    finally:
        remote.close()
        server.close()


def test_a_remote_page_places_a_drift_where_it_happened_and_sees_the_run_finish() -> None:
    engine = Telemetry()
    server = MetricsServer(engine, 0, "127.0.0.1")
    remote = RemoteEngine(f"http://127.0.0.1:{server.port}/metrics")
    try:
        record = _record(10, [0], [0.5])
        record["delayed_labels"] = {"received": 4, "matched": 3, "expired": 1, "unmatched": 0, "waiting": 0, "pending": 2}
        drift: DriftDict = {"type": "drift", "key": "k", "detector": "adwin", "at_event": 7, "concept": 1, "ts": 1.0}
        engine.on_outputs([StepOutput(predictions=[{"key": "k"}] * 10, metrics=[drift, record])])
        engine.on_snapshot("k", 1)
        remote.poll()
        state = remote.state()
        assert [m["at_event"] for m in state["keys"]["k"]["drifts"]] == [7]  # not at the 10 predictions made by the poll
        assert state["keys"]["k"]["latest"]["delayed_labels"] == record["delayed_labels"]
        assert state["keys"]["k"]["snapshot_at"] == engine.sample("stream_learner_last_snapshot_timestamp_seconds", key="k")
        assert state["finished"] is None
        engine.describe_run("file:in.jsonl", EngineConfig(learner=LearnerSpec("hoeffding_tree", strategy="reset"), detector="adwin"))
        engine.mark_finished({"events": 10})
        remote.poll()
        assert remote.state()["finished"] is not None  # the page's badge says "finished", not "live"
        assert remote.state()["run"] == engine.state()["run"] == {"source": "file:in.jsonl", "model": "hoeffding_tree", "strategy": "reset", "detector": "adwin"}
        assert engine.sample("stream_learner_run_info", **engine.state()["run"]) == 1.0
    finally:
        remote.close()
        server.close()


def test_a_long_run_keeps_its_whole_accuracy_history_at_lower_resolution() -> None:
    t = Telemetry()
    t.on_outputs([StepOutput(metrics=[_record(i, [0], [None]) for i in range(1, 2 * MAX_POINTS + 1)])])
    points = t.state()["keys"]["k"]["points"]
    assert len(points) == MAX_POINTS
    assert points[0][0] == 2 and points[-1][0] == 2 * MAX_POINTS


def test_the_page_server_serves_only_its_own_files() -> None:
    server = DashboardServer(lambda: {"x": float("nan")}, 0)
    try:
        with urllib.request.urlopen(server.url, timeout=5) as r:
            assert b"/static/app.js" in r.read()
        with urllib.request.urlopen(server.url + "static/charts.js", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
        with urllib.request.urlopen(server.url + "api/state", timeout=5) as r:
            assert json.loads(r.read()) == {"x": None}  # JSON has no NaN
        for path in ("static/../telemetry.py", "static/%2e%2e/telemetry.py", "static/x.py", "metrics", "nothing"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(server.url + path, timeout=5)
            assert err.value.code == 404
            err.value.close()
    finally:
        server.close()


class _Clock:
    """A monotonic clock that moves only when told: by a wait, or by a read that takes time."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:  # the stop event's wait: nobody sets it here
        self.waits.append(seconds)
        self.now += seconds
        return False


@pytest.mark.parametrize("read_seconds", [0.0, 0.03, 0.08])
def test_the_throttle_holds_reading_to_its_rate(monkeypatch: pytest.MonkeyPatch, read_seconds: float) -> None:
    """1000 events at 2000/s take 0.5 s: the throttle waits what the reads did not take, and not at all when they are slower."""
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    seen: list[int] = []

    def read(n: int) -> None:
        seen.append(n)
        clock.now += read_seconds

    throttle = _Throttle(read, rate=2000, stop=clock)  # type: ignore[arg-type]
    for _ in range(10):
        throttle(100)
    assert seen == [100] * 10
    # the rate counts from the end of the first read: its 100 events take their 0.05 s, the other 900 their 0.45 s or as long as their reads
    assert clock.now - 100.0 == pytest.approx(read_seconds + max(0.5, 0.05 + 9 * read_seconds))
    if read_seconds > 0.05:
        assert clock.waits == [pytest.approx(0.05)]  # only the first read's share: the slower reads keep below the rate by themselves


_BASE = _record(0, [0], [0.5])


def _key_record(key: str, events: int, accuracy: float, labelled: int, delayed: int | None = None) -> MetricsDict:
    record = {**_BASE, "key": key, "events": events, "labelled": labelled, "accuracy": accuracy, "accuracy_window": accuracy}
    if delayed is not None:
        record["delayed_labels"] = dict.fromkeys(("received", "matched", "expired", "unmatched", "waiting", "pending"), delayed)
    return record  # type: ignore[return-value]


def _key_labels(t: Telemetry) -> dict[str, set[str]]:
    """Each metric family's distinct ``key`` label values in the exposition."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(t.exposition().decode()):
        for s in family.samples:
            if "key" in s.labels:
                out.setdefault(family.name, set()).add(s.labels["key"])
    return out


def test_a_fleet_of_100000_keys_keeps_the_key_label_to_the_top_n_and_other() -> None:
    n, top = 100_000, 100
    t = Telemetry(top_keys=top)
    outputs = []
    for i in range(n):
        key = f"user-{i}"
        drift: DriftDict = {"type": "drift", "key": key, "detector": "adwin", "at_event": 1, "concept": 1, "ts": 1.0}
        outputs.append(StepOutput(predictions=[{"key": key}] * (1 + i % 3), metrics=[drift, _key_record(key, 3, (i % 10) / 10, labelled=2, delayed=i % 2)]))
    t.on_outputs(outputs)
    for i in range(n):
        t.on_step(f"user-{i}", 1, 0.001)
        t.on_snapshot(f"user-{i}", 1)
    labels = _key_labels(t)
    assert labels and all(len(values) <= top + 1 for values in labels.values()), {name: len(v) for name, v in labels.items()}
    assert labels["stream_learner_predictions"] == {f"user-{i}" for i in range(top)} | {OTHER_KEY}
    # the counts add up: every key's, split between its own series and "other"
    others = range(top, n)
    assert t.sample("stream_learner_predictions_total", key=OTHER_KEY) == sum(1 + i % 3 for i in others)
    assert sum(t.sample("stream_learner_predictions_total", key=f"user-{i}") for i in range(top)) + t.sample(  # type: ignore[misc]
        "stream_learner_predictions_total", key=OTHER_KEY
    ) == sum(1 + i % 3 for i in range(n))
    assert t.sample("stream_learner_drifts_total", key=OTHER_KEY, detector="adwin") == n - top
    assert t.sample("stream_learner_snapshots_total", key=OTHER_KEY) == n - top
    assert t.sample("stream_learner_learner_batch_duration_seconds_count", key=OTHER_KEY) == n - top
    # gauges: a ratio is the mean over the other keys, a count their sum
    assert t.sample("stream_learner_accuracy_ratio", key=OTHER_KEY) == pytest.approx(sum((i % 10) / 10 for i in others) / len(others))
    assert t.sample("stream_learner_labelled_events", key=OTHER_KEY) == 2 * len(others)
    assert t.sample("stream_learner_delayed_labels", key=OTHER_KEY, state="pending") == sum(i % 2 for i in others)
    assert t.sample("stream_learner_accuracy_ratio", key="user-7") == 0.7
    assert t.sample("stream_learner_keys") == n and t.sample("stream_learner_keys_in_drift") == n
    # the page's history is kept for the labelled keys only
    assert len(t._histories) == top


def test_other_keys_gauges_follow_each_keys_latest_figures() -> None:
    t = Telemetry(top_keys=1)
    t.on_outputs([StepOutput(metrics=[_key_record("a", 10, 0.9, 10), _key_record("b", 10, 0.5, 10), _key_record("c", 10, 0.7, 10)])])
    assert t.sample("stream_learner_accuracy_ratio", key=OTHER_KEY) == pytest.approx(0.6)
    t.on_outputs([StepOutput(metrics=[_key_record("b", 20, 0.8, 20)])])  # b's newer record replaces its older one
    assert t.sample("stream_learner_accuracy_ratio", key=OTHER_KEY) == pytest.approx(0.75)
    assert t.sample("stream_learner_labelled_events", key=OTHER_KEY) == 30
    assert t.sample("stream_learner_concept_accuracy_ratio", key=OTHER_KEY, concept="0") is None  # a matrix is one key's


def test_the_fleet_hooks_feed_the_fleet_metrics_and_the_page() -> None:
    t = Telemetry()
    stats = RunStats(t)
    stats.key_evicted("a", 0.002)
    stats.key_evicted("b", 0.003)
    stats.key_restored("a", 0.004)
    stats.key_lost("b")
    stats.resident_keys(7)
    assert t.sample("stream_learner_key_eviction_seconds_count") == 2 and t.sample("stream_learner_key_restore_seconds_count") == 1
    assert t.sample("stream_learner_key_eviction_seconds_sum") == pytest.approx(0.005)
    assert t.sample("stream_learner_resident_keys") == 7 and t.sample("stream_learner_lost_states_total") == 1
    fleet = t.state()["fleet"]
    assert {k: fleet[k] for k in ("keys", "labelled_keys", "resident", "in_drift", "evictions", "restores", "lost_states")} == {
        "keys": 0, "labelled_keys": 0, "resident": 7, "in_drift": 0, "evictions": 2, "restores": 1, "lost_states": 1,
    }  # fmt: skip


def test_a_key_is_in_drift_for_its_next_thousand_events() -> None:
    t = Telemetry()
    drift: DriftDict = {"type": "drift", "key": "k", "detector": "adwin", "at_event": 100, "concept": 1, "ts": 1.0}
    t.on_outputs([StepOutput(metrics=[drift, _record(100, [0], [0.5])])])
    assert t.sample("stream_learner_keys_in_drift") == 1
    t.on_outputs([StepOutput(metrics=[_record(1099, [0], [0.5])])])
    assert t.sample("stream_learner_keys_in_drift") == 1
    t.on_outputs([StepOutput(metrics=[_record(1100, [0], [0.5])])])
    assert t.sample("stream_learner_keys_in_drift") == 0


def test_the_page_state_holds_one_key_and_the_search_finds_any() -> None:
    t = Telemetry(top_keys=2)
    t.on_outputs([StepOutput(predictions=[{"key": f"sensor-{i:03d}"}], metrics=[_key_record(f"sensor-{i:03d}", 1, 0.5, 1)]) for i in range(300)])
    state = t.state()
    assert list(state["keys"]) == ["sensor-000"] and state["keys"]["sensor-000"]["history"] == "whole run"
    assert state["fleet"]["keys"] == 300 and state["fleet"]["labelled_keys"] == 2
    assert t.search_keys("SENSOR-1", limit=5) == {"keys": [f"sensor-{i}" for i in range(100, 105)], "matches": 100, "total": 300}
    assert t.search_keys("-29")["keys"] == [f"sensor-{i}" for i in range(290, 300)]
    assert t.search_keys("nothing") == {"keys": [], "matches": 0, "total": 300}
    # an unlabelled key shows its latest figures at once, and its history from when the page first shows it
    shown = t.state("sensor-250")["keys"]["sensor-250"]
    assert shown["history"] == "since shown" and shown["points"] == [] and shown["latest"]["accuracy"] == 0.5
    assert shown["latest"]["forgetting"]["matrix"] == []
    t.on_outputs([StepOutput(metrics=[_key_record("sensor-250", 2, 0.75, 2)])])
    assert [p[:2] for p in t.state("sensor-250")["keys"]["sensor-250"]["points"]] == [[2, 0.75]]
    for i in range(MAX_WATCHED + 1):  # showing more keys forgets the least recently shown one's history
        t.state(f"sensor-{100 + i}")
    assert "sensor-250" not in t._histories and len(t._histories) == 2 + MAX_WATCHED
    assert t.state("no such key")["keys"].keys() == {"sensor-000"}


def test_the_page_server_searches_keys_and_passes_the_key_asked_for() -> None:
    t = Telemetry(top_keys=1)
    t.on_outputs([StepOutput(predictions=[{"key": name}]) for name in ("alpha", "beta", "gamma")])
    server = DashboardServer(t.state, 0, search=t.search_keys)
    plain = DashboardServer(lambda: {"keys": {"x": {}, "y": {}, "xy": {}}}, 0)  # a state listing its keys: searched as they are
    try:
        with urllib.request.urlopen(server.url + "api/keys?q=ETA&limit=5", timeout=5) as r:
            assert json.loads(r.read()) == {"keys": ["beta"], "matches": 1, "total": 3}
        with urllib.request.urlopen(server.url + "api/state?key=gamma", timeout=5) as r:
            assert list(json.loads(r.read())["keys"]) == ["gamma"]
        with urllib.request.urlopen(plain.url + "api/keys?q=x", timeout=5) as r:
            assert json.loads(r.read()) == {"keys": ["x", "xy"], "matches": 2, "total": 3}
    finally:
        server.close()
        plain.close()


def test_a_keys_figures_are_its_champions_and_each_candidate_has_its_line() -> None:
    t = Telemetry()
    champion = {**_key_record("k", 100, 0.8, 100), "candidate": "logreg", "champion": True}
    challenger = {**_key_record("k", 100, 0.6, 100), "candidate": "hoeffding_tree", "champion": False}
    drift = {"type": "drift", "key": "k", "detector": "adwin", "at_event": 90, "concept": 1, "ts": 1.0, "candidate": "hoeffding_tree", "champion": False}
    promotion = {
        "type": "promotion", "key": "k", "champion": "logreg", "challenger": "hoeffding_tree", "at_event": 100, "applied": True, "ts": 2.0,
        "evidence": {},
    }  # fmt: skip
    t.on_outputs([StepOutput(metrics=[champion, challenger, drift, promotion])])  # type: ignore[list-item]
    assert t.sample("stream_learner_accuracy_ratio", key="k") == 0.8  # the challenger's record does not overwrite it
    assert t.sample("stream_learner_drifts_total", key="k", detector="adwin") is None
    assert t.sample("stream_learner_candidate_accuracy_window_ratio", key="k", candidate="hoeffding_tree") == 0.6
    assert t.sample("stream_learner_candidate_accuracy_window_ratio", key="k", candidate="logreg") == 0.8
    assert t.sample("stream_learner_promotions_total", key="k", applied="true") == 1
    entry = t.state()["keys"]["k"]
    assert entry["candidates"] == {"logreg": [[100, 0.8]], "hoeffding_tree": [[100, 0.6]]}
    assert entry["promotions"] == [{"at_event": 100, "champion": "logreg", "challenger": "hoeffding_tree", "applied": True, "ts": 2.0}]
    assert entry["drifts"] == [] and [p[1] for p in entry["points"]] == [0.8]


def test_serving_takes_the_runs_metrics_top_keys() -> None:
    args = argparse.Namespace(metrics_port=0, metrics_host="127.0.0.1", dashboard=None, metrics_top_keys=3, linger=0.0)
    with Serving(args, say=lambda line: None) as serving:
        serving.telemetry.on_outputs([StepOutput(predictions=[{"key": f"k{i}"}]) for i in range(5)])
        assert serving.telemetry.top_keys == 3 and serving.telemetry.sample("stream_learner_predictions_total", key=OTHER_KEY) == 2


def test_the_page_ranks_the_keys_every_few_seconds_and_once_more_at_the_end() -> None:
    now = [100.0]
    t = Telemetry(top_keys=1, clock=lambda: now[0])
    t.on_outputs([StepOutput(predictions=[{"key": "a"}] * 5, metrics=[_key_record("a", 5, 0.9, 5)])])
    assert [e["key"] for e in t.state()["fleet"]["top_keys"]["by_events"]] == ["a"]
    t.on_outputs([StepOutput(predictions=[{"key": "b"}] * 9, metrics=[_key_record("b", 9, 0.4, 9)])])
    now[0] += RANK_EVERY / 2
    assert [e["key"] for e in t.state()["fleet"]["top_keys"]["by_events"]] == ["a"]  # not ranked again yet
    now[0] += RANK_EVERY / 2
    ranked = t.state()["fleet"]["top_keys"]
    assert [e["key"] for e in ranked["by_events"]] == ["b", "a"] and ranked["ranked_at"] == now[0]
    assert [(e["key"], e["accuracy"]) for e in ranked["worst_accuracy"]] == [("b", 0.4)]  # a has fewer labelled events than the mean key
    t.on_outputs([StepOutput(predictions=[{"key": "c"}] * 20)])
    t.mark_finished({})
    assert t.state()["fleet"]["top_keys"]["by_events"][0]["key"] == "c"  # the end ranks at once


def test_an_earlier_concepts_model_back_counts_as_reuse_and_leaves_the_drift_figures_alone() -> None:
    t = Telemetry()
    evidence = {"test": "mcnemar_exact", "statistic": 1.0, "p_value": 0.001, "n": 150, "alpha": 0.002, "live_error": 0.2, "stored_error": 0.1}
    reuse = {"type": "drift", "key": "k", "detector": "recurring", "at_event": 700, "concept": 2, "reused_concept": 0, "evidence": evidence, "ts": 0.0}
    t.on_outputs([StepOutput(metrics=[reuse])])
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(t.exposition().decode()) for s in f.samples}
    assert values[("stream_learner_concepts_reused_total", (("key", "k"),))] == 1.0
    assert not any(name == "stream_learner_drifts_total" for name, _ in values)
    assert not any(name == "stream_learner_last_drift_at_event" for name, _ in values)
