// The live page: polls /api/state every second and redraws.
"use strict";

const DRIFT_COLOR = "#d62728";
const FEATURE_DRIFT_COLOR = "#9467bd";
const POLL_MS = 1000;
const KEY_LIMIT = 50;  // keys listed at once: a fleet's keys are searched on the server, never sent all at once
const KEYS_EVERY_MS = 5000;  // the list is refreshed this often while the run adds keys
// What the page last drew, for people poking around in the console (and for the browser test).
window.dashboard = {
  polls: 0, draws: 0, rankedRows: 0, keySearches: 0, keyOptions: 0, keyMatches: 0, accuracyPoints: 0, finePoints: 0, candidateLines: 0, promotionMarkers: 0, driftMarkers: 0, featureDriftMarkers: 0, matrixCells: 0, matrixRows: 0, curves: 0, throughputPoints: 0, latencyPoints: 0,
  lastError: null, state: null,
};

const $ = (id) => document.getElementById(id);
let selectedKey = null;  // null until the first state: the server shows its first key
let keyQuery = "";
let keyNames = [];  // the latest search's keys

function pct(v) { return v === null || v === undefined ? "-" : (100 * v).toFixed(2) + " %"; }
function num(v) { return v === null || v === undefined ? "-" : Math.round(v).toLocaleString("en"); }
function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 90) return Math.max(0, Math.round(seconds)) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  return (seconds / 3600).toFixed(1) + " h ago";
}
function ms(seconds) { return seconds === null || seconds === undefined ? "-" : (1000 * seconds).toFixed(seconds < 0.01 ? 1 : 0); }
function signed(v) { return v === null || v === undefined ? "-" : (v >= 0 ? "+" : "") + v.toFixed(4); }

// Events per second between samples at least one second apart (closer samples make noisy rates).
function rates(throughput) {
  const out = [];
  let j = 0;
  for (let i = 1; i < throughput.length; i++) {
    const dt = throughput[i][0] - throughput[j][0];
    if (dt < 1 && i < throughput.length - 1) continue;
    if (dt > 0) out.push([throughput[i][0], (throughput[i][1] - throughput[j][1]) / dt]);
    j = i;
  }
  return out;
}

// The accuracy axis starts a little under the lowest point (a tenth, at most at 0) so that drops stay visible.
function accuracyFloor(points, finePoints) {
  const values = points.flatMap((p) => [p[1], p[2]]).concat(finePoints.map((p) => p[1])).filter((v) => v !== null && v !== undefined);
  return values.length ? Math.max(0, Math.floor((Math.min(...values) - 0.05) * 10) / 10) : 0;
}

// An error drift (or task switch) marker: red, labelled on the top row.
function driftMarker(m) {
  const what = m.detector === "task" ? "task switch" : `drift (${m.detector})`;
  return {
    x: m.at_event, color: DRIFT_COLOR, label: m.detector === "task" ? "task " + m.concept : "drift \u2192 c" + m.concept,
    title: `${what} at event ${m.at_event.toLocaleString("en")}: concept ${m.concept}`,
  };
}

// An input (feature) drift marker: purple, dotted, labelled on the second row with the features that moved most.
// (A page reading a remote engine's /metrics knows the features, not their PSI.)
function featureDriftMarker(m) {
  const features = m.features.map((f) => (f.psi === null ? f.name : `${f.name} (psi ${f.psi.toFixed(2)})`)).join(", ");
  return {
    x: m.at_event, color: FEATURE_DRIFT_COLOR, dash: [2, 3], row: 1, label: "inputs: " + m.features.map((f) => f.name).join(", "),
    title: `feature drift at event ${m.at_event.toLocaleString("en")}: ${features}`,
  };
}

const PROMOTION_COLOR = "#16a34a";
const CANDIDATE_COLORS = ["#64748b", "#0d9488", "#a16207", "#7c3aed"];

// A promotion marker: green, labelled on the third row with the candidate that won.
function promotionMarker(m) {
  const what = m.applied ? "promoted" : "recommended (auto-promotion off)";
  return {
    x: m.at_event, color: PROMOTION_COLOR, dash: [6, 2], row: 2, label: (m.applied ? "\u2191 " : "? ") + m.challenger,
    title: `${m.challenger} ${what} over ${m.champion} at event ${m.at_event.toLocaleString("en")}`,
  };
}

