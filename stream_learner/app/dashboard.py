"""The built-in live page: a small HTTP server on localhost.

``GET /`` is the page (``static/index.html`` with its own script and style,
nothing from a CDN), ``GET /api/state?key=K`` the JSON the page polls every
second (the run, and one key's history), ``GET /api/keys?q=TEXT&limit=N`` the
keys containing TEXT (a fleet's 100,000 keys never travel at once),
``GET /metrics`` the Prometheus exposition of the same run.

The state comes from a callable, so the page can show an engine running in
this process (:meth:`Telemetry.state <stream_learner.app.telemetry.Telemetry.state>`)
or one elsewhere, read through its ``/metrics`` (:class:`RemoteEngine`).
"""

from __future__ import annotations

import argparse
import errno
import inspect
import json
import logging
import math
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from stream_learner.app.args import seconds_argument
from stream_learner.app.latency import quantile, summary
from stream_learner.app.telemetry import LATENCY_METRIC, MAX_DRIFTS, MAX_POINTS, MAX_THROUGHPUT, SEARCH_LIMIT, TOP_KEYS, MetricsServer, Telemetry
from stream_learner.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_MATRIX_ROWS = 20
"""Evaluations (accuracy-matrix rows) a remote engine's page keeps per key."""
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def _static(name: str) -> bytes | None:
    """A file shipped in ``stream_learner/app/static`` (only plain names: no path traversal)."""
    if "/" in name or "\\" in name or name.startswith(".") or not any(name.endswith(ext) for ext in STATIC_TYPES):
        return None
    path = resources.files("stream_learner.app").joinpath("static", name)
    return path.read_bytes() if path.is_file() else None


State = Callable[..., dict[str, Any]]
"""``state()`` or ``state(key)``: the page's JSON; ``key`` (from ``?key=``) picks the model key it shows, where it takes one."""
Search = Callable[[str, int], dict[str, Any]]
"""``search(query, limit)``: ``{"keys": [the first matching names], "matches": n, "total": n}``."""


class DashboardServer:
    """Serves the page, its JSON state, the key search and (optionally) ``/metrics`` on a background thread.

    Without ``search``, the keys searched are those of ``state()["keys"]``
    (a state that lists every key: a test's, or a small run's).

    Raises :class:`~stream_learner.errors.ConfigError` with one readable line
    when the port is taken.
    """

    def __init__(
        self,
        state: State,
        port: int,
        host: str = "127.0.0.1",
        metrics: Callable[[], bytes] | None = None,
        search: Search | None = None,
    ) -> None:
        handler = _handler(state, metrics, search or _search_state(state))
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            why = "port already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise ConfigError(f"--dashboard {port}: cannot serve the dashboard on {host}:{port} ({why}); choose another port") from None
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="dashboard", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _search_state(state: State) -> Search:
    """A search over the keys ``state()`` lists."""

    def search(query: str, limit: int) -> dict[str, Any]:
        names = sorted(state().get("keys", {}))
        matching = [n for n in names if query.lower() in n.lower()]
        return {"keys": matching[:limit], "matches": len(matching), "total": len(names)}

    return search


