// Small hand-written canvas charts for the stream-learner live page (no library, no CDN).
"use strict";

const Charts = (() => {
  const FONT = "11px system-ui, sans-serif";
  const AXIS = "#6b7280";
  const GRID = "#eceef2";

  // Size the canvas backing store to its CSS box (sharp on high-DPI screens); returns a context in CSS pixels.
  function setup(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(50, canvas.clientWidth), h = Math.max(50, canvas.clientHeight);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    return { ctx, w, h };
  }

  function niceTicks(min, max, count) {
    const span = max - min || 1;
    const raw = span / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(v);
    return ticks;
  }

  function fmt(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    if (Number.isInteger(v)) return String(v);
    return v.toFixed(2);
  }

  function empty(ctx, w, h, text) {
    ctx.fillStyle = AXIS;
    ctx.textAlign = "center";
    ctx.fillText(text, w / 2, h / 2);
  }

  // A marker's title is the canvas's tooltip while the pointer is within a few pixels of its line.
  function hoverTitles(canvas, placed) {
    canvas.markerTitles = placed;
    if (canvas.dataset.hoverTitles) return;
    canvas.dataset.hoverTitles = "on";
    canvas.addEventListener("mousemove", (e) => {
      const near = canvas.markerTitles.find((m) => m.title && Math.abs(m.x - e.offsetX) <= 4);
      canvas.title = near ? near.title : "";
    });
  }

  // series: [{points: [[x, y], ...], color, width, label?}] (labelled series get a legend, top right)
  // markers: [{x, label, color, title?, dash?, row?}]: a dashed vertical line; its label on text row `row` (0 at the top), its title a tooltip
  function line(canvas, opts) {
    const { ctx, w, h } = setup(canvas);
    const pad = { l: 44, r: 12, t: 16, b: 26 };
    const all = opts.series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
    if (!all.length) {
      empty(ctx, w, h, opts.emptyText || "waiting for data");
      hoverTitles(canvas, []);
      return 0;
    }
    let xMin = opts.xMin ?? Math.min(...all.map((p) => p[0]));
    let xMax = opts.xMax ?? Math.max(...all.map((p) => p[0]));
    for (const m of opts.markers || []) xMax = Math.max(xMax, m.x);
    if (xMax === xMin) xMax = xMin + 1;
    let yMin = opts.yMin ?? Math.min(...all.map((p) => p[1]));
    let yMax = opts.yMax ?? Math.max(...all.map((p) => p[1]));
    if (yMax === yMin) { yMax += 1; yMin = Math.max(0, yMin - 1); }
    const X = (x) => pad.l + ((x - xMin) / (xMax - xMin)) * (w - pad.l - pad.r);
    const Y = (y) => h - pad.b - ((y - yMin) / (yMax - yMin)) * (h - pad.t - pad.b);

    ctx.strokeStyle = GRID;
    ctx.fillStyle = AXIS;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of niceTicks(yMin, yMax, 5)) {
      ctx.beginPath(); ctx.moveTo(pad.l, Y(t)); ctx.lineTo(w - pad.r, Y(t)); ctx.stroke();
      ctx.fillText(opts.yFormat ? opts.yFormat(t) : fmt(t), pad.l - 6, Y(t));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of niceTicks(xMin, xMax, 6)) ctx.fillText(fmt(t), X(t), h - pad.b + 6);
    if (opts.xLabel) { ctx.textAlign = "right"; ctx.fillText(opts.xLabel, w - pad.r, h - 12); }

    const placed = [];
    for (const m of opts.markers || []) {
      const x = Math.round(X(m.x)) + 0.5;
      ctx.strokeStyle = m.color;
      ctx.lineWidth = 2;
      ctx.setLineDash(m.dash || [5, 3]);
      ctx.beginPath(); ctx.moveTo(x, pad.t); ctx.lineTo(x, h - pad.b); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = m.color;
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      if (m.label) ctx.fillText(m.label, x + 3, pad.t + 14 * (m.row || 0));
      placed.push({ x, title: m.title });
    }
    hoverTitles(canvas, placed);
    for (const s of opts.series) {
      const pts = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
      if (!pts.length) continue;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = s.width || 2;
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
      ctx.stroke();
      if (pts.length === 1) { ctx.fillStyle = s.color; ctx.fillRect(X(pts[0][0]) - 2, Y(pts[0][1]) - 2, 4, 4); }
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    opts.series.filter((s) => s.label).forEach((s, k) => { ctx.fillStyle = s.color; ctx.fillText(s.label, w - pad.r - 2, pad.t + 2 + 13 * k); });
    return placed.length;
  }

  // Accuracy 0 -> 1 on a dark-purple, teal, yellow ramp (viridis-like).
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function ramp(v) {
    const t = Math.min(1, Math.max(0, v)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i;
    const c = RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * f));
    return { css: `rgb(${c[0]},${c[1]},${c[2]})`, light: c[0] * 0.299 + c[1] * 0.587 + c[2] * 0.114 > 140 };
  }

  // matrix: rows of numbers or null; columns: the concept of each column.
  // rowLabels: one per row (e.g. the event position of each evaluation); without them, rows are numbered
  function heatmap(canvas, matrix, columns, rowLabels) {
    const { ctx, w, h } = setup(canvas);
    if (!matrix || !matrix.length || !matrix[0].length) {
      empty(ctx, w, h, "no accuracy matrix yet (published after the first evaluation)");
      return 0;
    }
    const pad = { l: 56, r: 10, t: 22, b: 8 };
    const rows = matrix.length, cols = matrix[0].length;
    const cw = (w - pad.l - pad.r) / cols, ch = (h - pad.t - pad.b) / rows;
    let cells = 0;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (let j = 0; j < cols; j++) { ctx.fillStyle = AXIS; ctx.fillText("concept " + (columns ? columns[j] : j), pad.l + (j + 0.5) * cw, pad.t / 2); }
    for (let i = 0; i < rows; i++) {
      if (ch >= 11) { ctx.fillStyle = AXIS; ctx.textAlign = "right"; ctx.fillText(rowLabels ? rowLabels[i] : "eval " + (i + 1), pad.l - 6, pad.t + (i + 0.5) * ch); ctx.textAlign = "center"; }
      for (let j = 0; j < cols; j++) {
        const v = matrix[i][j];
        const x = pad.l + j * cw, y = pad.t + i * ch;
        if (v === null || v === undefined) { ctx.fillStyle = "#f1f2f4"; ctx.fillRect(x + 1, y + 1, cw - 2, ch - 2); continue; }
        const c = ramp(v);
        ctx.fillStyle = c.css;
        ctx.fillRect(x + 1, y + 1, cw - 2, ch - 2);
        cells += 1;
        if (ch >= 14 && cw >= 34) { ctx.fillStyle = c.light ? "#111" : "#fff"; ctx.fillText(v.toFixed(2), x + cw / 2, y + ch / 2); }
      }
    }
    return cells;
  }

  return { line, heatmap, fmt };
})();
