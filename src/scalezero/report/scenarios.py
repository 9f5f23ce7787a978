"""The report's simulated-scenarios subsection: the rate x TTL heatmap, the production
hour table and the simulated against closed-form yearly projections.

Every row from a published GPU profile carries "published, not measured"
(`scalezero.simulate.published.LABEL`): those numbers are what the simulator makes of
published and assumed figures, not measurements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from scalezero.report.format import fmt, fmt_int, fmt_pct, markdown_table
from scalezero.simulate.published import LABEL
from scalezero.simulate.scenarios import MEASURED_LABEL

NOT_SIMULATED = ("No scenarios were simulated for this report (the workflow's "
                 "simulate_hour, simulate_grid and simulate_projections rules make them).\n")


def _measured(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["label"].astype(str) == MEASURED_LABEL]


def _published(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["label"].astype(str) != MEASURED_LABEL]


def _profile_name(row: pd.Series) -> str:
    name = str(row["profile"])
    return name if str(row["label"]) == MEASURED_LABEL else f"{name} ({LABEL})"


def hour_table(hour: pd.DataFrame) -> str:
    """The hour and its thinned variants on the measured profile, every strategy."""
    rows = []
    for _, r in _measured(hour).sort_values("keep_probability", ascending=False).iterrows():
        rows.append([fmt(r["keep_probability"]), str(r["strategy"]), fmt_int(r["requests"]),
                     fmt_int(r["cold_starts"]), fmt_pct(r["cold_share"]),
                     fmt(r["instance_h"]), fmt(r["ttft_p50_ms"]), fmt(r["ttft_p99_ms"]),
                     fmt(r["energy_per_request_j"])])
    return markdown_table(["kept share", "strategy", "requests", "cold starts",
                           "cold requests", "instance-hours", "TTFT p50 (ms)",
                           "TTFT p99 (ms)", "energy per request (J)"], rows,
                          ["r", "l", "r", "r", "r", "r", "r", "r", "r"])


def _least_thinned(hour: pd.DataFrame) -> float:
    return float(pd.to_numeric(hour["keep_probability"], errors="coerce").max())


def published_hour_table(hour: pd.DataFrame) -> str:
    """The least thinned hour (the whole one when simulated) on every published profile."""
    full = _published(hour)
    keep = pd.to_numeric(full["keep_probability"], errors="coerce")
    full = full[keep == _least_thinned(full)]
    rows = [[_profile_name(r), str(r["strategy"]), fmt_pct(r["cold_share"]),
             fmt(r["instance_h"]), fmt(r["ttft_p99_ms"]), fmt(r["energy_per_request_j"])]
            for _, r in full.iterrows()]
    return markdown_table(["profile", "strategy", "cold requests", "instance-hours",
                           "TTFT p99 (ms)", "energy per request (J)"], rows,
                          ["l", "l", "r", "r", "r", "r"])


def projections_comparison_table(projections: pd.DataFrame) -> str:
    """Measured profile: instance-hours and energy per year, closed form beside simulated."""
    m = _measured(projections)
    closed = m[m["method"] == "closed_form"].set_index(["strategy", "traffic_rph"])
    rows = []
    for _, r in m[m["method"] == "simulated"].iterrows():
        key = (r["strategy"], r["traffic_rph"])
        c = closed.loc[key] if key in closed.index else pd.Series(dtype=float)
        rows.append([str(r["strategy"]), fmt(r["traffic_rph"]),
                     fmt(c.get("cold_start_share", math.nan) * 100.0),
                     fmt(r["cold_start_share"] * 100.0),
                     fmt(c.get("instance_h_per_day")), fmt(r["instance_h_per_day"]),
                     fmt(c.get("energy_kwh_per_year")), fmt(r["energy_kwh_per_year"]),
                     fmt(r["instance_h_vs_closed_form"])])
    return markdown_table(["strategy", "requests per hour", "cold % (closed form)",
                           "cold % (simulated)", "instance-h/day (closed form)",
                           "instance-h/day (simulated)", "kWh/year (closed form)",
                           "kWh/year (simulated)", "instance-h ratio"], rows,
                          ["l"] + ["r"] * 8)


def published_projections_table(projections: pd.DataFrame) -> str:
    """Published profiles: simulated energy per year at every traffic level."""
    sim = _published(projections)
    sim = sim[sim["method"] == "simulated"]
    if sim.empty:
        return ""
    levels = sorted(pd.to_numeric(sim["traffic_rph"], errors="coerce").dropna().unique())
    rows = []
    for (profile, strategy), group in sim.groupby(["profile", "strategy"], sort=False):
        by_rate = dict(zip(pd.to_numeric(group["traffic_rph"]), group["energy_kwh_per_year"],
                           strict=True))
        rows.append([f"{profile} ({LABEL})", str(strategy),
                     *(fmt(by_rate.get(level, math.nan)) for level in levels)])
    return markdown_table(["profile", "strategy", *(f"{fmt(x)} req/h" for x in levels)],
                          rows, ["l", "l"] + ["r"] * len(levels))


def _agreement(projections: pd.DataFrame) -> str:
    m = _measured(projections)
    ratios = pd.to_numeric(m.loc[m["method"] == "simulated", "instance_h_vs_closed_form"],
                           errors="coerce").dropna()
    if ratios.empty:
        return ""
    return (f"Over the measured profile's rows, the simulated instance-hours are "
            f"{fmt(ratios.min())} to {fmt(ratios.max())} times the closed form's. ")


def scenarios_md(files: Mapping[str, Path] | None, figure_number: int | None,
                 figure_file: str | None) -> str:
    """The subsection's Markdown; `files` holds the hour, grid and projections tables."""
    if files is None:
        return NOT_SIMULATED
    hour = pd.read_csv(files["hour"])
    projections = pd.read_csv(files["projections"])
    grid = pd.read_csv(files["grid"])
    measured = sorted(set(_measured(grid)["profile"].astype(str))
                      | set(_measured(hour)["profile"].astype(str)))
    published = sorted(set(_published(hour)["profile"].astype(str)))
    parts = []
    who = (f"the profile fitted from this workload's measured runs ({', '.join(measured)})"
           if measured else "no measured profile")
    text = (f"The simulator replays traffic on {who}"
            + (f" and on GPU profiles assembled from published figures and stated "
               f"assumptions ({', '.join(published)}; {LABEL})" if published else "")
            + ". Its numbers are simulations of those profiles, not runs.\n")
    parts.append(text)
    if figure_number is not None and figure_file:
        parts.append(f"![Figure {figure_number}: Simulated keep_warm under Poisson traffic: "
                     "instance-hours per day (left) and the share of requests that wait "
                     "for a cold start (right), for each traffic rate and keep-warm TTL. "
                     "A longer TTL holds the instance longer and spares cold starts.]"
                     f"({figure_file}){{width=100%}}\n")
    if not _measured(hour).empty:
        parts.append("The whole production hour of the Azure LLM trace (code service, "
                     "at its own pace) and thinned copies of it, on the measured profile:\n")
        parts.append(hour_table(hour))
    if not _published(hour).empty:
        keep = _least_thinned(_published(hour))
        which = "The whole hour" if keep == 1.0 else f"The hour thinned to {fmt(keep)}"
        parts.append(f"{which} on the GPU profiles ({LABEL}):\n")
        parts.append(published_hour_table(hour))
    if not _measured(projections).empty:
        parts.append("Yearly projections by simulation (a period of Poisson arrivals "
                     "scaled to a year) beside the closed form of the Projections section, "
                     "on the measured profile. " + _agreement(projections)
                     + "The closed form ignores that a cold request keeps the instance "
                     "busy for the cold start too, and the time an instance takes to "
                     "stop.\n")
        parts.append(projections_comparison_table(projections))
    pub = published_projections_table(projections)
    if pub:
        parts.append(f"Simulated energy per year on the GPU profiles ({LABEL}), kWh:\n")
        parts.append(pub)
    return "\n".join(parts)


__all__ = [
    "NOT_SIMULATED", "hour_table", "projections_comparison_table",
    "published_hour_table", "published_projections_table", "scenarios_md",
]
