"""Platforms side by side: one row per platform from its workload summary.

With `platforms:` configured the same runs are measured on each platform and aggregated
into results/summary/<platform>/<workload>.csv; `compare_platforms` reduces each of
those to the numbers that differ between platforms (cold-start phases, idle and busy
power, energy per request, break-even keep-warm TTL), written to
results/summary/platforms.csv for the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scalezero.analysis.numbers import mean, ratio

#: Column -> meaning with unit, in file order.
PLATFORM_COLUMNS: dict[str, str] = {
    "platform": "platform name (config platforms:)",
    "device": "device the runs used (cpu, cuda)",
    "gpu_model": "GPU model the runs asked for (empty: any)",
    "partition": "SLURM partition (empty: none given)",
    "host": "node asked for (empty: any)",
    "runs": "runs summarized (strategies x repeats)",
    "cold_starts": "cold starts in the replay windows, all runs",
    "cold_start_mean_s": "mean over runs of the mean spawn -> ready, s",
    "spawn_to_runtime_ready_mean_s": "mean over runs of spawn -> runtime_ready, s",
    "runtime_ready_to_model_loaded_mean_s": "mean over runs of runtime_ready -> "
                                            "model_loaded, s",
    "model_loaded_to_ready_mean_s": "mean over runs of model_loaded -> ready, s",
    "bare_idle_power_w": "mean over runs of the bare-idle power (no instance), W",
    "idle_loaded_power_w": "mean over runs of the power with an idle instance up, W",
    "active_power_w": "energy in phase active / time in phase active, all runs, W",
    "energy_per_request_j": "energy_total_j / ok, all runs, J",
    "break_even_ttl_s": "mean over runs of the break-even keep-warm TTL, s",
}

_MEANS = ("cold_start_mean_s", "spawn_to_runtime_ready_mean_s",
          "runtime_ready_to_model_loaded_mean_s", "model_loaded_to_ready_mean_s",
          "bare_idle_power_w", "idle_loaded_power_w", "break_even_ttl_s")


def _total(summary: pd.DataFrame, column: str) -> float:
    """Sum of a column's finite values; NaN when there are none (or no column)."""
    if column not in summary:
        return math.nan
    values = pd.to_numeric(summary[column], errors="coerce").dropna()
    return float(values.sum()) if not values.empty else math.nan


def platform_row(name: str, summary: pd.DataFrame, spec: Mapping[str, Any]) -> dict[str, Any]:
    """One platform's row of PLATFORM_COLUMNS from its workload summary."""
    row: dict[str, Any] = {
        "platform": name,
        "device": spec.get("device", ""),
        "gpu_model": spec.get("gpu_model", ""),
        "partition": spec.get("partition", ""),
        "host": spec.get("host", ""),
        "runs": len(summary),
        "cold_starts": _total(summary, "cold_starts"),
    }
    for column in _MEANS:
        row[column] = mean(summary[column]) if column in summary else math.nan
    row["active_power_w"] = ratio(_total(summary, "phase_active_energy_j"),
                                  _total(summary, "phase_active_s"))
    row["energy_per_request_j"] = ratio(_total(summary, "energy_total_j"),
                                        _total(summary, "ok"))
    return {column: row[column] for column in PLATFORM_COLUMNS}


def compare_platforms(summaries: Mapping[str, Path],
                      specs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per platform, in the order of `summaries` (platform -> summary CSV)."""
    rows = [platform_row(name, pd.read_csv(path), specs.get(name, {}))
            for name, path in summaries.items()]
    return pd.DataFrame(rows, columns=list(PLATFORM_COLUMNS))


__all__ = ["PLATFORM_COLUMNS", "compare_platforms", "platform_row"]
