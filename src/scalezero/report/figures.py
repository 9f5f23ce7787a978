"""The report's figures, one function per figure, each reading pipeline files only.

Every function takes input paths and an output path (PNG or SVG by its suffix) and
returns the output path, so a workflow rule or the `scalezero report` command can call
it directly. Strategies keep one colour across all figures (`strategy_colors`), every
axis is labelled with its unit, and sizes suit a page-wide image.

matplotlib is imported on first use, with the non-interactive Agg backend, so importing
this module costs nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalezero.analysis.energy import PHASES, instance_spans
from scalezero.analysis.metrics import as_bool
from scalezero.system.layout import Layout

# Okabe-Ito palette (colour-blind safe). The seed strategies have fixed colours; others
# take the rest in order of their names.
_FIXED_COLORS = {"always_on": "#0072B2", "naive": "#D55E00", "keep_warm": "#009E73"}
_PALETTE = ("#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442", "#999999", "#882255",
            "#44AA99")
PHASE_COLORS = {"cold_start": "#B2182B", "active": "#2166AC", "idle_loaded": "#F4A582",
                "runtime_warm": "#FDDBC7", "empty": "#D9D9D9"}
PHASE_LABELS = {"cold_start": "cold start", "active": "active", "idle_loaded": "idle, loaded",
                "runtime_warm": "runtime-warm (model unloaded)",
                "empty": "empty (no instance)"}
COLD_START_STEPS = (
    ("spawn_to_runtime_ready_s", "spawn \u2192 runtime ready", "#CBC9E2"),
    ("runtime_ready_to_model_loaded_s", "runtime ready \u2192 model loaded", "#9E9AC8"),
    ("model_loaded_to_ready_s", "model loaded \u2192 ready", "#756BB1"),
    ("ready_to_first_token_s", "ready \u2192 first token", "#54278F"),
)
WIDTH_IN = 9.0  # page-wide figures; the report scales them to the text width
DPI = 150


def strategy_colors(strategies: Sequence[str]) -> dict[str, str]:
    """Colour of each strategy: fixed for the seed strategies, the palette in name order
    for the others (pass every strategy of the report so all figures agree)."""
    colors = {s: _FIXED_COLORS[s] for s in strategies if s in _FIXED_COLORS}
    free = [c for c in _PALETTE if c not in colors.values()]
    others = sorted(s for s in set(strategies) if s not in colors)
    for i, s in enumerate(others):
        colors[s] = free[i % len(free)]
    return colors


def _natural_key(name: str) -> list[Any]:
    """Numbers in a name compare as numbers: keep_warm-2 before keep_warm-10."""
    return [(0, float(part), "") if part[0].isdigit() else (1, 0.0, part)
            for part in re.findall(r"\d+(?:\.\d+)?|\D+", name)]


def strategy_order(strategies: Sequence[str]) -> list[str]:
    """Seed strategies first (always_on, keep_warm, naive), then the rest by name, the
    numbers in names (a parameter sweep's values) in numeric order."""
    seed = [s for s in ("always_on", "keep_warm", "naive") if s in strategies]
    return seed + sorted((s for s in set(strategies) if s not in seed), key=_natural_key)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.3, "figure.dpi": DPI, "savefig.dpi": DPI,
        "svg.fonttype": "none", "svg.hashsalt": "scalezero",
    })
    return plt