def _handler(state: State, metrics: Callable[[], bytes] | None, search: Search) -> type[BaseHTTPRequestHandler]:
    takes_key = bool(inspect.signature(state).parameters)  # a state of one key at a time (Telemetry's), or of them all

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
            path, _, query = self.path.partition("?")
            params = {name: values[-1] for name, values in urllib.parse.parse_qs(query).items()}
            if path in ("/", "/index.html"):
                self._send(200, STATIC_TYPES[".html"], _static("index.html") or b"")
            elif path == "/api/state":
                self._json(lambda: state(params["key"]) if takes_key and "key" in params else state())
            elif path == "/api/keys":
                limit = int(params["limit"]) if params.get("limit", "").isdigit() else SEARCH_LIMIT
                self._json(lambda: search(params.get("q", ""), min(limit, 10 * SEARCH_LIMIT)))
            elif path == "/metrics" and metrics is not None:
                self._send(200, "text/plain; version=0.0.4; charset=utf-8", metrics())
            elif path.startswith("/static/") and (static := _static(path.removeprefix("/static/"))) is not None:
                ext = path[path.rfind(".") :]
                self._send(200, STATIC_TYPES[ext], static)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _json(self, answer: Callable[[], dict[str, Any]]) -> None:
            try:
                body = json.dumps(_finite(answer()), allow_nan=False).encode()
            except Exception as exc:  # noqa: BLE001 - the page shows it instead of a broken connection
                logger.warning("dashboard state failed: %s", exc)
                self._send(503, "application/json", json.dumps({"error": str(exc)}).encode())
                return
            self._send(200, "application/json", body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server signature
            logger.debug("dashboard: " + format, *args)

    return Handler


class RemoteEngine:
    """The page's state, rebuilt from a running engine's ``/metrics`` polled every ``interval`` seconds.

    For ``stream-learner dashboard --engine URL``: accuracy points are placed
    at each key's prediction count; a drift marker at the key's
    ``stream_learner_last_drift_at_event`` when its ``stream_learner_drifts_total``
    went up between two polls (several drifts between two polls share the
    latest one's place), and one
    feature-drift marker (naming the features, without their statistic) where
    its ``stream_learner_feature_drifts_total`` did. The latency's median and
    99th percentile over time are those of the predictions made between two
    polls (from the buckets of ``stream_learner_event_latency_seconds``).
    The run is finished once the engine's ``stream_learner_end_time_seconds`` is set.
    The engine's fine accuracy points are not exported: this page draws the
    accuracy gauges as each poll finds them.

    Its keys are the engine's ``key`` labels: at most the engine's top keys
    and ``other``, so its state lists them all, whatever key the page asks for.
    """

    def __init__(self, url: str, interval: float = 1.0, timeout: float = 5.0) -> None:
        self.url = url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"
        self.interval = interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._started = time.time()
        self._error: str | None = None
        self._throughput: list[list[float]] = []
        self._latency: dict[str, Any] = {"events": 0, "p50_seconds": None, "p99_seconds": None, "points": []}
        self._latency_buckets: list[float] = []  # the engine's cumulative latency bucket counts at the last poll
        self._keys: dict[str, dict[str, Any]] = {}
        self._totals = {"events": 0, "predictions": 0, "dead_letters": 0}
        self._reasons: dict[str, int] = {}
        self._finished: dict[str, Any] | None = None
        self._run: dict[str, str] | None = None
        self._fleet: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dashboard-poll", daemon=True)

    def start(self) -> RemoteEngine:
        self.poll()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout + 1)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Scrape once and fold the samples into the history."""
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:  # noqa: S310 - a URL the user gave
                text = response.read().decode()
        except (OSError, urllib.error.URLError) as exc:
            with self._lock:
                self._error = f"cannot read {self.url}: {exc}"
            return
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, []).append((s.labels, s.value))
        with self._lock:
            self._error = None
            self._fold(samples, time.time())

    def _fold(self, samples: dict[str, list[tuple[dict[str, str], float]]], now: float) -> None:
        def by_key(name: str) -> dict[str, float]:
            out: dict[str, float] = {}
            for labels, value in samples.get(name, []):
                if "key" in labels:
                    out[labels["key"]] = out.get(labels["key"], 0.0) + value
            return out

        predictions, drifts = by_key("stream_learner_predictions_total"), by_key("stream_learner_drifts_total")
        accuracy, window = by_key("stream_learner_accuracy_ratio"), by_key("stream_learner_accuracy_window_ratio")
        concept, concepts = by_key("stream_learner_concept"), by_key("stream_learner_concepts")
        forgetting, bwt = by_key("stream_learner_forgetting_average_ratio"), by_key("stream_learner_backward_transfer_ratio")
        last_drift_at, snapshot_at = by_key("stream_learner_last_drift_at_event"), by_key("stream_learner_last_snapshot_timestamp_seconds")
        delayed: dict[str, dict[str, int]] = {}
        for labels, value in samples.get("stream_learner_delayed_labels", []):
            delayed.setdefault(labels["key"], {})[labels["state"]] = int(value)
        feature_counts: dict[str, dict[str, float]] = {}
        for labels, value in samples.get("stream_learner_feature_drifts_total", []):
            feature_counts.setdefault(labels["key"], {})[labels["feature"]] = value
        rows: dict[str, dict[int, float]] = {}
        for name in ("stream_learner_concept_accuracy_ratio", "stream_learner_concept_mae"):  # a key's model has one or the other
            for labels, value in samples.get(name, []):
                rows.setdefault(labels["key"], {})[int(labels["concept"])] = value
        self._reasons = {labels["reason"]: int(v) for labels, v in samples.get("stream_learner_dead_letters_total", [])}
        self._totals = {
            "events": int(sum(v for _, v in samples.get("stream_learner_events_total", []))),
            "predictions": int(sum(predictions.values())),
            "dead_letters": sum(self._reasons.values()),
        }
        self._throughput.append([now, self._totals["events"], self._totals["predictions"], self._totals["dead_letters"]])
        del self._throughput[:-MAX_THROUGHPUT]
        self._fold_latency(samples.get(LATENCY_METRIC + "_bucket", []), now)
        self._run = next((labels for labels, _ in samples.get("stream_learner_run_info", [])), None)

        def one(name: str) -> int | None:
            values = [v for _, v in samples.get(name, [])]
            return int(values[0]) if values else None

        self._fleet = {
            "keys": one("stream_learner_keys"), "resident": one("stream_learner_resident_keys") or None,
            "in_drift": one("stream_learner_keys_in_drift"), "evictions": one("stream_learner_key_eviction_seconds_count"),
            "restores": one("stream_learner_key_restore_seconds_count"),
        }  # fmt: skip
        ended = sum(v for _, v in samples.get("stream_learner_end_time_seconds", []))
        self._finished = {**self._totals, "ended": ended} if ended > 0 else None
        for key in sorted(set(predictions) | set(accuracy)):
            h = self._keys.setdefault(
                key,
                {"predictions": 0, "points": [], "drifts": [], "feature_drifts": [], "latest": None, "drift_count": 0.0, "feature_counts": {}, "rows": []},
            )
            at = int(predictions.get(key, 0))
            c = int(concept.get(key, 0))
            for _ in range(int(drifts.get(key, 0.0) - h["drift_count"])):  # drifts since the last poll, at the latest one's event
                h["drifts"].append({"at_event": int(last_drift_at.get(key, at)), "concept": c, "detector": "detector", "ts": now})
            h["drift_count"] = drifts.get(key, 0.0)
            del h["drifts"][:-MAX_DRIFTS]
            counts = feature_counts.get(key, {})
            moved = sorted(f for f, n in counts.items() if n > h["feature_counts"].get(f, 0.0))
            if moved:  # feature drifts since the last poll, one marker here
                h["feature_drifts"].append({"at_event": at, "concept": c, "features": [{"name": f, "psi": None} for f in moved], "ts": now})
                del h["feature_drifts"][:-MAX_DRIFTS]
            h["feature_counts"] = counts
            if key in accuracy and (not h["points"] or h["points"][-1][0] != at):
                h["points"].append([at, accuracy[key], window.get(key), c, now])
                del h["points"][:-MAX_POINTS]
            row = rows.get(key, {})
            if row and (not h["rows"] or h["rows"][-1] != row):  # a new evaluation: a new row of the matrix
                h["rows"].append(row)
                del h["rows"][:-MAX_MATRIX_ROWS]
            columns = sorted({c for r in h["rows"] for c in r})
            matrix = [[r.get(c) for c in columns] for r in h["rows"]]
            h["predictions"] = at
            h["snapshot_at"] = snapshot_at.get(key)
            h["latest"] = {
                "key": key, "events": at, "accuracy": accuracy.get(key), "accuracy_window": window.get(key),
                "concept": c, "concepts": int(concepts.get(key, 1)), "drifts": int(drifts.get(key, 0)),
                "forgetting": {"average": forgetting.get(key), "bwt": bwt.get(key), "matrix": matrix, "columns": columns},
                **({"delayed_labels": delayed[key]} if key in delayed else {}),
            }

    def _fold_latency(self, buckets: list[tuple[dict[str, str], float]], now: float) -> None:
        """The run's latency figures, and a point for the predictions made since the last poll (where there are any)."""
        ordered = sorted((float(labels["le"]), value) for labels, value in buckets)
        if not ordered:
            return
        bounds = [le for le, _ in ordered[:-1]]  # the last is +Inf
        cumulative = [value for _, value in ordered]
        counts = _per_bucket(cumulative)
        seen = self._latency_buckets if len(self._latency_buckets) == len(cumulative) else [0.0] * len(cumulative)
        new = [n - before for n, before in zip(counts, _per_bucket(seen))]
        self._latency_buckets = cumulative
        points = self._latency["points"]
        if any(new):
            points.append([now, quantile(bounds, new, 0.5), quantile(bounds, new, 0.99), sum(new)])
            del points[:-MAX_THROUGHPUT]
        self._latency = {**summary(bounds, counts), "points": points}

    def state(self, key: str | None = None) -> dict[str, Any]:
        """The page's state, every key's history in it (``key`` changes nothing: see the class)."""
        with self._lock:
            return {
                "now": time.time(),
                "started": self._started,
                "finished": self._finished,
                "run": self._run,
                "source": self.url,
                "error": self._error,
                "totals": dict(self._totals),
                "throughput": [list(s) for s in self._throughput],
                "latency": {**self._latency, "points": [list(p) for p in self._latency["points"]]},
                "dead_letters": {"by_reason": dict(self._reasons), "recent": []},
                "fleet": dict(self._fleet),
                "keys": {
                    key: {k: (list(v) if isinstance(v, list) else v) for k, v in h.items() if k not in ("drift_count", "feature_counts", "rows")}
                    for key, h in self._keys.items()
                },
            }


