"""What the report reads: the aggregate and projection steps' files, run.json of each
run, the trace and its record (what it was made from), gathered in `ReportInputs` by
`collect_inputs`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scalezero.analysis.metrics import DEFAULT_SLO_SETS
from scalezero.analysis.runs import read_json, read_run_meta
from scalezero.report.figures import strategy_order


@dataclass
class ReportInputs:
    """Everything the report reads, as frames and dicts."""

    workload: str
    summary: pd.DataFrame
    requests: pd.DataFrame
    cold_starts: pd.DataFrame
    runs: pd.DataFrame  # projections: per-run energy and cost
    phases: pd.DataFrame  # projections: per-run phase energy
    model: pd.DataFrame  # projections: per-strategy projection inputs
    sweep: pd.DataFrame  # projections: traffic sweep
    constants: dict[str, dict[str, Any]]
    projection_settings: dict[str, Any]
    run_meta: list[dict[str, Any]]
    trace: pd.DataFrame | None
    slo_sets: dict[str, dict[str, float]]
    strategies: list[str]
    # The workload step's record of the trace (results/traces/<workload>.json), None
    # when absent, and the workload's configuration entry (empty when not given).
    trace_info: dict[str, Any] | None = None
    workload_spec: dict[str, Any] = field(default_factory=dict)


def collect_inputs(
    workload: str, summary_files: Mapping[str, Path], projection_files: Mapping[str, Path],
    run_dirs: Sequence[Path] = (), trace: Path | None = None,
    slo_sets: Mapping[str, Mapping[str, float]] | None = None,
    trace_info: Path | None = None, workload_spec: Mapping[str, Any] | None = None,
) -> ReportInputs:
    """Read the aggregate step's files (summary, requests, cold_starts), the projection
    step's files (sweep, model, runs, phases, constants), run.json of each run folder,
    the trace and the trace's record (each of the last two when given and present)."""
    summary = pd.read_csv(summary_files["summary"])
    constants = read_json(Path(projection_files["constants"]))
    run_meta = [read_run_meta(Path(d)) for d in run_dirs]
    trace_df = pd.read_csv(trace) if trace is not None and Path(trace).is_file() else None
    return ReportInputs(
        workload=workload,
        summary=summary,
        requests=pd.read_csv(summary_files["requests"]),
        cold_starts=pd.read_csv(summary_files["cold_starts"]),
        runs=pd.read_csv(projection_files["runs"]),
        phases=pd.read_csv(projection_files["phases"]),
        model=pd.read_csv(projection_files["model"]),
        sweep=pd.read_csv(projection_files["sweep"]),
        constants=constants.get("constants", {}),
        projection_settings=constants.get("projections", {}),
        run_meta=[m for m in run_meta if m],
        trace=trace_df,
        slo_sets={k: dict(v) for k, v in (slo_sets or DEFAULT_SLO_SETS).items()},
        strategies=strategy_order(sorted(set(summary["strategy"].astype(str)))),
        trace_info=(read_json(Path(trace_info))
                    if trace_info is not None and Path(trace_info).is_file() else None),
        workload_spec=dict(workload_spec or {}),
    )


def per_strategy(frame: pd.DataFrame, strategy: str, column: str) -> list[float]:
    if column not in frame.columns:
        return []
    sel = frame.loc[frame["strategy"].astype(str) == strategy, column]
    return [float(v) for v in pd.to_numeric(sel, errors="coerce")]


__all__ = ["ReportInputs", "collect_inputs", "per_strategy"]