def _save(fig: Any, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata: the same data give the same file.
    metadata = {"Software": None} if out.suffix.lower() == ".png" else {"Date": None}
    fig.savefig(out, bbox_inches="tight", metadata=metadata)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def _empty_note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _strategies_of(*frames: pd.DataFrame, given: Sequence[str] | None = None) -> list[str]:
    if given:
        return list(given)
    names: set[str] = set()
    for f in frames:
        if "strategy" in f.columns:
            names |= set(f["strategy"].astype(str))
    return strategy_order(sorted(names))


def _log_axis(ax: Any, which: str, subs: tuple[float, ...] = (1.0, 2.0, 5.0)) -> None:
    """Log scale with plain-number tick labels (at 1, 2 and 5 times powers of ten by
    default; pass subs=(1.0,) for axes spanning many decades)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if which in ("x", "y"):
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.10g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_subs(lo: float, hi: float) -> tuple[float, ...]:
    """Tick positions per decade that stay readable for the span [lo, hi]."""
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    if decades <= 0.8:
        return (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    if decades <= 1.5:
        return (1.0, 2.0, 5.0)
    return (1.0, 3.0) if decades <= 3.0 else (1.0,)


def _positive_range(values: pd.Series) -> tuple[float, float]:
    v = pd.to_numeric(values, errors="coerce")
    v = v[np.isfinite(v) & (v > 0)]
    return (float(v.min()), float(v.max())) if not v.empty else (1.0, 10.0)


# ---------------------------------------------------------------------------------------
# Latency


def _ecdf(ax: Any, values: pd.Series, **style: Any) -> bool:
    v = np.sort(pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float))
    v = v[v > 0]
    if v.size == 0:
        return False
    y = np.arange(1, v.size + 1) / v.size
    ax.step(np.concatenate([[v[0]], v]), np.concatenate([[0.0], y]), where="post", **style)
    return True


def plot_latency(requests_csv: Path, out: Path, *,
                 slo_sets: Mapping[str, Mapping[str, float]] | None = None,
                 strategies: Sequence[str] | None = None) -> Path:
    """TTFT, TPOT and E2E distributions (ECDF) per strategy, warm solid and cold dashed,
    against the SLO limits, and the share of requests meeting each SLO set."""
    from scalezero.analysis.metrics import DEFAULT_SLO_SETS

    plt = _plt()
    slo_sets = dict(slo_sets or DEFAULT_SLO_SETS)
    req = pd.read_csv(requests_csv)
    names = _strategies_of(req, given=strategies)
    colors = strategy_colors(names)
    ok = as_bool(req["ok"]) if "ok" in req.columns else pd.Series(True, index=req.index)
    cold = as_bool(req["cold"]) if "cold" in req.columns else pd.Series(False, index=req.index)
    fig, axes = plt.subplots(2, 2, figsize=(WIDTH_IN, 7.2))
    panels = (("ttft_ms", "Time to first token", "ttft_ms", axes[0, 0]),
              ("tpot_ms", "Time per output token", "tpot_ms", axes[0, 1]),
              ("e2e_ms", "End-to-end latency", None, axes[1, 0]))
    slo_styles = (":", "-.", "--", (0, (1, 3)))
    for column, title, slo_key, ax in panels:
        drawn = False
        for s in names:
            mine = req["strategy"].astype(str) == s
            for is_cold, ls in ((False, "-"), (True, "--")):
                sel = req.loc[mine & ok & (cold == is_cold), column] \
                    if column in req.columns else pd.Series(dtype=float)
                drawn |= _ecdf(ax, sel, color=colors[s], linestyle=ls, linewidth=1.8)
        if slo_key:
            for slo, slo_style in zip(slo_sets.values(), slo_styles, strict=False):
                if slo_key in slo:
                    ax.axvline(slo[slo_key], color="0.25", linestyle=slo_style, linewidth=1.2)
        if drawn:
            values = pd.to_numeric(req.loc[ok, column], errors="coerce")
            values = values[values > 0]
            limits = [v[slo_key] for v in slo_sets.values() if slo_key in v] if slo_key else []
            lo = min([float(values.min()), *limits]) / 1.6  # room around narrow data
            hi = max([float(values.max()), *limits]) * 1.6
            _log_axis(ax, "x", subs=_log_subs(lo, hi))
            ax.set_xlim(lo, hi)
        ax.set_xlabel(f"{title} (ms, log scale)")
        ax.set_ylabel("share of successful requests")
        ax.set_ylim(0, 1.05)
        ax.set_title(title)
        if not drawn:
            _empty_note(ax, "no successful requests")
    # SLO attainment per strategy and set.
    ax = axes[1, 1]
    sets = [n for n in slo_sets if f"meets_{n}" in req.columns]
    width = 0.8 / max(1, len(names))
    x = np.arange(len(sets))
    for i, s in enumerate(names):
        mine = req["strategy"].astype(str) == s
        shares = [float(as_bool(req.loc[mine, f"meets_{n}"]).mean()) * 100.0
                  if mine.any() else np.nan for n in sets]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, shares, width, color=colors[s])
        for b, v in zip(bars, shares, strict=True):
            if np.isfinite(v):
                ax.text(b.get_x() + b.get_width() / 2, v + 1, f"{v:.0f}", ha="center",
                        fontsize=8)
    ax.set_xticks(x, [n.replace("_", " ") for n in sets])
    ax.set_ylim(0, 110)
    ax.set_ylabel("requests meeting every SLO of the set (%)")
    ax.set_title("SLO attainment (goodput share)")
    handles = [plt.Line2D([], [], color=colors[s], linewidth=2.5, label=s) for s in names]
    handles += [plt.Line2D([], [], color="0.3", linestyle="-", label="warm requests"),
                plt.Line2D([], [], color="0.3", linestyle="--", label="cold requests")]
    handles += [plt.Line2D([], [], color="0.25", linestyle=ls, linewidth=1.2,
                           label=f"{name} limit")
                for name, ls in zip(slo_sets, slo_styles, strict=False)]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)),
               bbox_to_anchor=(0.5, -0.01), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Cold starts


def _strategy_mean(frame: pd.DataFrame, strategy: str, column: str) -> float:
    """Mean of `column` over the rows of one strategy (0 where there are none)."""
    values = pd.to_numeric(frame.loc[frame["strategy"].astype(str) == strategy, column],
                           errors="coerce")
    return float(np.nan_to_num(values.mean()))


def _stacked_barh(ax: Any, names: Sequence[str], colors: Mapping[str, str],
                  segments: Sequence[tuple[str, str, Sequence[float]]], *,
                  total_fmt: str, headroom: float) -> None:
    """One horizontal bar per strategy, stacked from (label, colour, values) segments,
    with its total written at its end and the strategy labels in their colours."""
    left = np.zeros(len(names))
    for label, color, values in segments:
        ax.barh(range(len(names)), values, left=left, color=color, label=label,
                height=0.6, edgecolor="white")
        left += np.asarray(values, dtype=float)
    for i, total in enumerate(left):
        ax.text(total, i, " " + total_fmt.format(total), va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    for tick, s in zip(ax.get_yticklabels(), names, strict=True):
        tick.set_color(colors[s])
    ax.invert_yaxis()
    ax.set_xlim(0, float(left.max()) * headroom if left.max() > 0 else 1)


def plot_cold_starts(cold_starts_csv: Path, summary_csv: Path, out: Path, *,
                     strategies: Sequence[str] | None = None) -> Path:
    """Cold starts per run (bars: mean over repeats, dots: each repeat) and the mean
    duration of their phases as stacked bars."""
    plt = _plt()
    summary = pd.read_csv(summary_csv)
    starts = pd.read_csv(cold_starts_csv)
    names = _strategies_of(summary, given=strategies)
    colors = strategy_colors(names)
    fig, (ax_n, ax_p) = plt.subplots(1, 2, figsize=(WIDTH_IN, 3.8),
                                     gridspec_kw={"width_ratios": [1, 2]})
    for i, s in enumerate(names):
        counts = pd.to_numeric(summary.loc[summary["strategy"].astype(str) == s,
                                           "cold_starts"], errors="coerce").dropna()
        mean = float(counts.mean()) if not counts.empty else 0.0
        ax_n.bar(i, mean, color=colors[s], width=0.7)
        ax_n.scatter(np.full(len(counts), i), counts, color="black", s=12, zorder=3)
        ax_n.text(i, mean, f"{mean:.3g}", ha="center", va="bottom", fontsize=9)
    ax_n.set_xticks(range(len(names)), names, rotation=20)
    ax_n.set_ylabel("cold starts per run (count)")
    ax_n.set_title("Cold starts in the replay window")
    if not starts.empty:
        starts = starts[as_bool(starts["in_replay"]) & (starts["outcome"] == "ready")]
    shown = [s for s in names if not starts.empty
             and (starts["strategy"].astype(str) == s).any()]
    if not shown:
        _empty_note(ax_p, "no completed cold start in the replay window")
    else:
        _stacked_barh(
            ax_p, shown, colors,
            [(label, color, [_strategy_mean(starts, s, column) for s in shown])
             for column, label, color in COLD_START_STEPS],
            total_fmt="{:.3g} s", headroom=1.25)
        ax_p.set_xlabel("mean time from spawn (s)")
        ax_p.set_title("Anatomy of a cold start")
        ax_p.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    return _save(fig, out)


def _error(mean: float, low: float, high: float) -> list[list[float]]:
    """Matplotlib's asymmetric error for one point (none where the interval is unknown)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [[0.0], [0.0]]
    return [[max(0.0, mean - low)], [max(0.0, high - mean)]]


def plot_frontier(summary_csv: Path, out: Path, *,
                  strategies: Sequence[str] | None = None) -> Path:
    """Idle cost against cold-start share (left) and p99 TTFT (right), one point per
    strategy with its 95 % interval over repeats; the strategies on the frontier (none
    beats them on both idle cost and cold starts) joined and ringed."""
    from scalezero.analysis.frontier import IDLE_ENERGY, frontier_table

    plt = _plt()
    summary = pd.read_csv(summary_csv)
    names = _strategies_of(summary, given=strategies)
    colors = strategy_colors(names)
    table = frontier_table(summary, names)
    energy = bool((table["idle_cost_basis"] == IDLE_ENERGY).any())
    scale = 1e-3 if energy else 1.0
    x_label = ("idle energy, instance held with nothing in flight (kJ)" if energy
               else "idle instance time, held with nothing in flight (s)")
    fig, (ax_c, ax_t) = plt.subplots(1, 2, figsize=(WIDTH_IN, 4.0))
    for _, row in table.iterrows():
        x = row["idle_cost_mean"] * scale
        if not math.isfinite(x):
            continue
        xerr = np.asarray(_error(x, row["idle_cost_ci95_low"] * scale,
                                 row["idle_cost_ci95_high"] * scale))
        for ax, column, factor in ((ax_c, "cold_share", 100.0), (ax_t, "ttft_p99_ms", 1.0)):
            y = row[f"{column}_mean"] * factor
            if not math.isfinite(y):
                continue
            yerr = np.asarray(_error(y, row[f"{column}_ci95_low"] * factor,
                                     row[f"{column}_ci95_high"] * factor))
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color=colors[row["strategy"]],
                        ecolor=colors[row["strategy"]], capsize=3, markersize=7,
                        label=row["strategy"] if ax is ax_c else None, zorder=3)
            if row["on_frontier"]:
                ax.scatter([x], [y], s=180, facecolors="none", edgecolors="black",
                           linewidths=1.2, zorder=4)
            ax.annotate(row["strategy"], (x, y), textcoords="offset points", xytext=(6, 5),
                        fontsize=8)
    front = table[table["on_frontier"]].sort_values("idle_cost_mean")
    if len(front) > 1:
        ax_c.step(front["idle_cost_mean"] * scale, front["cold_share_mean"] * 100.0,
                  where="post", color="black", linewidth=1.0, linestyle="--",
                  label="frontier", zorder=2)
    if table["idle_cost_mean"].notna().sum() == 0:
        _empty_note(ax_c, "no run to place")
    ax_c.set_xlabel(x_label)
    ax_c.set_ylabel("requests that waited for a cold start (%)")
    ax_c.set_title("Idle cost against cold starts")
    ax_t.set_xlabel(x_label)
    ax_t.set_ylabel("p99 time to first token (ms)")
    ax_t.set_title("Idle cost against tail latency")
    break_even = pd.to_numeric(table["break_even_ttl_s"], errors="coerce").dropna()
    if not break_even.empty:
        # The TTL at which holding an idle instance costs the energy of one cold start.
        # Bottom left: the corner no strategy reaches (no idle cost, no cold start).
        ax_c.text(0.03, 0.04, f"break-even TTL: {break_even.mean():.3g} s",
                  transform=ax_c.transAxes, ha="left", va="bottom", fontsize=9,
                  bbox={"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"})
    handles, labels = ax_c.get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), frameon=False)
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Timeline of one run


