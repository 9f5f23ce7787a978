"""The shared-budget simulation against measured sharing runs.

Reads ``<runs_dir>/<variant>/`` run folders (``scalezero run --deployments``): variants
``shared-<eviction>`` (one gateway, its deployments under a memory budget) and
``dedicated-<policy>`` (the same deployments without a budget). Per deployment it fits a
profile (start phases, stop, warm TTFT, TPOT: ``fit.profile_from_runs`` on the run
restricted to that deployment's instances and requests) and a memory figure (the
least-squares share of each deployment in the instances' measured resident memory,
``instance_rss_mib`` of telemetry.csv, over the samples while instances were ready)
from the dedicated runs, so that a shared run's prediction is not fitted on itself
(from the shared runs only when there is no dedicated run, and then said so). Each
shared run's requests are then replayed through ``sharing.simulate_shared`` with the
run's policies, budget and eviction policy, and the per-deployment figures of both are
compared (``SHARING_CHECK_COLUMNS``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalezero.analysis.runs import write_table
from scalezero.errors import UserError
from scalezero.serving.settings import GatewaySettings
from scalezero.serving.strategies import make_policy
from scalezero.serving.strategies.base import Policy
from scalezero.simulate.fit import FitRun, profile_from_runs, read_run
from scalezero.simulate.profile import PlatformProfile
from scalezero.simulate.sharing import (
    SharedBudget,
    SharedDeployment,
    deployment_of,
    memory_held,
    shared_live_frames,
    sharing_metrics,
    simulate_shared,
)
from scalezero.simulate.validate import run_limits, run_policy, run_requests

#: Columns of results/sharing/simulated.csv.
SHARING_CHECK_COLUMNS: tuple[str, ...] = (
    "variant", "deployment", "metric", "measured", "simulated", "error",
)
#: Metrics compared, per deployment (and memory for the budget as a whole, deployment "").
CHECKED_METRICS: tuple[str, ...] = (
    "cold_starts", "evictions", "eviction_cold_starts", "memory_refused", "instance_s",
    "memory_mean_mib", "memory_peak_mib", "ttft_p50_ms", "e2e_p50_ms",
)
SHARED_PREFIX = "shared-"
DEDICATED_PREFIX = "dedicated-"


def run_deployments(meta: Mapping[str, Any]) -> dict[str, Policy]:
    """Each deployment of a shared run with a fresh policy as its gateway built it: the
    first is run.json's ``model`` with its ``policy``; the others its ``deployments``."""
    first = str(meta.get("model", {}).get("name") or "")
    if not first:
        raise UserError("run.json names no model")
    out = {first: run_policy(meta)}
    for name, record in (meta.get("deployments") or {}).items():
        params = {k: v for k, v in record.items() if k not in ("policy", "path", "model")}
        out[str(name)] = make_policy(str(record["policy"]), params)
    return out


def request_models(run: FitRun, names: Sequence[str]) -> pd.Series:
    """The deployment of each request: requests.csv's ``model`` column, else the prefix
    of the instance that served it (a request no instance served then counts for none)."""
    requests = run.data.requests
    if "model" in requests.columns:
        return requests["model"].astype(str)
    return deployment_of(requests["instance_id"].fillna("").astype(str), names)


