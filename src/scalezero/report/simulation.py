"""The report's simulation subsection: the leave-one-out validation table, the sentence
naming every missed target, the fitted profile and the figure (`_generated/simulation.md`).
The numbers come from `scalezero.report.variables.simulation_variables`."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from scalezero.analysis.numbers import num
from scalezero.report.format import NA, fmt, markdown_table
from scalezero.simulate.validate import METRIC_LABELS

NOT_RUN = ("No simulation was validated for this report (the workflow's "
           "validate_simulation step writes results/simulation/<workload>_validation.csv).\n")


def validation_table(validation: pd.DataFrame) -> str:
    """Per run and metric: measured, simulated, error, target, met or missed."""
    rows = []
    for r in validation.itertuples():
        met = str(r.met).lower()
        pct = num(r.error_pct)
        rows.append([
            r.strategy, r.rep, METRIC_LABELS.get(str(r.metric), str(r.metric)),
            fmt(r.measured), fmt(r.simulated), fmt(r.error),
            f"{fmt(pct, 2)} %" if math.isfinite(pct) else NA, r.target,
            "met" if met == "true" else "missed" if met == "false" else NA,
        ])
    return markdown_table(["strategy", "rep", "metric", "measured", "simulated", "error",
                           "error %", "target", "target met"], rows,
                          ["l", "r", "l", "r", "r", "r", "r", "r", "l"])


def simulation_md(validation: pd.DataFrame | None, sim: Mapping[str, str],
                  figure_number: int | None = None, figure_file: str | None = None) -> str:
    """The generated subsection; `sim` is the report's `sim` variables."""
    parts = []
    if "cold_start_s" in sim:
        parts.append(
            f"Fitted on all {sim['profile_sources']} runs, the profile starts an instance "
            f"in {sim['cold_start_s']} s (spawn to runtime ready "
            f"{sim['spawn_to_runtime_ready_s']} s, loading {sim['runtime_ready_to_model_loaded_s']}"
            f" s, then {sim['model_loaded_to_ready_s']} s to ready), adds "
            f"{sim['first_request_extra_s']} s to an instance's first request, stops one in "
            f"{sim['stop_s']} s, answers a warm request's first token in "
            f"{sim['ttft_base_ms']} ms + {sim['ttft_ms_per_prompt_token']} ms per prompt "
            f"token and every further token in {sim['tpot_ms']} ms; power (source: "
            f"{sim['energy_source']}) is {sim['idle_loaded_power_w']} W idle with the model "
            f"loaded and {sim['active_power_w']} W serving.\n")
    if validation is None or validation.empty or sim.get("validated") != "yes":
        parts.append(NOT_RUN)
        return "\n".join(parts)
    if figure_number is not None and figure_file is not None:
        parts.append(
            f"![Figure {figure_number}: Simulated against measured, leaving one out: each "
            "run simulated on a profile fitted from the other runs. One panel per metric, "
            "one point per run (hollow: target missed); the line is simulated = measured, "
            f"the grey band the target.]({figure_file}){{width=100%}}\n")
    parts.append(
        f"Profiles fitted on: {sim['fit']}. Of {sim['n_checked']} comparisons over "
        f"{sim['n_runs']} runs, {sim['n_met']} met their target and {sim['n_missed']} "
        f"missed it. {sim['missed']}\n")
    parts.append(validation_table(validation))
    return "\n".join(parts)


__all__ = ["NOT_RUN", "simulation_md", "validation_table"]
