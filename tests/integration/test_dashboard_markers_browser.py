"""The page in a real browser (headless Chromium): drift markers, forgetting curves, the matrix by event position, delayed labels, snapshot age.

Uses the Chromium fixture of ``test_dashboard_browser.py`` (skipped, with the
reason, where Chromium cannot be had) and a fixed page state, so what is
drawn is known exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_dashboard_browser import _wait, browser  # noqa: F401 - the fixture, used by name

from stream_learner.app.dashboard import DashboardServer

pytestmark = pytest.mark.integration

FEATURE_DRIFT_RGB = (148, 103, 189)  # app.js FEATURE_DRIFT_COLOR, #9467bd

COLOUR_PIXELS_JS = """
const c = document.getElementById('accuracy');
const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (Math.abs(data[i] - arguments[0]) < 24 && Math.abs(data[i + 1] - arguments[1]) < 24 && Math.abs(data[i + 2] - arguments[2]) < 24 && data[i + 3] > 200) n++;
}
return n;
"""

HOVER_JS = """
const c = document.getElementById('accuracy');
const marker = c.markerTitles.find((m) => m.title.startsWith(arguments[0]));
const box = c.getBoundingClientRect();
c.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + marker.x, clientY: box.top + 40, bubbles: true}));
return c.title;
"""


def _state() -> dict[str, Any]:
    feature_drift = {"at_event": 1500, "concept": 0, "features": [{"name": "x", "psi": 0.53}, {"name": "y", "psi": 0.31}], "ts": 1.2}
    key = {
        "predictions": 3000,
        "points": [[1000, 0.9, 0.9, 0, 1.0], [2000, 0.85, 0.8, 0, 1.5], [3000, 0.8, 0.7, 1, 2.0]],
        "drifts": [{"at_event": 2500, "concept": 1, "detector": "adwin", "ts": 1.8}],
        "feature_drifts": [feature_drift],
        "snapshot_at": 10.0 - 42,
        "evaluations": [
            {"at_event": 1500, "columns": [0], "row": [0.9]},
            {"at_event": 2500, "columns": [0, 1], "row": [0.8, 0.6]},
            {"at_event": 3000, "columns": [0, 1], "row": [0.75, 0.85]},
        ],
        "latest": {
            "key": "k", "events": 3000, "accuracy": 0.8, "accuracy_window": 0.7, "concept": 1, "concepts": 2, "drifts": 1, "forgetting": {},
            "delayed_labels": {"received": 2900, "matched": 2700, "expired": 150, "unmatched": 50, "waiting": 12, "pending": 88},
        },
    }  # fmt: skip
    return {
        "now": 10.0, "started": 0.0, "finished": None,
        "run": {"source": "file:events.jsonl", "model": "hoeffding_tree", "strategy": "none", "detector": "adwin"}, "totals": {"events": 3000, "predictions": 3000, "dead_letters": 0},
        "throughput": [], "dead_letters": {"by_reason": {}, "recent": []}, "keys": {"k": key},
    }  # fmt: skip


def test_the_page_draws_feature_drifts_apart_and_shows_the_delayed_labels_and_the_snapshot_age(browser: Any) -> None:  # noqa: F811
    state = _state()
    page = DashboardServer(lambda: state, 0)
    try:
        browser.get(page.url)
        drawn = _wait("the first draw", lambda: browser.execute_script("return window.dashboard.draws >= 1 && window.dashboard"), timeout=30)
        assert (drawn["driftMarkers"], drawn["featureDriftMarkers"]) == (1, 1)
        assert browser.find_element("id", "accuracy").get_attribute("data-feature-drift-markers") == "1"
        assert browser.find_element("id", "t-feature-drifts").text == "1"
        assert browser.execute_script(COLOUR_PIXELS_JS, *FEATURE_DRIFT_RGB) > 50, "no feature-drift-coloured pixels on the accuracy chart"
        assert browser.execute_script(HOVER_JS, "feature drift") == "feature drift at event 1,500: x (psi 0.53), y (psi 0.31)"
        assert browser.execute_script(HOVER_JS, "drift (adwin)") == "drift (adwin) at event 2,500: concept 1"
        assert browser.find_element("id", "t-snapshot").text == "42 s ago"
        assert browser.find_element("id", "run").text == "file:events.jsonl \u00b7 hoeffding_tree \u00b7 strategy none \u00b7 detector adwin"
        assert (drawn["curves"], drawn["matrixRows"], drawn["matrixCells"]) == (2, 3, 5)  # a curve per concept; concept 1 unseen at 1500
        assert browser.find_element("id", "delayed").is_displayed()
        shown = {s: browser.find_element("id", f"d-{s}").text for s in ("received", "matched", "expired", "unmatched", "waiting", "pending")}
        assert shown == {"received": "2,900", "matched": "2,700", "expired": "150", "unmatched": "50", "waiting": "12", "pending": "88"}
        del state["keys"]["k"]["latest"]["delayed_labels"]  # a run that joins no delayed labels: no such section
        draws = drawn["draws"]
        _wait("the next draw", lambda: browser.execute_script("return window.dashboard.draws") > draws, timeout=30)
        assert not browser.find_element("id", "delayed").is_displayed()
    finally:
        page.close()
