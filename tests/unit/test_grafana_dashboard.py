"""The provisioned Grafana dashboard asks only for metrics the engine exports, and the deploy files agree."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stream_learner.app.telemetry import Telemetry
from stream_learner.engine import EngineConfig, StepOutput

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "stream-learner.json"
METRIC = re.compile(r"\bstream_learner_[a-zA-Z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _fed_telemetry() -> Telemetry:
    """A Telemetry fed what a run feeds it: reads, predictions, metrics, drift and feature-drift records, dead letters, steps, snapshots, lag."""
    t = Telemetry()
    t.on_read(10)
    record = {
        "type": "metrics", "key": "default", "events": 10, "labelled": 10, "accuracy": 0.8, "accuracy_window": 0.7, "mae": 0.5,
        "rmse": 0.6, "concept": 1, "concepts": 2, "drifts": 1, "ts": 1.0,
        "forgetting": {
            "average": 0.1, "bwt": -0.1, "average_accuracy": 0.75, "average_mae": 0.2, "metric": "accuracy", "concepts": 2, "columns": [0, 1],
            "matrix": [[0.9, None], [0.8, 0.7]],
        },
        "delayed_labels": {"received": 9, "matched": 6, "expired": 2, "unmatched": 1, "waiting": 0, "pending": 3},
    }
    regression = {**record, "key": "regression", "forgetting": {**record["forgetting"], "metric": "mae", "matrix": [[0.3, 0.4]]}}
    drift = {"type": "drift", "key": "default", "detector": "adwin", "at_event": 5, "concept": 1, "ts": 1.0}
    task = {**drift, "detector": "task"}
    inputs = {"type": "feature_drift", "key": "default", "features": [{"name": "x", "psi": 0.4}], "statistic": "psi", "at_event": 7, "concept": 1, "ts": 1.0}
    dead = {"reason": "invalid_json", "error": "invalid JSON: x", "raw": "x", "origin": {"topic": "t", "partition": 0, "offset": 1}, "ts": 1.0}
    t.on_outputs([StepOutput(predictions=[{"key": "default"}] * 9, metrics=[drift, task, inputs, record, regression]), StepOutput(dead_letters=[dead])])
    candidate = {**record, "candidate": "challenger", "champion": False}
    promotion = {"type": "promotion", "key": "default", "champion": "a", "challenger": "b", "evidence": {}, "at_event": 9, "applied": True, "ts": 1.0}
    t.on_outputs([StepOutput(metrics=[candidate, promotion])])
    t.on_evicted("default", 0.001)
    t.on_restored("default", 0.002)
    t.on_resident(1)
    t.on_step("default", 9, 0.01)
    t.on_latency([(0.004, 9)])
    t.on_snapshot("default", 1)
    t.on_snapshot("default", None)
    t.set_consumer_lag("events", 0, 42)
    t.describe_run("synthetic:sea", EngineConfig())
    return t


def _sample_names(telemetry: Telemetry) -> set[str]:
    """Names of the samples actually present in the exposition (not just declared)."""
    text = telemetry.exposition().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) of every panel target, annotation and template variable."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in _panels(dashboard) for t in p.get("targets", [])]
    found += [(f"annotation {a['name']!r}", a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        found.append((f"variable {var['name']!r}", query["query"] if isinstance(query, dict) else query))
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_every_query_names_a_metric_the_engine_exports(dashboard: dict[str, Any]) -> None:
    telemetry = _fed_telemetry()
    declared = telemetry.metric_names()
    present = _sample_names(telemetry)
    queries = _queries(dashboard)
    assert len(queries) >= 15
    for where, expr in queries:
        names = METRIC.findall(expr)
        assert names, f"{where}: {expr!r} names no stream_learner_ metric"
        for name in names:
            family = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s) and name.removesuffix(s) in declared), name)
            assert family in declared, f"{where}: {name} is not a metric the engine exports ({sorted(declared)})"
            assert name in present, f"{where}: {name} never gets a sample"


def test_the_dashboard_covers_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(expr for _, expr in _queries(dashboard))
    for needed in (
        "stream_learner_events_total", "stream_learner_predictions_total", "stream_learner_step_per_event_seconds_bucket",
        "stream_learner_accuracy_ratio", "stream_learner_accuracy_window_ratio", "stream_learner_drifts_total",
        "stream_learner_concept", "stream_learner_forgetting_average_ratio", "stream_learner_backward_transfer_ratio",
        "stream_learner_concept_accuracy_ratio", "stream_learner_dead_letters_total", "stream_learner_last_snapshot_timestamp_seconds",
        "stream_learner_snapshot_failures_total", "stream_learner_kafka_consumer_lag_messages", "stream_learner_feature_drifts_total",
        "stream_learner_concept_mae", "stream_learner_delayed_labels", "stream_learner_event_latency_seconds_bucket",
    ):
        assert re.search(rf"\b{needed}\b", exprs), needed
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs
    for counter in ("stream_learner_drifts_total", "stream_learner_feature_drifts_total"):  # error and input drifts, each its own marker
        assert any(counter in a.get("expr", "") for a in dashboard["annotations"]["list"]), counter


def test_the_per_event_step_time_is_not_presented_as_a_latency(dashboard: dict[str, Any]) -> None:
    """The engine measures each batch's step time divided by its events: a batch average, which no panel may call a latency."""
    panels = [p for p in _panels(dashboard) if any("stream_learner_step_per_event_seconds" in t["expr"] for t in p.get("targets", []))]
    assert panels
    for panel in panels:
        words = " ".join([panel["title"], panel["description"], *(t.get("legendFormat", "") for t in panel["targets"])]).lower()
        assert "latency" not in words, panel["title"]
        assert "per event" in panel["title"].lower() and "batch" in panel["title"].lower(), panel["title"]