def _lanes(spans: pd.DataFrame, end_s: float) -> list[int]:
    """A lane per instance such that instances in one lane never overlap (greedy)."""
    lane_free: list[float] = []
    out: list[int] = []
    begin = spans["start_begin_s"].fillna(spans["up_begin_s"]) if len(spans) else []
    finish = spans["up_end_s"].fillna(spans["start_end_s"]) if len(spans) else []
    for b, e in zip(begin, finish, strict=True):
        b = float(b) if pd.notna(b) else -math.inf
        e = float(e) if pd.notna(e) and np.isfinite(e) else end_s
        lane = next((k for k, free in enumerate(lane_free) if free <= b), len(lane_free))
        if lane == len(lane_free):
            lane_free.append(e)
        else:
            lane_free[lane] = e
        out.append(lane)
    return out


def plot_timeline(run_dir: Path, out: Path, *, strategies: Sequence[str] | None = None
                  ) -> Path:
    """One run over time: arrivals (cold/warm), instances starting and up, instance
    memory, and power (or, without a power sensor, the instances' CPU use)."""
    from scalezero.analysis.aggregate import load_run
    from scalezero.analysis.runs import replay_window

    plt = _plt()
    data = load_run(Path(run_dir))
    meta = data.meta
    strategy = str(meta.get("strategy") or Layout.parse_run_dir(run_dir).strategy)
    colors = strategy_colors([*(strategies or []), strategy])
    color = colors[strategy]
    req = data.requests
    t_send = pd.to_numeric(req.get("t_send_s"), errors="coerce")
    w0, w1 = replay_window(meta, req, run_dir, start_columns=("t_send_s",))
    # Instances: starting (light) and up (strategy colour); overlapping ones in lanes.
    spans = instance_spans(data.events)
    lanes = _lanes(spans, w1)
    top = 0.7 + 0.25 * (max(lanes, default=0) + 1)
    fig, (ax_i, ax_m, ax_p) = plt.subplots(3, 1, figsize=(WIDTH_IN, 4.6 + top), sharex=True,
                                           gridspec_kw={"height_ratios": [top, 1.2, 1.2]})
    for lane, (_, sp) in zip(lanes, spans.iterrows(), strict=True):
        for b, e, alpha, hatch in ((sp["start_begin_s"], sp["start_end_s"], 0.35, "///"),
                                   (sp["up_begin_s"], sp["up_end_s"], 0.9, None)):
            if pd.notna(b):
                end = e if np.isfinite(e) else w1
                ax_i.barh(lane, end - b, left=b - w0, height=0.6, color=color, alpha=alpha,
                          hatch=hatch, edgecolor=color, linewidth=0.5)
    n_lanes = max(lanes, default=0) + 1
    cold = as_bool(req["cold"]) if "cold" in req.columns else pd.Series(False, index=req.index)
    y_arr = n_lanes - 0.2
    ax_i.scatter(t_send[~cold] - w0, np.full(int((~cold).sum()), y_arr), marker="v",
                 color="0.55", s=28, label="warm arrival", zorder=3)
    ax_i.scatter(t_send[cold] - w0, np.full(int(cold.sum()), y_arr), marker="v",
                 color="black", s=28, label="cold arrival", zorder=3)
    ax_i.set_yticks(range(n_lanes), [f"lane {k + 1}" for k in range(n_lanes)]
                    if n_lanes > 1 else [""])
    ax_i.set_ylim(-0.6, n_lanes + 0.3)
    ax_i.set_ylabel(f"instances\n({len(spans)} started)")
    ax_i.grid(axis="y", visible=False)
    ax_i.set_title(f"{strategy}: arrivals and instances (hatched: starting, solid: up)",
                   color=color, loc="left", fontsize=10)
    ax_i.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=2,
                frameon=False, borderaxespad=0.1)
    tel = data.telemetry if data.telemetry is not None else pd.DataFrame()
    on_gpu = str(tel["device"].iloc[0]).startswith("gpu") if "device" in tel.columns \
        and len(tel) else False
    t = pd.to_numeric(tel.get("t_s"), errors="coerce") - w0 if len(tel) else pd.Series()
    mem = pd.to_numeric(tel.get("instance_mem_mib"), errors="coerce") if len(tel) else None
    if mem is not None and mem.notna().any():
        n = pd.to_numeric(tel.get("n_instances"), errors="coerce")
        mem = mem.mask(mem.isna() & (n == 0), 0.0)
        ax_m.fill_between(t, mem, step="post", color=color, alpha=0.35, linewidth=0)
        ax_m.plot(t, mem, drawstyle="steps-post", color=color, linewidth=1)
    else:
        _empty_note(ax_m, "no instance memory recorded")
    ax_m.set_ylabel("GPU memory\nheld (MiB)" if on_gpu else "host memory\n(RSS, MiB)")
    power = pd.to_numeric(tel.get("power_w"), errors="coerce") if len(tel) else None
    if power is not None and power.notna().sum() >= 2:
        ax_p.plot(t, power, color=color, linewidth=1)
        ax_p.set_ylabel("power (W)")
    else:
        cpu = pd.to_numeric(tel.get("instance_cpu_pct"), errors="coerce") if len(tel) \
            else None
        if cpu is not None and cpu.notna().any():
            ax_p.plot(t, cpu.fillna(0.0), color=color, linewidth=1)
            ax_p.set_ylabel("instance CPU\n(% of a core)")
            ax_p.set_title("no power sensor: the instances' CPU use instead", loc="left",
                           fontsize=8, color="0.35")
        else:
            _empty_note(ax_p, "no power or CPU samples recorded")
    ax_p.set_xlabel("time since the replay started (s)")
    ax_p.set_xlim(-0.02 * (w1 - w0), (w1 - w0) * 1.02)
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Energy


