"""The forgetting suite's outputs: a Markdown table and PNG figures (matplotlib, Agg backend).

>>> _pm({"mean": 0.5, "std": 0.01, "n": 3})
'0.500 ± 0.010'
>>> _pm({"mean": None, "std": None, "n": 0})
'-'
"""

from __future__ import annotations

import os
from typing import Any

BEGIN, END = "<!-- forgetting-results:begin -->", "<!-- forgetting-results:end -->"
"""Markers of the section :func:`update_readme` rewrites."""


def _pm(stats: dict[str, Any] | None, digits: int = 3) -> str:
    if not stats or stats.get("mean") is None:
        return "-"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _rate(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("mean") is None:
        return "-"
    return f"{stats['mean']:,.0f}"


def _short(strategy: str) -> str:
    return strategy.replace("avalanche:avalanche.training.plugins.", "avalanche:")


def _scenario_titles() -> dict[str, str]:
    from benchmarks.scenarios import SCENARIOS

    return {name: s.description for name, s in SCENARIOS.items()}


def markdown(results: dict[str, Any]) -> str:
    """One table per scenario: mean ± std over seeds of the engine's figures, the fidelity column, the live check."""
    titles = _scenario_titles()
    summary = results["summary"]
    seeds = sorted({s for row in summary for s in row["seeds"]})
    lines = [
        f"{len(results['runs'])} runs, seeds {', '.join(map(str, seeds))}, {results['wall_seconds']:,.0f} s wall time "
        f"with {results['workers']} worker process(es) on {results['environment']['cpus']} CPUs "
        f"(torch {results['environment']['versions'].get('torch')}, avalanche-lib {results['environment']['versions'].get('avalanche-lib')}).",
        "",
        "Accuracy is the final average accuracy over all tasks, forgetting the average forgetting and BWT the backward transfer, "
        "all on held-out test sets at the true task ends (mean ± std over seeds). *oracle*: events carry their task; "
        "*drift*: no task field, the ADWIN detector and new labels (`--new-label-gap 100`) mark the boundaries (mean detections in brackets; the stream has one fewer than tasks). "
        f"*Δ vs Avalanche*: engine minus Avalanche's own loop, final average accuracy, mean ± standard error of the per-seed differences (✓ within {results['settings']['fidelity_tolerance']['oracle']} "
        f"with oracle boundaries, {results['settings']['fidelity_tolerance']['drift']} with drift-detected ones). "
        "*Published by the engine*: the average accuracy / forgetting the engine itself put on its metrics records while it ran "
        "(measured on its own 100-event samples of each concept, not on the held-out sets), and for oracle boundaries how far that "
        f"is from the held-out figures (✓ within {results['settings']['live_tolerance']}; then how many single runs are within it); "
        "= means the published figures equal the offline formulas applied to the matrix the engine published, in every run.",
    ]
    lines += _targets(summary)
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in summary:
        by_scenario.setdefault(row["scenario"], []).append(row)
    for scenario, rows in by_scenario.items():
        reference = {r["strategy"]: r for r in rows if r["mode"] == "avalanche"}
        lines += [
            "",
            f"### `{scenario}`: {titles.get(scenario, '')}",
            "",
            "| strategy | boundaries | accuracy | forgetting | BWT | events/s | Avalanche's loop: accuracy / forgetting (events/s) | Δ vs Avalanche | published by the engine: accuracy / forgetting (Δ vs held-out) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            if row["mode"] == "avalanche":
                continue
            ref = reference.get(row["strategy"])
            boundaries = row["mode"] if row["mode"] == "oracle" else f"drift ({row['detections']['mean']:.1f})"
            avalanche = "-"
            if ref:
                avalanche = f"{_pm(ref['average_accuracy'])} / {_pm(ref['average_forgetting'], 2)} ({_rate(ref['events_per_second'])}, {ref['reference']})"
            fidelity = row.get("fidelity")
            delta = "-"
            if fidelity and fidelity["difference"] is not None:
                se = "" if fidelity["difference_se"] is None else f" ± {fidelity['difference_se']:.3f}"
                delta = f"{fidelity['difference']:+.3f}{se} {'✓' if fidelity['within'] else '✗'}"
            live = row["live"]
            live_cell = f"{_pm(live['average_accuracy'], 2)} / {_pm(live['average_forgetting'], 2)}"
            if live["close"] is not None:
                live_cell += (
                    f" ({live['gap_accuracy']['mean']:+.3f} / {live['gap_forgetting']['mean']:+.3f} {'✓' if live['close'] else '✗'}"
                    f" {live['runs_close']}/{live['runs_compared']})"
                )
            if live["consistent"]:
                live_cell += " ="
            lines.append(
                f"| {_short(row['strategy'])} | {boundaries} | {_pm(row['average_accuracy'])} | {_pm(row['average_forgetting'])} | "
                f"{_pm(row['bwt'])} | {_rate(row['events_per_second'])} | {avalanche} | {delta} | {live_cell} |"
            )
    checks = [r["fidelity"] for r in summary if r.get("fidelity")]
    if checks:
        misses = [f"`{r['scenario']}` {_short(r['strategy'])} ({r['mode']}, {r['fidelity']['difference']:+.3f})" for r in summary if r.get("fidelity") and not r["fidelity"]["within"]]
        lines += ["", f"Fidelity: {len(checks) - len(misses)} of {len(checks)} engine rows within tolerance of Avalanche's loop."]
        if misses:
            lines.append("Outside: " + ", ".join(misses) + ".")
    return "\n".join(lines) + "\n"


TARGETS: dict[tuple[str, str], tuple[float, float | None]] = {
    ("split-digits", "naive"): (0.18, 0.96),
    ("split-digits", "replay"): (0.74, 0.24),
    ("split-digits", "gem"): (0.89, 0.05),
    ("split-digits", "cumulative"): (0.92, None),
    ("permuted-digits", "naive"): (0.60, 0.36),
    ("permuted-digits", "ewc"): (0.64, 0.27),
    ("permuted-digits", "replay"): (0.78, 0.08),
    ("permuted-digits", "lamaml"): (0.79, 0.05),
}
"""Reference figures of Avalanche 0.6's own loop on these scenarios, measured once when the suite was built: final average accuracy / average forgetting."""


def _targets(summary: list[dict[str, Any]]) -> list[str]:
    rows = {(r["scenario"], r["strategy"], r["mode"]): r for r in summary}
    lines = []
    for (scenario, strategy), (accuracy, forgetting) in TARGETS.items():
        cells = []
        for mode in ("avalanche", "oracle", "drift"):
            row = rows.get((scenario, strategy, mode))
            cells.append("-" if row is None else f"{row['average_accuracy']['mean']:.2f} / {row['average_forgetting']['mean']:.2f}")
        if any(c != "-" for c in cells):
            lines.append(f"| `{scenario}` | {strategy} | {accuracy:.2f} / {'-' if forgetting is None else f'{forgetting:.2f}'} | {' | '.join(cells)} |")
    if not lines:
        return []
    return [
        "",
        "Reference figures of Avalanche's own loop, measured once when the suite was built, next to this run's (final average accuracy / average forgetting, means over seeds):",
        "",
        "| scenario | strategy | reference | Avalanche's loop here | engine, oracle | engine, drift |",
        "|---|---|---|---|---|---|",
        *lines,
    ]


def figures(results: dict[str, Any], out: str) -> list[str]:
    """Write the PNG figures into ``out``; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    summary, runs = results["summary"], results["runs"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in summary))
    for scenario in scenarios:
        rows = [r for r in summary if r["scenario"] == scenario and r["mode"] == "oracle"] or [r for r in summary if r["scenario"] == scenario and r["mode"] == "drift"]
        if rows:
            written.append(_heatmaps(plt, scenario, rows, out))
        written.append(_stream(plt, scenario, [r for r in runs if r["scenario"] == scenario and r["mode"] != "avalanche"], out))
    written.append(_comparison(plt, scenarios, summary, out))
    return written


def _cell(v: float) -> str:
    """A matrix cell as short text.

    >>> _cell(0.5), _cell(0.996), _cell(1.0), _cell(0.0)
    ('.50', '1', '1', '.00')
    """
    text = f"{v:.2f}"
    return "1" if text == "1.00" else text.removeprefix("0")


def _save(plt: Any, fig: Any, out: str, name: str) -> str:
    fig.savefig(os.path.join(out, name), dpi=72)
    plt.close(fig)
    return name


def _heatmaps(plt: Any, scenario: str, rows: list[dict[str, Any]], out: str) -> str:
    n = len(rows)
    cols = min(n, 4)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.6 * nrows + 0.4), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        matrix = row["matrix"]
        ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        for i, values in enumerate(matrix):
            for j, v in enumerate(values):
                ax.text(j, i, _cell(v), ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
        ax.set_title(f"{_short(row['strategy'])}: A={row['average_accuracy']['mean']:.2f}", fontsize=9)
        ax.set_xticks(range(len(matrix)))
        ax.set_yticks(range(len(matrix)))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("on task", fontsize=8)
        ax.set_ylabel("after task", fontsize=8)
    fig.suptitle(f"{scenario}: R[after task][on task]\n{rows[0]['mode']} boundaries, mean over seeds", fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, out, f"heatmaps-{scenario}.png")


def _stream(plt: Any, scenario: str, runs: list[dict[str, Any]], out: str) -> str:
    modes = [m for m in ("oracle", "drift") if any(r["mode"] == m for r in runs)]
    fig, axes = plt.subplots(len(modes), 1, figsize=(9, 2.8 * len(modes)), squeeze=False, sharex=True)
    seed = min(r["seed"] for r in runs)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    strategies = list(dict.fromkeys(r["strategy"] for r in runs))
    for ax, mode in zip(axes[:, 0], modes):
        for k, strategy in enumerate(strategies):
            run = next((r for r in runs if r["strategy"] == strategy and r["mode"] == mode and r["seed"] == seed), None)
            if run is None:
                continue
            color = colors[k % len(colors)]
            xs = [p[0] for p in run["curve"]]
            ys = [p[1] for p in run["curve"]]
            ax.plot(xs, ys, lw=1, color=color, label=_short(strategy))
            if run["detections"]:
                ax.plot(run["detections"], [0.03 + 0.035 * k] * len(run["detections"]), "^", ms=4, color=color)
        for end in run_task_ends(runs)[:-1]:
            ax.axvline(end, color="grey", ls="--", lw=0.8)
        ax.set_ylim(0, 1.0)
        ax.set_ylabel("windowed accuracy", fontsize=8)
        ax.set_title(f"{mode} boundaries" + (" (▲: drift detections, one row per strategy)" if mode == "drift" else "") + " - dashed: true task ends", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("labelled events", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=min(len(strategies), 5), loc="lower left")
    fig.suptitle(f"{scenario}: prequential accuracy the engine published (seed {seed})", fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, out, f"stream-{scenario}.png")


def run_task_ends(runs: list[dict[str, Any]]) -> list[int]:
    """The true task ends of the first run that has them."""
    return next((r["task_ends"] for r in runs if r.get("task_ends")), [])


def _comparison(plt: Any, scenarios: list[str], summary: list[dict[str, Any]], out: str) -> str:
    cols = min(4, len(scenarios))
    block = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(2 * block, cols, figsize=(3.4 * cols, 2.9 * 2 * block), squeeze=False)
    modes = ("oracle", "drift", "avalanche")
    width = 0.27
    metrics = (("average_accuracy", "final average accuracy"), ("average_forgetting", "average forgetting"))
    for m_block, (metric, label) in enumerate(metrics):
        for ax in axes[m_block * block : (m_block + 1) * block].flat[len(scenarios) :]:
            ax.axis("off")
        for i, scenario in enumerate(scenarios):
            ax = axes[m_block * block + i // cols, i % cols]
            rows = [r for r in summary if r["scenario"] == scenario]
            strategies = list(dict.fromkeys(r["strategy"] for r in rows))
            for m_i, mode in enumerate(modes):
                xs, ys, es = [], [], []
                for s_i, strategy in enumerate(strategies):
                    row = next((r for r in rows if r["strategy"] == strategy and r["mode"] == mode), None)
                    if row and row[metric]["mean"] is not None:
                        xs.append(s_i + (m_i - 1) * width)
                        ys.append(row[metric]["mean"])
                        es.append(row[metric]["std"])
                if xs:
                    ax.bar(xs, ys, width, yerr=es, label="Avalanche's loop" if mode == "avalanche" else f"engine, {mode}", capsize=2, color=f"C{m_i}")
            ax.set_xticks(range(len(strategies)))
            ax.set_xticklabels([_short(s).replace("avalanche:", "av:") for s in strategies], rotation=45, fontsize=7, ha="right")
            ax.tick_params(axis="y", labelsize=7)
            ax.set_ylim(min(0.0, *(r[metric]["mean"] or 0 for r in rows)), 1.05)
            ax.set_title(f"{scenario}: {label}", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("strategies compared (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, out, "comparison.png")


def update_readme(path: str, table: str, names: list[str], out: str) -> None:
    """Replace the section between :data:`BEGIN` and :data:`END` in ``path`` with the table and the figures."""
    with open(path) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        from stream_learner.errors import ConfigError

        raise ConfigError(f"{path} has no {BEGIN} ... {END} section to rewrite")
    here = os.path.dirname(os.path.abspath(path))
    images = "\n".join(f"![{os.path.splitext(n)[0]}]({os.path.relpath(os.path.join(os.path.abspath(out), n), here)})" for n in names)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{BEGIN}\n{table}\n{images}\n{END}{tail}")