def test_the_event_latency_panel_draws_its_median_and_p99_over_every_key(dashboard: dict[str, Any]) -> None:
    [panel] = [p for p in _panels(dashboard) if any("stream_learner_event_latency_seconds_bucket" in t["expr"] for t in p.get("targets", []))]
    exprs = [t["expr"] for t in panel["targets"]]
    assert [e.split(",")[0] for e in exprs] == ["histogram_quantile(0.5", "histogram_quantile(0.99"]
    assert all("sum by (le) (rate(stream_learner_event_latency_seconds_bucket[" in e for e in exprs)  # the histogram has no key label
    assert "latency" in panel["title"].lower() and panel["fieldConfig"]["defaults"]["unit"] == "s"


COUNTS = re.compile(r"stream_learner_(labelled_events|delayed_labels|\w+_total)\b")
ERRORS = re.compile(r"stream_learner_(mean_absolute_error|concept_mae|average_mae)\b")


def test_no_panel_draws_counts_and_errors_on_one_axis(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        exprs = " ".join(t["expr"] for t in panel.get("targets", []))
        assert not (COUNTS.search(exprs) and ERRORS.search(exprs)), panel["title"]


def test_a_panel_in_percent_shows_only_ratios(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        if panel.get("fieldConfig", {}).get("defaults", {}).get("unit") == "percentunit":
            names = {n for t in panel["targets"] for n in METRIC.findall(t["expr"])}
            assert names and all(n.endswith("_ratio") for n in names), (panel["title"], names)


def test_panels_are_well_formed_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert [t["refId"] for t in p["targets"]] == [chr(65 + i) for i in range(len(p["targets"]))]
        for x, y in itertools.product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])):
            assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
            cells[(x, y)] = p["title"]


def test_the_fleet_row_shows_the_fleet_metrics(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(expr for _, expr in _queries(dashboard))
    for needed in (
        "stream_learner_keys", "stream_learner_resident_keys", "stream_learner_keys_in_drift", "stream_learner_key_eviction_seconds_count",
        "stream_learner_key_restore_seconds_count", "stream_learner_key_restore_seconds_bucket", "stream_learner_candidate_accuracy_window_ratio",
        "stream_learner_promotions_total", "stream_learner_lost_states_total",
    ):  # fmt: skip
        assert re.search(rf"\b{needed}\b", exprs), needed
    assert any(p["type"] == "row" and p["title"] == "Fleet" for p in dashboard["panels"])


def test_provisioning_and_scrape_config_agree() -> None:
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert [(d["uid"], d["type"], d["url"]) for d in datasources] == [("prometheus", "prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/stream-learner.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    scrape = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())["scrape_configs"]
    job = next(j for j in scrape if j["job_name"] == "stream-learner")
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["stream-learner:9100"]
    assert job["sample_limit"] >= 10 * 6500  # a guard well above what an engine exports (test_telemetry: 100,000 keys stay bounded)


def test_the_readme_documents_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in sorted(Telemetry().metric_names()) if not re.search(rf"^- `{name}(`|\{{)", readme, re.M)]
    assert not missing, f"README does not list {missing}"


def test_metrics_are_registered_per_telemetry_not_on_import() -> None:
    from prometheus_client import REGISTRY

    a, b = Telemetry(), Telemetry()
    a.on_read(5)
    assert (a.sample("stream_learner_events_total"), b.sample("stream_learner_events_total")) == (5.0, 0.0)
    assert REGISTRY.get_sample_value("stream_learner_events_total") is None
    labels = {name for family in a.registry.collect() for s in family.samples for name in s.labels}
    fed = {name for family in _fed_telemetry().registry.collect() for s in family.samples for name in s.labels}
    assert labels <= fed <= {
        "key", "reason", "detector", "topic", "partition", "concept", "feature", "state", "le", "source", "model", "strategy", "candidate", "applied",
    }  # fmt: skip