def _basis_note(runs: pd.DataFrame) -> str:
    bases = set(runs["basis"].astype(str)) if "basis" in runs.columns else set()
    if bases == {"measured"}:
        return "measured"
    if bases == {"estimated"}:
        return "estimated: no energy counter"
    return "measured where a counter was read, estimated elsewhere"


def plot_energy(phases_csv: Path, runs_csv: Path, out: Path, *,
                strategies: Sequence[str] | None = None) -> Path:
    """Energy per run by phase (stacked, mean over repeats), and energy per request and
    per output token: total and the part above the bare-idle baseline."""
    plt = _plt()
    phases = pd.read_csv(phases_csv)
    runs = pd.read_csv(runs_csv)
    names = _strategies_of(runs, given=strategies)
    colors = strategy_colors(names)
    fig = plt.figure(figsize=(WIDTH_IN, 7.0))
    grid = fig.add_gridspec(2, 2, height_ratios=[1.1, 1])
    ax_ph = fig.add_subplot(grid[0, :])
    ax_rq = fig.add_subplot(grid[1, 0])
    ax_tk = fig.add_subplot(grid[1, 1])
    note = _basis_note(runs)
    segments = [(phase, [_strategy_mean(phases[phases["phase"] == phase], s, "energy_j")
                         for s in names]) for phase in PHASES]
    # The runtime-warm phase only where some policy had instances sleeping: runs of the
    # other policies (and phase files written before the phase existed) have none.
    segments = [(phase, values) for phase, values in segments
                if phase != "runtime_warm" or any(v != 0 for v in values)]
    _stacked_barh(
        ax_ph, names, colors,
        [(PHASE_LABELS[phase], PHASE_COLORS[phase], values) for phase, values in segments],
        total_fmt="{:.4g} J", headroom=1.15)
    ax_ph.set_xlabel("energy over the replay window (J, mean over repeats)")
    ax_ph.set_title(f"Energy by phase ({note})")
    ax_ph.legend(loc="lower center", bbox_to_anchor=(0.5, -0.42), ncol=len(segments),
                 frameon=False)
    for ax, total_col, above_col, label in (
        (ax_rq, "energy_per_request_j", "energy_per_request_above_baseline_j",
         "energy per successful request (J)"),
        (ax_tk, "energy_per_output_token_j", "energy_per_output_token_above_baseline_j",
         "energy per output token (J)"),
    ):
        for i, s in enumerate(names):
            mine = runs["strategy"].astype(str) == s
            total = float(pd.to_numeric(runs.loc[mine, total_col], errors="coerce").mean())
            above = float(pd.to_numeric(runs.loc[mine, above_col], errors="coerce").mean())
            ax.bar(i, total, color=colors[s], alpha=0.35, width=0.7)
            ax.bar(i, above, color=colors[s], width=0.7)
            if np.isfinite(total) and total > 0 and np.isfinite(above):
                ax.text(i, total, f"{100 * above / total:.0f} %\nabove", ha="center",
                        va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel(label)
        ymax = ax.get_ylim()[1]
        ax.set_ylim(0, ymax * 1.2)
    ax_rq.set_title("Per request (light: total, dark: above bare idle)", fontsize=10)
    ax_tk.set_title("Per output token (light: total, dark: above bare idle)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Projections


def plot_projections(sweep_csv: Path, model_csv: Path, constants_json: Path, out: Path, *,
                     strategies: Sequence[str] | None = None) -> Path:
    """Projected energy and emissions per year, cost per year and busy share against
    traffic, and the break-even keep-warm TTL."""
    plt = _plt()
    sweep = pd.read_csv(sweep_csv)
    model = pd.read_csv(model_csv)
    constants = json.loads(Path(constants_json).read_text(encoding="utf-8"))["constants"]
    carbon = float(constants["carbon_intensity_g_per_kwh"]["value"])
    names = _strategies_of(sweep, given=strategies)
    colors = strategy_colors(names)
    fig, axes = plt.subplots(2, 2, figsize=(WIDTH_IN, 7.4))
    ax_e, ax_c, ax_b, ax_t = axes.ravel()
    for s in names:
        d = sweep[sweep["strategy"].astype(str) == s].sort_values("traffic_rph")
        if d.empty:
            continue
        over = pd.to_numeric(d["load"], errors="coerce") > 1  # beyond one instance
        for ax, col in ((ax_e, "energy_kwh_per_year"), (ax_c, "cost_usd_per_year"),
                        (ax_b, "busy_share")):
            y = pd.to_numeric(d[col], errors="coerce") * (100.0 if col == "busy_share" else 1)
            ax.plot(d["traffic_rph"], y, color=colors[s], linewidth=1.6, label=s)
            ax.scatter(d.loc[~over, "traffic_rph"], y[~over], color=colors[s], s=22, zorder=3)
            ax.scatter(d.loc[over, "traffic_rph"], y[over], facecolor="white",
                       edgecolor=colors[s], s=22, zorder=3)
    for ax in (ax_e, ax_c, ax_b):
        _log_axis(ax, "x", subs=(1.0,))
        ax.set_xlabel("traffic (requests per hour, Poisson)")
    _log_axis(ax_e, "y", subs=_log_subs(*_positive_range(sweep["energy_kwh_per_year"])))
    ax_e.set_ylabel("energy (kWh per year)")
    ax_e.set_title("Energy and emissions per year")
    if carbon > 0:
        sec = ax_e.secondary_yaxis("right", functions=(lambda k: k * carbon / 1000.0,
                                                       lambda c: c * 1000.0 / carbon))
        sec.set_ylabel(f"emissions (kg CO2e per year at {carbon:g} g/kWh)")
        lo, hi = (v * carbon / 1000.0 for v in ax_e.get_ylim())
        _log_axis(sec, "secondary", subs=_log_subs(lo, hi))
    _log_axis(ax_c, "y", subs=_log_subs(*_positive_range(sweep["cost_usd_per_year"])))
    ax_c.set_ylabel("instance cost (USD per year)")
    ax_c.set_title("Cost of the instance time held")
    ax_b.set_ylabel("share of held instance time serving (%)")
    ax_b.set_ylim(0, 105)
    ax_b.set_title("How much of the held time does work")
    ax_e.legend(loc="best", fontsize=8)
    # Break-even TTL: energy of keeping an instance warm through an idle gap vs one
    # cold start (both above bare idle).
    m = model.iloc[0] if not model.empty else None
    be = float(m["break_even_ttl_s"]) if m is not None else math.nan
    if m is None or not math.isfinite(be):
        _empty_note(ax_t, "break-even TTL unknown: needs a cold start and idle-loaded "
                          "power above bare idle")
    else:
        extra_w = float(m["idle_loaded_power_w"]) - float(m["bare_idle_power_w"])
        cs = float(m["cold_start_above_baseline_j"])
        ttls = [float(x) for x in model["idle_ttl_s"] if 0 < float(x) < math.inf]
        g_max = max([be * 3.0, *[t * 1.2 for t in ttls]])
        g = np.linspace(0, g_max, 200)
        ax_t.plot(g, extra_w * g, color="0.2", label="keep warm through the gap")
        ax_t.axhline(cs, color=PHASE_COLORS["cold_start"], linestyle="--",
                     label="scale to zero: one cold start")
        ax_t.axvline(be, color="0.5", linestyle=":")
        ax_t.annotate(f"break-even {be:.3g} s", (be, cs), xytext=(8, -16),
                      textcoords="offset points", fontsize=9)
        for _, row in model.iterrows():
            ttl = float(row["idle_ttl_s"])
            if 0 < ttl < math.inf:
                ax_t.axvline(ttl, color=colors.get(str(row["strategy"]), "0.3"),
                             linewidth=1.2, alpha=0.8)
                ax_t.annotate(f"TTL of {row['strategy']}", (ttl, 0.98),
                              xycoords=("data", "axes fraction"), xytext=(-3, 0),
                              textcoords="offset points", rotation=90, va="top",
                              ha="right", fontsize=8)
        ax_t.set_xlim(0, g_max)
        ax_t.set_ylim(0, max(extra_w * g_max, cs) * 1.1)
        ax_t.legend(loc="lower right", fontsize=8)
    ax_t.set_xlabel("idle gap between requests (s)")
    ax_t.set_ylabel("energy above bare idle (J)")
    ax_t.set_title("Break-even keep-warm TTL")
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Size sweep


def plot_size_sweep(sweep_csv: Path, out: Path) -> Path:
    """Cold-start phases against model bytes, beside the read-bandwidth lower bounds."""
    plt = _plt()

    df = pd.read_csv(sweep_csv).sort_values("file_bytes")
    mib = df["file_bytes"] / (1024 * 1024)
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    phases = [
        ("spawn_to_runtime_ready_mean_s", "spawn → runtime ready", "#9ecae1"),
        ("runtime_ready_to_model_loaded_mean_s", "weights loaded", "#3182bd"),
        ("model_loaded_to_ready_mean_s", "server ready", "#08519c"),
        ("ready_to_first_token_mean_s", "first token", "#fd8d3c"),
    ]
    x = range(len(df))
    bottom = [0.0] * len(df)
    for column, label, colour in phases:
        values = pd.to_numeric(df[column], errors="coerce").fillna(0.0).tolist()
        ax.bar(x, values, bottom=bottom, color=colour, label=label, width=0.6)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    # The bounds apply to the weights-loading phase: draw them where that phase would
    # end if it were only reading the file, i.e. on top of the spawn phase.
    load_start = pd.to_numeric(df["spawn_to_runtime_ready_mean_s"], errors="coerce").fillna(0.0)
    ax.plot(x, load_start + df["load_lower_bound_page_cache_s"], "k_", markersize=30, mew=2,
            label="load end if reading at page-cache bandwidth")
    if df["load_lower_bound_cold_s"].notna().any():
        ax.plot(x, load_start + df["load_lower_bound_cold_s"], "r_", markersize=30, mew=2,
                label="load end if reading at cold-read bandwidth")
    ax.set_xticks(list(x), [f"{m}\n{s:,.0f} MiB" for m, s in zip(df["model"], mib,
                                                                   strict=True)])
    ax.set_ylabel("mean time from spawn, s")
    ax.set_xlabel("model (file size)")
    ax.set_title("Cold start by phase against model size")
    # Below the axes: bars of any height stay readable.
    fig.legend(fontsize=8, loc="outside lower center", ncols=3, frameon=False, markerscale=0.5)
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Simulation against measurement


def plot_simulation(validation_csv: Path, out: Path, *,
                    strategies: Sequence[str] | None = None) -> Path:
    """Simulated against measured, one panel per metric of the validation table: one
    point per run (hollow where its target was missed), the identity line and the
    target band around it."""
    from scalezero.simulate.validate import METRIC_LABELS, TARGETS

    plt = _plt()
    df = pd.read_csv(validation_csv)
    names = _strategies_of(df, given=strategies)
    colors = strategy_colors(names)
    targets = [t for t in TARGETS if t.metric in set(df["metric"].astype(str))] or \
        list(TARGETS[:1])
    ncols = min(3, len(targets))
    nrows = math.ceil(len(targets) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH_IN, 3.0 * nrows + 0.6),
                             squeeze=False)
    for ax, target in zip(axes.ravel(), targets, strict=False):
        sel = df[df["metric"].astype(str) == target.metric]
        m = pd.to_numeric(sel["measured"], errors="coerce")
        s = pd.to_numeric(sel["simulated"], errors="coerce")
        both = pd.concat([m, s]).dropna()
        if both.empty:
            _empty_note(ax, "nothing to compare")
            ax.set_title(METRIC_LABELS.get(target.metric, target.metric))
            continue
        hi = float(both.max()) * 1.1 if float(both.max()) > 0 else 1.0
        lo = min(0.0, float(both.min()))
        lo -= 0.03 * (hi - lo)  # points at 0 stay clear of the axes
        x = np.linspace(lo, hi, 50)
        if target.kind == "pct":
            band_lo, band_hi = x * (1 - target.tolerance / 100), x * (1 + target.tolerance / 100)
        else:
            band_lo, band_hi = x - target.tolerance, x + target.tolerance
        ax.fill_between(x, band_lo, band_hi, color="0.85", label=f"target {target.text}")
        ax.plot(x, x, color="0.3", linewidth=0.8, label="simulated = measured")
        met = sel["met"].astype("string").str.lower()
        for strategy in names:
            mine = sel["strategy"].astype(str) == strategy
            for hit, face in ((True, colors[strategy]), (False, "none")):
                pick = mine & (met == ("true" if hit else "false"))
                if pick.any():
                    ax.scatter(m[pick], s[pick], s=36, facecolors=face,
                               edgecolors=colors[strategy], linewidths=1.3, zorder=3)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(METRIC_LABELS.get(target.metric, target.metric))
        ax.set_xlabel("measured")
        ax.set_ylabel("simulated")
    for ax in axes.ravel()[len(targets):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Line2D([], [], marker="o", linestyle="", color=colors[n], label=n)
                          for n in names]
    handles += [Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                       markeredgecolor="0.3", color="0.3", label="target missed"),
                Line2D([], [], color="0.3", linewidth=0.8, label="simulated = measured"),
                Patch(color="0.85", label="target band")]
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), frameon=False)
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Simulated scenarios


