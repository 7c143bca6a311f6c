"""The page's key search in a real browser (headless Chromium), over a fleet of 20,000 keys.

Uses the Chromium fixture of ``test_dashboard_browser.py`` (skipped, with the
reason, where Chromium cannot be had) and a Telemetry fed in this process, so
the keys and their figures are known exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from test_dashboard_browser import _wait, browser  # noqa: F401 - the fixture, used by name

from stream_learner.app.dashboard import DashboardServer
from stream_learner.app.telemetry import OTHER_KEY, SEARCH_LIMIT, Telemetry
from stream_learner.engine import StepOutput

pytestmark = pytest.mark.integration

KEYS = 20_000
TOP = 5


def _metrics(key: str, events: int, accuracy: float) -> dict[str, Any]:
    return {
        "type": "metrics", "key": key, "events": events, "labelled": events, "accuracy": accuracy, "accuracy_window": accuracy,
        "mae": None, "rmse": None, "concept": 0, "concepts": 1, "drifts": 0, "ts": 1.0,
        "forgetting": {"average": None, "bwt": None, "average_accuracy": None, "average_mae": None, "metric": "accuracy", "concepts": 1, "columns": [0], "matrix": [[accuracy]]},
    }  # fmt: skip


def _fleet() -> Telemetry:
    t = Telemetry(top_keys=TOP)
    outputs = [StepOutput(predictions=[{"key": f"device-{i:05d}"}] * 4, metrics=[_metrics(f"device-{i:05d}", 4, (i % 4) / 4)]) for i in range(KEYS)]
    t.on_outputs(outputs)
    t.on_resident(1000)
    return t


def test_the_key_filter_searches_a_large_fleet_on_the_server_and_shows_the_key_picked(browser: Any) -> None:  # noqa: F811
    telemetry = _fleet()
    page = DashboardServer(telemetry.state, 0, search=telemetry.search_keys)
    try:
        browser.get(page.url)
        first = _wait("the first draw and key list", lambda: (d := browser.execute_script("return window.dashboard")) and d["draws"] and d["keySearches"] and d, 30)
        assert first["keyOptions"] == SEARCH_LIMIT and first["keyMatches"] == KEYS  # a page of keys, never 20,000 options
        assert list(first["state"]["keys"]) == ["device-00000"]  # one key's history travels, not the fleet's
        assert browser.find_element("id", "key-count").text == "20,000 keys"
        assert browser.find_element("id", "f-keys").text == "20,000" and browser.find_element("id", "f-resident").text == "1,000"

        # the fleet card: the busiest keys (all have 4 events: by name) and the least accurate (accuracy 0: every 4th key); a click shows one
        assert first["rankedRows"] == 20
        worst = browser.find_elements("css selector", "#worst tbody button.key")
        assert [b.text for b in worst[:3]] == ["device-00000", "device-00004", "device-00008"]
        worst[2].click()
        _wait("device-00008 shown", lambda: "device-00008" in browser.execute_script("return window.dashboard.state.keys"), 30)
        assert browser.find_element("id", "t-accuracy").text == "0.00 %"

        browser.find_element("id", "key-filter").send_keys("9999")
        _wait("the filtered list", lambda: browser.execute_script("return window.dashboard.keyMatches") == 2, 30)
        names = [o.get_attribute("value") for o in Select(browser.find_element("id", "key")).options]
        assert names == ["device-09999", "device-19999"]
        assert browser.find_element("id", "key-count").text == "2 of 20,000 keys"
        # the first match is shown: an unlabelled key (beyond the top 5), its latest figures at once, its history from now on
        shown = _wait("device-09999 shown", lambda: (d := browser.execute_script("return window.dashboard")) and "device-09999" in d["state"]["keys"] and d, 30)
        assert browser.find_element("id", "t-accuracy").text == "75.00 %"  # 9999 % 4 == 3
        assert browser.find_element("id", "history-note").is_displayed()
        assert shown["state"]["keys"]["device-09999"]["history"] == "since shown"

        Select(browser.find_element("id", "key")).select_by_value("device-19999")
        _wait("device-19999 shown", lambda: "device-19999" in browser.execute_script("return window.dashboard.state.keys"), 30)
        assert browser.find_element("id", "t-predictions").text  # the run's tiles stay
        filter_box = browser.find_element("id", "key-filter")
        filter_box.send_keys(Keys.CONTROL, "a")
        filter_box.send_keys("device-0000")
        _wait("the next list", lambda: browser.execute_script("return window.dashboard.keyMatches") == 10, 30)
        assert browser.find_element("id", "key-count").text == "10 of 20,000 keys"
        _wait("a labelled key shown", lambda: "device-00000" in browser.execute_script("return window.dashboard.state.keys"), 30)
        assert not browser.find_element("id", "history-note").is_displayed()
        assert OTHER_KEY not in [o.get_attribute("value") for o in Select(browser.find_element("id", "key")).options]
        assert browser.execute_script("return window.dashboard.lastError") is None
    finally:
        page.close()
