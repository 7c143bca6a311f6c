"""The built-in page in a real browser (headless Chromium) while a run streams events.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs
them where apt can) and Selenium (the ``dev`` extra). Where Chromium cannot be
had, this test is skipped with the reason, never silently.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
DRIFT_RGB = (214, 39, 40)  # app.js DRIFT_COLOR, #d62728
# 9000 events, concepts changing at 3000 and 6000, read at 1000 events/s: about 9 s of live stream.
SOURCE = "synthetic:sea?every=3000&concepts=3"
RATE = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(
            f"BROWSER TEST SKIPPED: {', '.join(missing)} not installed. Install Debian's chromium and chromium-driver "
            "(`make browser-deps`, or `apt-get install -y chromium chromium-driver`) to run it."
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="BROWSER TEST SKIPPED: selenium is missing (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,1200",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class _Stderr:
    """Drains a process's stderr on a thread, so it never blocks; waits for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> str:
        with self._new:
            found = self._new.wait_for(lambda: any(x.startswith(prefix) for x in self.lines), timeout)
        if not found:
            pytest.fail(f"no {prefix!r} line within {timeout}s; stderr so far:\n{''.join(self.lines)}")
        return next(x for x in self.lines if x.startswith(prefix)).strip()

    def close(self) -> None:
        self._thread.join(30)
        self.process.stderr.close()  # type: ignore[union-attr]


DRIFT_PIXELS_JS = """
const c = document.getElementById('accuracy');
const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (Math.abs(data[i] - arguments[0]) < 24 && Math.abs(data[i + 1] - arguments[1]) < 24 && Math.abs(data[i + 2] - arguments[2]) < 24 && data[i + 3] > 200) n++;
}
return n;
"""


def test_live_page_draws_accuracy_with_drift_markers_during_a_run(browser: Any, tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_learner.app.cli", "run", "--source", SOURCE, "--model", "hoeffding_tree",
         "--metrics-every", "250", "--rate", str(RATE), "--dashboard", str(port), "--quiet", "--out", str(tmp_path / "out"),
         "--linger", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stderr = _Stderr(process)
    try:
        line = stderr.wait_for("dashboard:", timeout=120)
        assert line == f"dashboard: http://127.0.0.1:{port}/"
        browser.get(f"http://127.0.0.1:{port}/")
        state = lambda: browser.execute_script("return window.dashboard")  # noqa: E731

        # live: accuracy points drawn while the stream still flows
        live = _wait("accuracy points while the run is live", lambda: (s := state()) and s["accuracyPoints"] > 0 and s, timeout=120)
        assert live["state"]["finished"] is None, "the run ended before the page saw it live; the test needs a slower source"
        assert browser.find_element("id", "status").text == "live"
        assert live["driftMarkers"] == 0 or live["state"]["keys"]["default"]["drifts"]

        # a drift comes, and the page marks it
        after = _wait("a drift marker", lambda: (s := state()) and s["driftMarkers"] >= 1 and s, timeout=60)
        key = after["state"]["keys"]["default"]
        assert after["driftMarkers"] == len(key["drifts"]) >= 1
        assert int(browser.find_element("id", "accuracy").get_attribute("data-drift-markers")) == after["driftMarkers"]
        assert browser.execute_script(DRIFT_PIXELS_JS, *DRIFT_RGB) > 100, "no drift-coloured pixels on the accuracy chart"
        first_drift = key["drifts"][0]["at_event"]
        assert 2500 <= first_drift <= 4500, first_drift  # SEA changes concept at event 3000

        # the run ends; the page says so and shows the whole run
        done = _wait("the finished run", lambda: (s := state()) and s["state"]["finished"] and s, timeout=60)
        summary = done["state"]["finished"]
        points = done["state"]["keys"]["default"]["points"]
        assert done["accuracyPoints"] == len(points) > 9000 // 250 - 5
        assert points[-1][1] == summary["accuracy"]
        assert done["driftMarkers"] == summary["drifts"]
        assert done["throughputPoints"] >= 2
        evaluations = done["state"]["keys"]["default"]["evaluations"][-20:]  # the matrix as the page draws it: a row per evaluation
        assert done["matrixCells"] == sum(v is not None for e in evaluations for v in e["row"]) and done["matrixRows"] == len(evaluations) >= 2
        assert done["curves"] == len({c for e in evaluations for c in e["columns"]}) >= 2  # a forgetting curve per concept
        assert browser.find_element("id", "status").text == "finished"
        assert browser.find_element("id", "t-events").text == "9,000"

        # finer than the metrics records: the accuracy of each 100 labelled events, drawn as its own line
        assert done["finePoints"] == len(done["state"]["keys"]["default"]["fine_points"]) == 9000 // 100 > done["accuracyPoints"]
        assert int(browser.find_element("id", "accuracy").get_attribute("data-fine-points")) == done["finePoints"]
        # the latency of every prediction, as its median and p99 over time
        latency = done["state"]["latency"]
        assert latency["events"] == 9000 == sum(p[3] for p in latency["points"])
        assert done["latencyPoints"] == len(latency["points"]) >= 5  # a point each half second of the ~9 s run
        assert int(browser.find_element("id", "latency").get_attribute("data-points")) == done["latencyPoints"]
        assert browser.find_element("id", "t-latency").text.endswith(" ms")
        assert done["lastError"] is None

        # offline: everything the page loaded came from the engine itself
        origins = browser.execute_script("return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
        assert set(origins) <= {f"http://127.0.0.1:{port}"}, origins
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            stderr.close()
    assert process.returncode == 0, "".join(stderr.lines)