def _per_bucket(cumulative: list[float]) -> list[int]:
    """A Prometheus histogram's cumulative bucket counts as counts per bucket.

    >>> _per_bucket([1.0, 1.0, 4.0])
    [1, 0, 3]
    """
    return [int(c - below) for c, below in zip(cumulative, [0.0, *cumulative[:-1]])]


# --- the command line: ``run --metrics-port/--dashboard/--linger/--rate`` and the ``dashboard`` command ---

DEFAULT_DASHBOARD_PORT = 8765


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {value}")
    return value


def add_run_arguments(run: Any) -> None:
    """The observability flags of ``run`` (all off unless asked)."""
    group = run.add_argument_group("dashboards and metrics")
    group.add_argument("--metrics-port", type=_port, default=None, metavar="PORT", help="serve Prometheus metrics on http://HOST:PORT/metrics (off unless given)")
    group.add_argument("--metrics-host", default="0.0.0.0", metavar="HOST", help="address the metrics server listens on (default: %(default)s)")
    group.add_argument(
        "--dashboard", type=_port, nargs="?", const=DEFAULT_DASHBOARD_PORT, default=None, metavar="PORT",
        help=f"serve the live dashboard page on http://127.0.0.1:PORT/ (default port {DEFAULT_DASHBOARD_PORT})",
    )
    group.add_argument("--linger", type=seconds_argument, default=0.0, metavar="SECONDS", help="keep serving metrics and the page this long after the source ends (Ctrl-C stops)")
    group.add_argument("--rate", type=seconds_argument, default=None, metavar="EVENTS_PER_S", help="read at most this many events per second (0: as fast as possible)")