// Each candidate's windowed accuracy, where the key has challengers: a thin labelled line each.
function candidateSeries(candidates) {
  return Object.entries(candidates || {}).sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([name, points], i) => ({ points, color: CANDIDATE_COLORS[i % CANDIDATE_COLORS.length], width: 1, label: name }));
}

const CONCEPT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
const MATRIX_ROWS = 20;

// Forgetting curves: one series per concept, its accuracy (a regression model: error) at each evaluation.
function conceptCurves(evaluations) {
  const byConcept = new Map();
  for (const e of evaluations) {
    e.columns.forEach((c, j) => {
      if (e.row[j] === null) return;
      if (!byConcept.has(c)) byConcept.set(c, []);
      byConcept.get(c).push([e.at_event, e.row[j]]);
    });
  }
  return [...byConcept.entries()].sort((a, b) => a[0] - b[0])
    .map(([c, points], i) => ({ points, color: CONCEPT_COLORS[i % CONCEPT_COLORS.length], width: 2, label: "concept " + c }));
}

// The latest evaluations as matrix rows over every concept they name, each labelled by its event position.
function matrixRows(evaluations) {
  const rows = evaluations.slice(-MATRIX_ROWS);
  const columns = [...new Set(rows.flatMap((e) => e.columns))].sort((a, b) => a - b);
  const matrix = rows.map((e) => columns.map((c) => { const j = e.columns.indexOf(c); return j < 0 ? null : e.row[j]; }));
  return { matrix, columns, labels: rows.map((e) => "@ " + Charts.fmt(e.at_event)) };
}