def plot_scenario_heatmap(grid_csv: Path, out: Path, *,
                          strategies: Sequence[str] | None = None) -> Path:
    """Rate x keep-warm TTL grid of one profile (the measured one when the grid has it):
    instance-hours per day and the share of cold requests, one heatmap each."""
    plt = _plt()
    grid = pd.read_csv(grid_csv)
    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(WIDTH_IN, 4.2), layout="constrained")
    if grid.empty:
        for ax in (ax_h, ax_c):
            _empty_note(ax, "no simulated grid")
        return _save(fig, out)
    measured = grid[grid["label"].astype(str) == "measured"]
    chosen = measured if not measured.empty else grid
    profile = str(chosen["profile"].iloc[0])
    label = str(chosen["label"].iloc[0])
    cells = chosen[chosen["profile"].astype(str) == profile]
    for ax, column, scale, title, fmt_cell, cmap in (
        (ax_h, "instance_h_per_day", 1.0, "instance-hours per day", "{:.3g}", "viridis"),
        (ax_c, "cold_share", 100.0, "requests waiting for a cold start (%)", "{:.0f}",
         "magma"),
    ):
        table = cells.pivot_table(index="rate_rph", columns="ttl_s", values=column,
                                  aggfunc="mean").sort_index().sort_index(axis=1) * scale
        values = table.to_numpy(dtype=float)
        image = ax.imshow(values, origin="lower", aspect="auto", cmap=cmap)
        fig.colorbar(image, ax=ax, shrink=0.85, label=title)
        finite = values[np.isfinite(values)]
        mid = (float(finite.min()) + float(finite.max())) / 2 if finite.size else 0.0
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, fmt_cell.format(v), ha="center", va="center", fontsize=7,
                        color="white" if v < mid else "black")
        ax.set_xticks(range(len(table.columns)), [f"{t:g}" for t in table.columns])
        ax.set_yticks(range(len(table.index)), [f"{r:g}" for r in table.index])
        ax.set_xlabel("keep-warm TTL (s)")
        ax.set_ylabel("traffic (requests per hour, Poisson)")
        ax.set_title(title)
        ax.grid(False)
    which = profile if label == "measured" else f"{profile}, {label}"
    fig.suptitle(f"Simulated keep_warm on the {which} profile")
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Dispatch by name (for the workflow's script and the command line)

#: figure name -> (function, names of its inputs, in call order); the names are those of
#: scalezero.report.figure_list (the size sweep's figure is drawn by its own rule).
FIGURES: dict[str, tuple[Callable[..., Path], tuple[str, ...]]] = {
    "latency": (plot_latency, ("requests",)),
    "cold_starts": (plot_cold_starts, ("cold_starts", "summary")),
    "frontier": (plot_frontier, ("summary",)),
    "energy": (plot_energy, ("phases", "runs")),
    "projections": (plot_projections, ("sweep", "model", "constants")),
    "timeline": (plot_timeline, ("run_dir",)),
    "simulation": (plot_simulation, ("validation",)),
    "scenario_heatmap": (plot_scenario_heatmap, ("grid",)),
}


def make_figure(name: str, inputs: Mapping[str, Any], out: Path,
                **options: Any) -> Path:
    """Draw figure `name` from `inputs` (keys as listed in FIGURES) into `out`."""
    from scalezero.errors import UserError

    if name not in FIGURES:
        raise UserError(f"unknown figure {name!r} (known: {', '.join(FIGURES)})")
    func, needs = FIGURES[name]
    missing = [k for k in needs if k not in inputs]
    if missing:
        raise UserError(f"figure {name}: missing input(s) {', '.join(missing)}")
    accepted = {"strategies"} | ({"slo_sets"} if name == "latency" else set())
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    return func(*(Path(inputs[k]) for k in needs), Path(out), **kwargs)


__all__ = [
    "FIGURES", "PHASE_COLORS", "make_figure", "plot_cold_starts", "plot_energy", "plot_frontier",
    "plot_latency", "plot_projections", "plot_simulation", "plot_size_sweep", "plot_timeline",
    "strategy_colors",
    "strategy_order",
]
