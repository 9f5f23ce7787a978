"""Checking the simulator against every measured run of a workload, leaving one out.

For each run the profile is fitted on the *other* runs of the same workload, whatever
their strategy: the platform (model, device, host) is the same in all of them, only the
policy differs, and the policy is what the simulator replays. The run's own request
sequence (scheduled times relative to its replay start, the server-counted prompt
tokens, the requested output tokens) and its policy (run.json's `policy`: name and
parameters) are simulated over its replay window, and the simulated summary is compared
with the measured summary row. With a single run there is nothing to leave out: the
profile is fitted on that run itself, and the table says so in its `fit` column.

Targets (`TARGETS`): cold starts within 1 per run, instance time within 5 %, TTFT p50
within 10 %, TTFT p99 within 20 %, E2E p50 within 10 %, and the replay window's energy
within 10 % where an energy counter measured it (estimates are not checked).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from scalezero.analysis.constants import ProjectionSettings
from scalezero.analysis.numbers import num
from scalezero.analysis.runs import write_table
from scalezero.errors import UserError
from scalezero.serving.pool import PoolLimits
from scalezero.serving.settings import QueueSettings
from scalezero.serving.strategies import Policy, make_policy
from scalezero.simulate.fit import FitRun, profile_from_runs, read_run
from scalezero.simulate.profile import PlatformProfile

if TYPE_CHECKING:
    from scalezero.simulate.engine import SimRequest, SimResult

VALIDATION_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "rep", "fit", "metric", "measured", "simulated", "error",
    "error_pct", "target", "met",
)
#: The `fit` column when the workload has one run only.
FIT_ALL = "all runs (no other run)"


@dataclass(frozen=True)
class Target:
    """How close a simulated metric must come to the measured one."""

    metric: str
    kind: Literal["abs", "pct"]  # absolute difference, or percent of the measured value
    tolerance: float
    #: Checked only where an energy counter measured the run.
    needs_counter: bool = False

    @property
    def text(self) -> str:
        return f"±{self.tolerance:g}" + (" %" if self.kind == "pct" else "")

    def met(self, measured: float, simulated: float) -> bool | None:
        """Within the target; None when either value is missing."""
        if not (math.isfinite(measured) and math.isfinite(simulated)):
            return None
        error = simulated - measured
        if self.kind == "abs":
            return abs(error) <= self.tolerance
        if measured == 0:
            return error == 0
        return abs(100.0 * error / measured) <= self.tolerance


TARGETS: tuple[Target, ...] = (
    Target("cold_starts", "abs", 1.0),
    Target("instance_s", "pct", 5.0),
    Target("ttft_p50_ms", "pct", 10.0),
    Target("ttft_p99_ms", "pct", 20.0),
    Target("e2e_p50_ms", "pct", 10.0),
    Target("energy_total_j", "pct", 10.0, needs_counter=True),
)


#: Each metric in words, with its unit (figure axes, report table).
METRIC_LABELS: dict[str, str] = {
    "cold_starts": "cold starts",
    "instance_s": "instance time, s",
    "ttft_p50_ms": "TTFT p50, ms",
    "ttft_p99_ms": "TTFT p99, ms",
    "e2e_p50_ms": "E2E p50, ms",
    "energy_total_j": "energy, J",
}


def counter_measured(row: Mapping[str, Any]) -> bool:
    """The summary row's energy came from a counter (NVML, RAPL), not an estimate."""
    source = str(row.get("energy_source") or "none")
    return source not in ("none", "nan") and math.isfinite(num(row.get("energy_total_j")))


def compare(measured: Mapping[str, Any], simulated: Mapping[str, Any],
            targets: Sequence[Target] = TARGETS) -> list[dict[str, Any]]:
    """One row per target metric: measured, simulated, error (simulated - measured),
    error_pct (of measured), target and met (None where a value is missing). Energy is
    left out where no counter measured it."""
    rows = []
    has_counter = counter_measured(measured)
    for target in targets:
        if target.needs_counter and not has_counter:
            continue
        m, s = num(measured.get(target.metric)), num(simulated.get(target.metric))
        error = s - m
        rows.append({
            "metric": target.metric, "measured": m, "simulated": s, "error": error,
            "error_pct": 100.0 * error / m if m and math.isfinite(m) else math.nan,
            "target": target.text, "met": target.met(m, s),
        })
    return rows


# ---------------------------------------------------------------------------------------
# One run's inputs to the simulator


def run_requests(run: FitRun) -> list[SimRequest]:
    """The run's requests as sent: scheduled time relative to its replay start, the
    server-counted prompt tokens (0 where not counted) and max_tokens (the replay forces
    the full length)."""
    from scalezero.simulate.engine import SimRequest

    req = run.data.requests
    w0 = run.window[0]
    t_sched = pd.to_numeric(req["t_sched_s"], errors="coerce") - w0
    tokens_in = (pd.to_numeric(req["tokens_in"], errors="coerce") if "tokens_in" in req
                 else pd.Series(math.nan, index=req.index))
    max_tokens = pd.to_numeric(req["max_tokens"], errors="coerce")
    out = []
    for rid, t, p, o in zip(pd.to_numeric(req["request_id"], errors="coerce"), t_sched,
                            tokens_in, max_tokens, strict=True):
        if not (math.isfinite(rid) and math.isfinite(t)):
            continue
        out.append(SimRequest(request_id=int(rid), t_sched_s=float(t),
                              prompt_tokens=int(p) if math.isfinite(p) else 0,
                              output_tokens=max(1, int(o)) if math.isfinite(o) else 1))
    return sorted(out, key=lambda r: (r.t_sched_s, r.request_id))