// The key list: the server's first KEY_LIMIT keys containing the filter's text.
async function searchKeys() {
  const query = keyQuery;
  const response = await fetch(`/api/keys?q=${encodeURIComponent(query)}&limit=${KEY_LIMIT}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`/api/keys answered ${response.status}`);
  const found = await response.json();
  if (query !== keyQuery) return;  // the filter changed meanwhile: its own search follows
  const d = window.dashboard;
  d.keySearches += 1;
  d.keyMatches = found.matches;
  keyNames = found.keys;
  const moved = query && keyNames.length && !keyNames.includes(selectedKey);
  if (moved) selectedKey = keyNames[0];  // show a key the filter matches
  $("key-count").textContent = query
    ? `${found.matches.toLocaleString("en")} of ${found.total.toLocaleString("en")} keys` + (found.matches > keyNames.length ? `, first ${keyNames.length} listed` : "")
    : `${found.total.toLocaleString("en")} keys`;
  keySelect();
  if (moved) poll(false);
}

function keySelect() {
  const sel = $("key");
  const names = selectedKey !== null && !keyNames.includes(selectedKey) ? [selectedKey, ...keyNames] : keyNames;
  if (sel.options.length !== names.length || names.some((n, i) => sel.options[i].value !== n)) {
    sel.replaceChildren(...names.map((n) => new Option(n, n)));
  }
  if (selectedKey !== null) sel.value = selectedKey;
  window.dashboard.keyOptions = names.length;
}

// A ranking's rows; a click on a key shows it.
function rankedRows(body, entries, second) {
  body.replaceChildren(...entries.map((e) => {
    const tr = document.createElement("tr");
    if (e.key === selectedKey) tr.className = "selected";
    const name = document.createElement("button");
    name.className = "key"; name.textContent = e.key;
    name.addEventListener("click", () => { selectedKey = e.key; keySelect(); poll(false); });
    const cells = [name, num(e[second]), pct(e.accuracy)].map((x) => { const td = document.createElement("td"); td.append(x); return td; });
    tr.append(...cells);
    return tr;
  }));
}

function renderFleet(fleet) {
  const ranked = fleet && fleet.top_keys;
  $("top-keys").hidden = !(ranked && fleet.keys > 1);
  if (!$("top-keys").hidden) {
    rankedRows(document.querySelector("#busiest tbody"), ranked.by_events, "events");
    rankedRows(document.querySelector("#worst tbody"), ranked.worst_accuracy, "labelled");
    window.dashboard.rankedRows = ranked.by_events.length + ranked.worst_accuracy.length;
  }
  const shown = !!fleet && (fleet.keys > 1 || fleet.resident !== null && fleet.resident !== undefined);
  $("fleet").hidden = !shown;
  if (!shown) return;
  $("f-keys").textContent = num(fleet.keys);
  $("f-resident").textContent = num(fleet.resident);
  $("f-evictions").textContent = num(fleet.evictions);
  $("f-restores").textContent = num(fleet.restores);
  $("f-in-drift").textContent = num(fleet.in_drift);
}

function render(state) {
  const d = window.dashboard;
  d.state = state;
  const status = $("status");
  if (state.error) { status.textContent = "engine unreachable"; status.className = "badge down"; }
  else if (state.finished) { status.textContent = "finished"; status.className = "badge finished"; }
  else { status.textContent = "live"; status.className = "badge live"; }
  $("error").hidden = !state.error;
  $("error").textContent = state.error || "";
  const run = state.run;
  $("run").textContent = run ? `${run.source} \u00b7 ${run.model} \u00b7 strategy ${run.strategy} \u00b7 detector ${run.detector}` : "";

  const names = Object.keys(state.keys);
  if (selectedKey === null || !names.includes(selectedKey)) selectedKey = names[0] ?? null;  // the server's choice, or a key it no longer has
  keySelect();
  renderFleet(state.fleet);
  const h = selectedKey !== null && state.keys[selectedKey] ? state.keys[selectedKey] : null;
  const note = $("history-note");
  note.hidden = !h || h.history !== "since shown";
  note.textContent = "This key has no label of its own (beyond --metrics-top-keys): its history is kept from when this page first showed it.";
  const latest = (h && h.latest) || {};
  const forgetting = latest.forgetting || {};
  const perSecond = rates(state.throughput);
  const t0 = state.started;

  $("t-events").textContent = num(state.totals.events);
  $("t-rate").textContent = perSecond.length ? num(perSecond[perSecond.length - 1][1]) : "-";
  $("t-predictions").textContent = num(state.totals.predictions);
  const latency = state.latency || { points: [] };
  $("t-latency").textContent = latency.events ? `${ms(latency.p50_seconds)} / ${ms(latency.p99_seconds)} ms` : "-";
  $("t-accuracy").textContent = pct(latest.accuracy);
  $("t-window").textContent = pct(latest.accuracy_window);
  $("t-concept").textContent = latest.concept ?? "-";
  $("t-drifts").textContent = h ? num(h.drift_count ?? h.drifts.length) : "-";
  $("t-feature-drifts").textContent = h ? num(h.feature_drift_count ?? h.feature_drifts.length) : "-";
  $("t-forgetting").textContent = signed(forgetting.average);
  $("t-bwt").textContent = signed(forgetting.bwt);
  $("t-dead").textContent = num(state.totals.dead_letters);
  $("t-snapshot").textContent = h && h.snapshot_at ? age(state.now - h.snapshot_at) : "-";
  renderDelayedLabels(latest.delayed_labels);

  const points = h ? h.points : [];
  const finePoints = (h && h.fine_points) || [];  // accuracy over each 100 labelled events (a remote engine's page has none)
  const drifts = h ? h.drifts : [];
  const featureDrifts = h ? h.feature_drifts : [];
  const candidates = candidateSeries(h && h.candidates);
  const promotions = (h && h.promotions) || [];
  const acc = $("accuracy");
  const drawn = Charts.line(acc, {
    series: [
      { points: finePoints, color: "#9ca3af", width: 1 },
      { points: points.map((p) => [p[0], p[1]]), color: "#1f77b4", width: 2 },
      { points: points.map((p) => [p[0], p[2]]), color: "#ff7f0e", width: 1.5 },
      ...candidates,
    ],
    markers: [...drifts.map(driftMarker), ...featureDrifts.map(featureDriftMarker), ...promotions.map(promotionMarker)],
    xMin: 0, yMin: accuracyFloor(points, finePoints), yMax: 1, xLabel: "events", yFormat: (v) => (100 * v).toFixed(0) + "%",
    emptyText: "waiting for the first metrics record",
  });
  d.accuracyPoints = points.filter((p) => p[1] !== null).length;
  d.finePoints = drawn ? finePoints.length : 0;
  // the chart draws every marker, or none before the first metrics record
  d.driftMarkers = drawn ? drifts.length : 0;
  d.featureDriftMarkers = drawn ? featureDrifts.length : 0;
  d.candidateLines = drawn ? candidates.length : 0;
  d.promotionMarkers = drawn ? promotions.length : 0;
  acc.dataset.points = d.accuracyPoints;
  acc.dataset.finePoints = d.finePoints;
  acc.dataset.driftMarkers = d.driftMarkers;
  acc.dataset.featureDriftMarkers = d.featureDriftMarkers;

  const thr = $("throughput");
  Charts.line(thr, { series: [{ points: perSecond.map((p) => [p[0] - t0, p[1]]), color: "#10b981", width: 2 }], yMin: 0, xLabel: "seconds", emptyText: "waiting for events" });
  d.throughputPoints = perSecond.length;
  thr.dataset.points = perSecond.length;

  // each point: the median and p99 of the predictions handed out since the previous one
  const lat = $("latency");
  Charts.line(lat, {
    series: [
      { points: latency.points.map((p) => [p[0] - t0, 1000 * p[1]]), color: "#0ea5e9", width: 2 },
      { points: latency.points.map((p) => [p[0] - t0, 1000 * p[2]]), color: "#be123c", width: 1.5 },
    ],
    yMin: 0, xLabel: "seconds", emptyText: "waiting for predictions",
  });
  d.latencyPoints = latency.points.length;
  lat.dataset.points = latency.points.length;

  const evaluations = (h && h.evaluations) || [];
  const mat = $("matrix");
  if (evaluations.length) {  // rows placed by event position (a remote engine's page has only the matrix itself)
    const m = matrixRows(evaluations);
    d.matrixCells = Charts.heatmap(mat, m.matrix, m.columns, m.labels);
    d.matrixRows = m.matrix.length;
  } else {
    d.matrixCells = Charts.heatmap(mat, forgetting.matrix, forgetting.columns);
    d.matrixRows = (forgetting.matrix || []).length;
  }
  mat.dataset.cells = d.matrixCells;

  const curves = conceptCurves(evaluations);
  Charts.line($("curves"), { series: curves, xMin: 0, yMin: 0, xLabel: "events", emptyText: "no evaluation yet (after the first boundary or forgetting period)" });
  d.curves = curves.length;

  renderDeadLetters(state.dead_letters);
  d.draws += 1;
}

// The delayed-label window's counts, shown only in a run that joins delayed labels.
const DELAYED_STATES = ["received", "matched", "expired", "unmatched", "waiting", "pending"];
function renderDelayedLabels(counts) {
  $("delayed").hidden = !counts;
  for (const s of DELAYED_STATES) $("d-" + s).textContent = counts ? num(counts[s]) : "-";
}

function renderDeadLetters(dead) {
  const reasons = Object.entries(dead.by_reason).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...reasons.map((r) => r[1]));
  const box = $("reasons");
  if (!reasons.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "none so far";
    box.replaceChildren(p);
  } else {
    box.replaceChildren(...reasons.map(([reason, n]) => {
      const row = document.createElement("div");
      row.className = "reason";
      const name = document.createElement("span"); name.textContent = reason;
      const bar = document.createElement("div"); bar.className = "bar"; bar.style.width = (100 * n / max).toFixed(1) + "%";
      const count = document.createElement("span"); count.className = "n"; count.textContent = n.toLocaleString("en");
      row.append(name, bar, count);
      return row;
    }));
  }
  const body = document.querySelector("#recent tbody");
  body.replaceChildren(...dead.recent.slice().reverse().map((r) => {
    const tr = document.createElement("tr");
    const o = r.origin ? `${r.origin.topic}:${r.origin.partition}:${r.origin.offset}` : "-";
    for (const text of [r.reason, o, r.error]) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    return tr;
  }));
}

async function poll(again = true) {
  try {
    const asked = selectedKey;
    const query = asked === null ? "" : "?key=" + encodeURIComponent(asked);
    const response = await fetch("/api/state" + query, { cache: "no-store" });
    if (!response.ok) throw new Error(`/api/state answered ${response.status}`);
    const state = await response.json();
    window.dashboard.polls += 1;
    window.dashboard.lastError = null;
    if (asked === selectedKey) render(state);  // else the selection changed meanwhile: its own poll follows
  } catch (err) {
    window.dashboard.lastError = String(err);
    $("status").textContent = "disconnected";
    $("status").className = "badge down";
  } finally {
    if (again) setTimeout(poll, POLL_MS);
  }
}

async function pollKeys() {
  try { await searchKeys(); } catch (err) { window.dashboard.lastError = String(err); } finally { setTimeout(pollKeys, KEYS_EVERY_MS); }
}

let filterTimer = null;
$("key-filter").addEventListener("input", (e) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { keyQuery = e.target.value.trim(); searchKeys().catch((err) => { window.dashboard.lastError = String(err); }); }, 200);
});
$("key").addEventListener("change", (e) => { selectedKey = e.target.value; poll(false); });
window.addEventListener("resize", () => { if (window.dashboard.state) render(window.dashboard.state); });
poll();
pollKeys();
