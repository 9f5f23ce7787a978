"""The trade-off a deployer chooses on: what a strategy pays to stay warm against the
cold starts it still suffers, per strategy, and which strategies no other beats on both.

Idle cost is the time an instance was held with nothing in flight (the `idle_loaded`
phase plus the `runtime_warm` phase, where only runtime-warm instances were held; s),
or its energy where an energy counter measured every run (a measured cost beats a
time). A strategy is on the frontier when no other has at most
its idle cost and at most its cold-start share, and less of one of them (means over
repeats). The p99 TTFT is carried beside, as the latency the cold starts cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from scalezero.analysis.stats import mean_ci

#: Columns of `frontier_table`, one row per strategy.
FRONTIER_COLUMNS: tuple[str, ...] = (
    "strategy", "runs", "idle_cost_basis",
    "idle_cost_mean", "idle_cost_ci95_low", "idle_cost_ci95_high",
    "idle_s_mean", "idle_energy_j_mean",
    "cold_share_mean", "cold_share_ci95_low", "cold_share_ci95_high",
    "ttft_p99_ms_mean", "ttft_p99_ms_ci95_low", "ttft_p99_ms_ci95_high",
    "break_even_ttl_s", "on_frontier",
)

IDLE_SECONDS = "idle_instance_s"
IDLE_ENERGY = "idle_energy_j"


def _values(frame: pd.DataFrame, column: str) -> list[float]:
    if column not in frame.columns:
        return []
    return [float(v) for v in pd.to_numeric(frame[column], errors="coerce")]


def _idle_values(frame: pd.DataFrame, unit: str) -> list[float]:
    """Per run, phase idle_loaded plus phase runtime_warm (``unit``: ``s`` or
    ``energy_j``); summaries written before the runtime_warm phase count it 0."""
    loaded = _values(frame, f"phase_idle_loaded_{unit}")
    warm = _values(frame, f"phase_runtime_warm_{unit}") or [0.0] * len(loaded)
    return [a + b for a, b in zip(loaded, warm, strict=True)]


def idle_cost_basis(summary: pd.DataFrame) -> str:
    """`idle_energy_j` when an energy counter measured the idle energy of every run,
    else `idle_instance_s`."""
    needed = ("energy_source", "phase_idle_loaded_energy_j")
    if summary.empty or any(column not in summary.columns for column in needed):
        return IDLE_SECONDS
    measured = summary["energy_source"].astype(str).isin(("nvml_counter", "rapl"))
    energy = pd.to_numeric(summary["phase_idle_loaded_energy_j"], errors="coerce")
    return IDLE_ENERGY if bool(measured.all() and energy.notna().all()) else IDLE_SECONDS


def non_dominated(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (cost, cold share), lower both better: True where no other point is at
    most as high on both and lower on one. A point with a NaN is never on the frontier."""
    flags = []
    for i, (x, y) in enumerate(points):
        if not (math.isfinite(x) and math.isfinite(y)):
            flags.append(False)
            continue
        dominated = any(
            j != i and math.isfinite(ox) and math.isfinite(oy)
            and ox <= x and oy <= y and (ox < x or oy < y)
            for j, (ox, oy) in enumerate(points)
        )
        flags.append(not dominated)
    return flags


def frontier_table(summary: pd.DataFrame, strategies: Sequence[str] | None = None
                   ) -> pd.DataFrame:
    """One row per strategy (in `strategies` order, else as the summary lists them):
    means and 95 % intervals over repeats of idle cost, cold-start share and p99 TTFT,
    and whether the strategy is on the frontier. Columns: FRONTIER_COLUMNS."""
    names = list(strategies) if strategies is not None else list(
        dict.fromkeys(summary["strategy"].astype(str)))
    basis = idle_cost_basis(summary)
    cost_unit = "energy_j" if basis == IDLE_ENERGY else "s"
    rows = []
    for name in names:
        runs = summary[summary["strategy"].astype(str) == name]
        cost = mean_ci(_idle_values(runs, cost_unit))
        cold = mean_ci(_values(runs, "cold_share"))
        ttft = mean_ci(_values(runs, "ttft_p99_ms"))
        break_even = mean_ci(_values(runs, "break_even_ttl_s"))
        rows.append({
            "strategy": name, "runs": len(runs), "idle_cost_basis": basis,
            "idle_cost_mean": cost.mean, "idle_cost_ci95_low": cost.low,
            "idle_cost_ci95_high": cost.high,
            "idle_s_mean": mean_ci(_idle_values(runs, "s")).mean,
            "idle_energy_j_mean": mean_ci(_idle_values(runs, "energy_j")).mean,
            "cold_share_mean": cold.mean, "cold_share_ci95_low": cold.low,
            "cold_share_ci95_high": cold.high,
            "ttft_p99_ms_mean": ttft.mean, "ttft_p99_ms_ci95_low": ttft.low,
            "ttft_p99_ms_ci95_high": ttft.high,
            "break_even_ttl_s": break_even.mean,
        })
    table = pd.DataFrame(rows, columns=[c for c in FRONTIER_COLUMNS if c != "on_frontier"])
    table["on_frontier"] = non_dominated(
        list(zip(table["idle_cost_mean"], table["cold_share_mean"], strict=True)))
    return table[list(FRONTIER_COLUMNS)]


__all__ = ["FRONTIER_COLUMNS", "frontier_table", "idle_cost_basis", "non_dominated"]