def run_policy(meta: Mapping[str, Any]) -> Policy:
    """A fresh policy object as the run's gateway built it (run.json `policy`)."""
    record = meta.get("policy")
    if not isinstance(record, Mapping) or not record.get("name"):
        raise UserError("run.json names no policy")
    params = {k: v for k, v in record.items() if k not in ("name", "accounting")}
    return make_policy(str(record["name"]), params)


def run_limits(meta: Mapping[str, Any], gateway: Mapping[str, Any] | None = None) -> PoolLimits:
    """The pool limits of the run: run.json's `gateway` settings where recorded, else
    `gateway` (the configuration's section the run was made with), else the defaults."""
    recorded = meta.get("gateway")
    settings = recorded if isinstance(recorded, Mapping) else (gateway or {})
    known = set(QueueSettings.model_fields)
    return QueueSettings.model_validate({k: v for k, v in settings.items()
                                         if k in known}).pool_limits()


def run_history_s(meta: Mapping[str, Any], history_s: Sequence[float]) -> tuple[float, ...]:
    """The history the run's gateway gave its policy: the workload's (`history_s`) when
    run.json records one (a run made before histories existed, or of a workload without a
    training part, got none)."""
    record = meta.get("history")
    requests = record.get("requests") if isinstance(record, Mapping) else None
    if not requests:
        return ()
    if int(requests) != len(history_s):
        raise UserError(f"run.json records a history of {requests} arrivals, the workload's "
                        f"history file has {len(history_s)}: the trace changed since the run")
    return tuple(history_s)


def simulate_run(run: FitRun, profile: PlatformProfile,
                 gateway: Mapping[str, Any] | None = None,
                 history_s: Sequence[float] = ()) -> SimResult:
    """Simulate one measured run's requests under its policy on `profile`; the policy
    learns `history_s` first when the run's did (``run_history_s``)."""
    from scalezero.simulate.engine import simulate

    return simulate(run_requests(run), run_policy(run.data.meta), profile,
                    run_limits(run.data.meta, gateway),
                    history_s=run_history_s(run.data.meta, history_s),
                    until_s=run.window[1] - run.window[0])


# ---------------------------------------------------------------------------------------
# A workload


def _key(run: FitRun) -> tuple[str, str]:
    row = run.summary.row
    return str(row["strategy"]), str(row["rep"])


def _measured_rows(summary: pd.DataFrame | None, runs: Sequence[FitRun]
                   ) -> dict[tuple[str, str], dict[str, Any]]:
    """(strategy, rep) -> the measured summary row: from the summary file when given
    (what the report shows), else the analysis's reading of each run."""
    if summary is None:
        return {_key(r): dict(r.summary.row) for r in runs}
    return {(str(row["strategy"]), str(row["rep"])): row
            for row in summary.to_dict(orient="records")}


def validate_workload(
    run_dirs: Sequence[Path], workload: str, *, summary: pd.DataFrame | None = None,
    gateway: Mapping[str, Any] | None = None, settings: ProjectionSettings | None = None,
    history_s: Sequence[float] = (),
) -> pd.DataFrame:
    """The validation table (VALIDATION_COLUMNS) of a workload's runs, leaving one out.

    `summary` is the workload's summary file (the measured side; default: each run read
    here), `gateway` the configuration's gateway section the runs were made with,
    `settings` the constants of the power estimate for runs without an energy counter,
    `history_s` the workload's history (arrivals before the replay), which each run's
    policy learns as its gateway's did."""
    from scalezero.simulate import engine

    if not run_dirs:
        raise UserError("validate: no run folders given")
    runs = [read_run(Path(d)) for d in run_dirs]
    measured = _measured_rows(summary, runs)
    limits = [run_limits(r.data.meta, gateway) for r in runs]
    rows: list[dict[str, Any]] = []
    for i, run in enumerate(runs):
        others = [r for j, r in enumerate(runs) if j != i]
        if others:
            fit = (f"the {len(others)} other run{'s' if len(others) > 1 else ''} "
                   "(all strategies)")
        else:
            fit = FIT_ALL
        profile = profile_from_runs(others or [run], settings=settings,
                                    instance_concurrency=limits[i].instance_concurrency)
        result = simulate_run(run, profile, gateway, history_s)
        simulated = engine.summarize(result, profile)
        key = _key(run)
        if key not in measured:
            raise UserError(f"{run.run_dir}: {key[0]} repeat {key[1]} is not in the summary")
        for row in compare(measured[key], simulated):
            rows.append({"workload": workload, "strategy": key[0],
                         "rep": run.summary.row["rep"], "fit": fit, **row})
    frame = pd.DataFrame(rows, columns=list(VALIDATION_COLUMNS))
    frame["met"] = frame["met"].astype("boolean")
    return frame


def write_validation(frame: pd.DataFrame, path: Path) -> Path:
    return write_table(frame, Path(path))


def missed(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose target was missed (met is False; unknown rows are not misses)."""
    met = frame["met"].astype("boolean")
    return frame[met.eq(False).fillna(False).astype(bool)]


__all__ = [
    "FIT_ALL", "METRIC_LABELS", "TARGETS", "VALIDATION_COLUMNS", "Target", "compare",
    "counter_measured", "missed", "run_limits", "run_policy", "run_requests", "simulate_run",
    "validate_workload", "write_validation",
]
