"""The report's platform comparison (only with `platforms:` configured)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scalezero.report.format import fmt, fmt_int, markdown_table


def _where(row: pd.Series) -> str:
    parts = [str(row[k]) for k in ("device", "gpu_model", "partition", "host")
             if isinstance(row.get(k), str) and row[k]]
    return ", ".join(parts)


def platforms_md(comparison_csv: Path | None) -> str:
    """A subsection with one row per platform; empty text without a comparison."""
    if comparison_csv is None:
        return ""
    table = pd.read_csv(comparison_csv, keep_default_na=False, na_values=[""])
    header = ["Platform", "Where", "Runs", "Cold starts", "Cold start (s)",
              "Spawn → runtime (s)", "Runtime → model (s)", "Model → ready (s)",
              "Bare idle (W)", "Idle, loaded (W)", "Busy (W)", "Energy / request (J)",
              "Break-even TTL (s)"]
    rows = [[str(r["platform"]), _where(r), fmt_int(r["runs"]), fmt_int(r["cold_starts"]),
             fmt(r["cold_start_mean_s"]), fmt(r["spawn_to_runtime_ready_mean_s"]),
             fmt(r["runtime_ready_to_model_loaded_mean_s"]),
             fmt(r["model_loaded_to_ready_mean_s"]), fmt(r["bare_idle_power_w"]),
             fmt(r["idle_loaded_power_w"]), fmt(r["active_power_w"]),
             fmt(r["energy_per_request_j"]), fmt(r["break_even_ttl_s"])]
            for _, r in table.iterrows()]
    names = ", ".join(str(p) for p in table["platform"])
    return (
        "## Platforms\n\n"
        f"The same runs were measured on {len(table)} platforms ({names}); the rest of "
        f"this report shows the first. Means over each platform's runs; busy power is "
        "the mean power while a request was in flight, and energy per request divides "
        "all energy of the replay windows by the successful requests.\n\n"
        + markdown_table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2))
    )


__all__ = ["platforms_md"]