def deployment_run(run: FitRun, name: str, names: Sequence[str]) -> FitRun:
    """``run`` restricted to one deployment's instances and requests, for the fit."""
    summary, data = run.summary, run.data

    def own(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None or "instance_id" not in frame.columns:
            return frame
        return frame[deployment_of(frame["instance_id"].fillna("").astype(str),
                                   names).to_numpy() == name]

    requests = own(summary.requests)
    cold_starts = own(summary.cold_starts)
    events = own(data.events)
    assert requests is not None and cold_starts is not None
    return dataclasses.replace(
        run,
        summary=dataclasses.replace(summary, requests=requests, cold_starts=cold_starts),
        data=dataclasses.replace(data, events=events))


def fit_memory_mib(runs: Sequence[FitRun], names: Sequence[str]) -> dict[str, float]:
    """Memory of one instance per deployment, MiB: least squares of telemetry's
    ``instance_rss_mib`` on the number of each deployment's instances up (ready to
    drain) at each sample. A deployment never up in these runs gets NaN."""
    rows: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for run in runs:
        telemetry, events = run.data.telemetry, run.data.events
        if telemetry is None or events is None or "instance_rss_mib" not in telemetry:
            continue
        t = pd.to_numeric(telemetry["t_s"], errors="coerce").to_numpy(dtype=float)
        rss = pd.to_numeric(telemetry["instance_rss_mib"], errors="coerce").to_numpy(float)
        owners = deployment_of(events["instance_id"].astype(str), names)
        counts = np.zeros((len(t), len(names)))
        for _, group in events.assign(owner=owners).groupby("instance_id"):
            owner = str(group["owner"].iloc[0])
            if owner not in names:
                continue
            # Ready to drain: the model loaded, as the budget measures an instance (at
            # ready and when idle); a start's growing memory would pull the figure down.
            ready = group.loc[group["event"] == "ready", "t_s"]
            end = group.loc[group["event"].isin(["drain", "stopped", "died"]), "t_s"]
            if ready.empty:
                continue
            t_end = float(end.min()) if not end.empty else math.inf
            counts[:, names.index(owner)] += (t >= float(ready.min())) & (t < t_end)
        keep = np.isfinite(rss)
        rows.append(counts[keep])
        targets.append(rss[keep])
    if not rows:
        return dict.fromkeys(names, math.nan)
    design, target = np.vstack(rows), np.concatenate(targets)
    seen = design.sum(axis=0) > 0
    out = dict.fromkeys(names, math.nan)
    if seen.any():
        solution, *_ = np.linalg.lstsq(design[:, seen], target, rcond=None)
        for name, value in zip([n for n, s in zip(names, seen, strict=True) if s], solution,
                               strict=True):
            out[name] = max(0.0, float(value))
    return out


def fit_deployments(runs: Sequence[FitRun], names: Sequence[str], instance_concurrency: int
                    ) -> tuple[dict[str, PlatformProfile], dict[str, float]]:
    """A profile and a memory figure per deployment from ``runs``."""
    profiles = {name: profile_from_runs([deployment_run(r, name, names) for r in runs],
                                        name=name, instance_concurrency=instance_concurrency)
                for name in names}
    memory = fit_memory_mib(runs, names)
    known = [v for v in memory.values() if math.isfinite(v)]
    for name, value in memory.items():
        if not math.isfinite(value):
            if not known:
                raise UserError(f"no memory measured for {name!r} (no telemetry with "
                                "instance_rss_mib)")
            memory[name] = float(np.mean(known))
    return profiles, memory


def check_run(run: FitRun, profiles: Mapping[str, PlatformProfile],
              memory_mib: Mapping[str, float], variant: str, log: Any = None) -> pd.DataFrame:
    """Measured against simulated figures of one shared run (SHARING_CHECK_COLUMNS).

    Requests whose deployment is unknown (no ``model`` column and no instance served
    them) are left out of both sides, and ``log`` is told how many."""
    meta = run.data.meta
    policies = run_deployments(meta)
    names = list(policies)
    memory = meta.get("memory") or {}
    if "budget_mib" not in memory:
        raise UserError(f"{run.run_dir}: run.json records no memory budget")
    wait_s = float(memory.get("wait_s", GatewaySettings.model_fields["memory_wait_s"].default))
    budget = SharedBudget(float(memory["budget_mib"]), str(memory.get("eviction", "lru")),
                          wait_s)
    models = dict(zip(pd.to_numeric(run.data.requests["request_id"], errors="coerce"),
                      request_models(run, names), strict=True))
    requests = [(models.get(r.request_id, ""), r) for r in run_requests(run)]
    unknown = sum(1 for name, _ in requests if name not in policies)
    if unknown:
        print(f"sharing-check: {variant}: {unknown} request(s) of unknown deployment left "
              "out (requests.csv has no model column and no instance served them)",
              file=log or sys.stderr)
    requests = [(name, r) for name, r in requests if name in policies]
    deployments = [SharedDeployment(name, policies[name], profiles[name], memory_mib[name])
                   for name in names]
    w0, w1 = run.window
    result = simulate_shared(deployments, requests, budget, run_limits(meta),
                             until_s=w1 - w0)
    sim_requests, sim_events = shared_live_frames(result)
    simulated = sharing_metrics(sim_requests, sim_events, memory_mib, result.window)
    measured_requests = run.data.requests.assign(model=request_models(run, names).to_numpy())
    events = run.data.events if run.data.events is not None else pd.DataFrame(
        columns=["t_s", "instance_id", "event", "state", "pid", "reason", "detail"])
    events = events.assign(reason=events["reason"].fillna("").astype(str))
    measured = sharing_metrics(measured_requests, events, memory_mib, run.window)
    telemetry_peak = _rss_peak_mib(run)
    frame = measured.merge(simulated, on=["deployment", "metric"],
                           suffixes=("_measured", "_simulated"))
    frame = frame[frame["metric"].isin(CHECKED_METRICS)]
    out = pd.DataFrame({
        "variant": variant,
        "deployment": frame["deployment"],
        "metric": frame["metric"],
        "measured": frame["value_measured"],
        "simulated": frame["value_simulated"],
    })
    if math.isfinite(telemetry_peak):
        # The budget as a whole: what the instances were measured to hold at most.
        held = out["deployment"].eq("") & out["metric"].eq("memory_peak_mib")
        out.loc[held, "measured"] = telemetry_peak
    out["error"] = out["simulated"] - out["measured"]
    return out.reset_index(drop=True)[list(SHARING_CHECK_COLUMNS)]


def _rss_peak_mib(run: FitRun) -> float:
    telemetry = run.data.telemetry
    if telemetry is None or "instance_rss_mib" not in telemetry:
        return math.nan
    t = pd.to_numeric(telemetry["t_s"], errors="coerce")
    rss = pd.to_numeric(telemetry["instance_rss_mib"], errors="coerce")
    inside = rss[(t >= run.window[0]) & (t <= run.window[1])].dropna()
    return float(inside.max()) if not inside.empty else math.nan


def sharing_check(runs_dir: Path, *, log: Any = None) -> pd.DataFrame:
    """Every ``shared-*`` run under ``runs_dir`` against its simulation, the profiles
    fitted on the ``dedicated-*`` runs (on the shared runs when there is none)."""
    log = log or sys.stderr
    folders = sorted(p for p in Path(runs_dir).iterdir() if (p / "run.json").is_file()) \
        if Path(runs_dir).is_dir() else []
    shared = [p for p in folders if p.name.startswith(SHARED_PREFIX)]
    dedicated = [p for p in folders if p.name.startswith(DEDICATED_PREFIX)]
    if not shared:
        raise UserError(f"{runs_dir}: no {SHARED_PREFIX}<eviction> run folders")
    shared_runs = {p.name: read_run(p) for p in shared}
    fit_on = [read_run(p) for p in dedicated] or list(shared_runs.values())
    names = list(run_deployments(next(iter(shared_runs.values())).data.meta))
    print(f"sharing-check: fitting {', '.join(names)} on "
          f"{', '.join(r.run_dir.name for r in fit_on)}"
          + ("" if dedicated else " (no dedicated run: the shared runs fit themselves)"),
          file=log)
    first = next(iter(shared_runs.values())).data.meta
    profiles, memory_mib = fit_deployments(fit_on, names,
                                           run_limits(first).instance_concurrency)
    for name in names:
        print(f"  {name}: cold start {profiles[name].cold_start_s:.3f} s, "
              f"stop {profiles[name].stop_s:.3f} s, memory {memory_mib[name]:.0f} MiB",
              file=log)
    frames = [check_run(run, profiles, memory_mib, variant, log)
              for variant, run in shared_runs.items()]
    return pd.concat(frames, ignore_index=True)


def write_sharing_check(frame: pd.DataFrame, path: Path) -> Path:
    return write_table(frame[list(SHARING_CHECK_COLUMNS)], path)


__all__ = ["CHECKED_METRICS", "SHARING_CHECK_COLUMNS", "check_run", "fit_deployments",
           "fit_memory_mib", "memory_held", "run_deployments", "sharing_check",
           "write_sharing_check"]