class Serving:
    """The telemetry of one ``run`` and the servers showing it; a context manager.

    Without ``--metrics-port`` or ``--dashboard`` nothing is created
    (``telemetry`` is ``None``). On exit it lingers ``--linger`` seconds,
    then stops the servers.
    """

    def __init__(self, args: Any, say: Callable[[str], None]) -> None:
        self.linger = getattr(args, "linger", 0.0) or 0.0
        self.say = say
        self.telemetry: Any = None
        self._servers: list[Any] = []
        metrics_port, dashboard_port = getattr(args, "metrics_port", None), getattr(args, "dashboard", None)
        if metrics_port is None and dashboard_port is None:
            return
        top_keys = getattr(args, "metrics_top_keys", None)
        self.telemetry = Telemetry(top_keys=TOP_KEYS if top_keys is None else top_keys)
        try:
            if metrics_port is not None:
                server = MetricsServer(self.telemetry, metrics_port, args.metrics_host)
                self._servers.append(server)
                say(f"metrics: http://{args.metrics_host}:{server.port}/metrics")
            if dashboard_port is not None:
                page = DashboardServer(self.telemetry.state, dashboard_port, metrics=self.telemetry.exposition, search=self.telemetry.search_keys)
                self._servers.append(page)
                say(f"dashboard: {page.url}")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None and self._servers and self.linger > 0:
                sys.stdout.flush()
                self.say(f"serving metrics and the dashboard for {self.linger:g} more seconds (Ctrl-C to stop)")
                time.sleep(self.linger)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()


def add_parser(commands: Any) -> None:
    """The ``dashboard`` command: the live page for an engine running elsewhere."""
    cmd = commands.add_parser(
        "dashboard", help="serve the live page for a running engine",
        description="Serve the live dashboard page for an engine started with --metrics-port, reading its /metrics.",
    )
    cmd.add_argument("--engine", default="http://127.0.0.1:9100/metrics", metavar="URL", help="the engine's metrics URL (default: %(default)s)")
    cmd.add_argument("--port", type=_port, default=DEFAULT_DASHBOARD_PORT, help="port of the page (default: %(default)s)")
    cmd.add_argument("--host", default="127.0.0.1", help="address of the page (default: %(default)s)")
    cmd.add_argument("--interval", type=seconds_argument, default=1.0, metavar="SECONDS", help="how often to read the engine (default: %(default)s)")
    cmd.set_defaults(handler=_dashboard)


def _dashboard(args: Any) -> int:
    remote = RemoteEngine(args.engine, interval=max(0.1, args.interval))
    page = DashboardServer(remote.state, args.port, args.host)
    remote.start()
    sys.stderr.write(f"dashboard: {page.url} (reading {remote.url}; Ctrl-C to stop)\n")
    sys.stderr.flush()
    try:
        while True:
            time.sleep(3600)
    finally:
        remote.close()
        page.close()
