"""Energy, carbon and cost per run, and projections of them to a day and a year.

Three steps, each a table:

1. **runs**: energy of each run by phase. Measured where the run had an energy counter
   (NVML, RAPL: the aggregate step's numbers are used as they are); otherwise an
   *estimate*, labelled as such: integrated power samples when the run has them, else a
   host power model (Cloud Carbon Footprint's linear per-vCPU model on the instance's CPU
   use, plus CodeCarbon's memory power on the instance's resident memory).
2. **model**: per strategy, the inputs of the projection: per-state power (bare idle,
   idle with the model loaded, runtime-warm, active), cold-start and wake duration and
   energy, busy seconds per request, pooled over all runs of the workload (they are
   properties of the hardware and model, not of the policy), and the policy's keep-warm
   TTL and runtime-warm TTL.
3. **sweep**: for each traffic level (Poisson arrivals), the expected time per day in
   each state, cold starts, energy (kWh), emissions (kg CO2e) and cost (USD) per day,
   month and year; see `project_strategy` for the arithmetic.

The break-even keep-warm TTL is cold-start energy above bare idle / (idle-loaded power
- bare-idle power) (`scalezero.analysis.energy.break_even_ttl_s`): an idle gap shorter than it
costs less energy kept warm than scaled to zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalezero.analysis import energy as en
from scalezero.analysis import metrics as mx
from scalezero.analysis.aggregate import load_run
from scalezero.analysis.constants import ProjectionSettings, constants_as_dict
from scalezero.analysis.numbers import mean, min_nan, num, ratio
from scalezero.analysis.runs import read_run_meta, recorded_window, replay_window, write_table
from scalezero.errors import UserError
from scalezero.serving.strategies import recorded_accounting
from scalezero.system.layout import Layout

J_PER_KWH = 3.6e6
DAYS_PER_YEAR = 365.0
MONTHS_PER_YEAR = 12.0

BASIS_MEASURED = "measured"
BASIS_ESTIMATED = "estimated"

METHOD_TEXT = {
    "nvml_counter": "NVML energy counter",
    "rapl": "RAPL CPU-package energy counter",
    "power_samples": "integrated power samples (estimate)",
    "host_model": "host power model: CPU use x per-vCPU power + memory power (estimate)",
}

RUN_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "rep", "basis", "method", "duration_s", "requests", "ok",
    "output_tokens", "energy_total_j", "energy_above_baseline_j", "above_baseline_share",
    "energy_per_request_j", "energy_per_request_above_baseline_j",
    "energy_per_output_token_j", "energy_per_output_token_above_baseline_j",
    "bare_idle_power_w", "idle_loaded_power_w", "active_power_w", "cold_starts",
    "cold_start_mean_s", "cold_start_energy_mean_j", "cold_start_above_baseline_mean_j",
    "break_even_ttl_s", "instance_s", "mem_gib_h", "cost_usd", "cost_per_1000_requests_usd",
)
PHASE_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "rep", "basis", "phase", "duration_s", "energy_j",
    "mean_power_w", "above_baseline_j",
)
MODEL_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "policy", "always_on", "idle_ttl_s", "runtime_warm_ttl_s",
    "basis", "method", "bare_idle_power_w", "idle_loaded_power_w", "active_power_w",
    "runtime_warm_power_w", "cold_start_s", "cold_start_energy_j",
    "cold_start_above_baseline_j", "wake_s", "wake_energy_j", "active_s_per_request",
    "break_even_ttl_s",
)
SWEEP_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "basis", "traffic_rph", "requests_per_day", "cold_start_share",
    "cold_starts_per_day", "active_h_per_day", "cold_start_h_per_day",
    "idle_loaded_h_per_day", "runtime_warm_wakes_per_day", "runtime_warm_h_per_day",
    "empty_h_per_day", "instance_h_per_day", "busy_share",
    "load", "energy_kwh_per_day", "energy_above_baseline_kwh_per_day",
    "energy_kwh_per_year", "energy_above_baseline_kwh_per_year", "kg_co2e_per_year",
    "kg_co2e_above_baseline_per_year", "cost_usd_per_day", "cost_usd_per_month",
    "cost_usd_per_year", "energy_per_request_wh",
)


def kwh_per_year(power_w: float, hours_per_day: float) -> float:
    """Energy of drawing `power_w` for `hours_per_day` on every day of a year, kWh."""
    return power_w * hours_per_day * DAYS_PER_YEAR / 1000.0


def kg_co2e(kwh: float, carbon_g_per_kwh: float) -> float:
    """Emissions of `kwh` at a carbon intensity in g/kWh, kg CO2e."""
    return kwh * carbon_g_per_kwh / 1000.0


# ---------------------------------------------------------------------------------------
# Estimated energy of one run (no counter)


def _series(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[name], errors="coerce").astype(float)


def _vcpus(meta: Mapping[str, Any]) -> float:
    env = meta.get("env") or {}
    host = ((meta.get("telemetry") or {}).get("device_info") or {}).get("host") or {}
    for value in (env.get("cpu_count"), host.get("logical_cpus")):
        v = num(value)
        if math.isfinite(v) and v > 0:
            return v
    return 1.0


def estimated_power_w(telemetry: pd.DataFrame, meta: Mapping[str, Any],
                      settings: ProjectionSettings) -> tuple[pd.Series, str]:
    """Estimated power of each telemetry sample (W) and the method used.

    With power samples (`power_w`): those. Otherwise the host model: every vCPU at the
    idle floor, plus (max - min) per-vCPU power for each core the instance keeps busy,
    plus memory power for the instance's resident memory.
    """
    power = _series(telemetry, "power_w")
    if power.notna().sum() >= 2:
        return power.interpolate(limit_direction="both"), "power_samples"
    n = _series(telemetry, "n_instances")
    cpu = _series(telemetry, "instance_cpu_pct")
    mem = _series(telemetry, "instance_mem_mib")
    # No instance process: it uses nothing; elsewhere bridge a missing sample.
    cpu = cpu.mask(cpu.isna() & (n == 0), 0.0).interpolate(limit_direction="both").fillna(0.0)
    mem = mem.mask(mem.isna() & (n == 0), 0.0).interpolate(limit_direction="both").fillna(0.0)
    floor_w = _vcpus(meta) * settings.value("cpu_min_w_per_vcpu")
    per_core_w = settings.value("cpu_max_w_per_vcpu") - settings.value("cpu_min_w_per_vcpu")
    watts = floor_w + per_core_w * cpu / 100.0 + settings.value("ram_w_per_gib") * mem / 1024.0
    return watts, "host_model"


@dataclass
class RunEnergy:
    """Energy of one run: per phase, in total, and of its cold starts."""

    method: str
    phases: pd.DataFrame  # en.phase_energy columns
    total_j: float
    above_baseline_j: float
    bare_idle_power_w: float
    cold_starts: int
    cold_start_mean_s: float
    cold_start_energy_mean_j: float
    cold_start_above_baseline_mean_j: float


def estimate_run_energy(run_dir: Path, settings: ProjectionSettings) -> RunEnergy:
    """Estimated energy of a run without an energy counter (see `estimated_power_w`)."""
    data = load_run(Path(run_dir))
    # Without a recorded window, from the first send (not the first scheduled time).
    window = replay_window(data.meta, data.requests, run_dir, start_columns=("t_send_s",))
    telemetry = data.telemetry
    if telemetry is None or telemetry.empty or "t_s" not in telemetry.columns:
        raise UserError(f"{run_dir}: no telemetry.csv to estimate energy from")
    telemetry = telemetry.assign(t_s=_series(telemetry, "t_s")).dropna(subset=["t_s"])
    if "device" in telemetry.columns:  # one device is enough for an estimate
        first = telemetry["device"].astype("string").fillna("").iloc[0]
        telemetry = telemetry[telemetry["device"].astype("string").fillna("") == first]
    telemetry = telemetry.sort_values("t_s", kind="mergesort").drop_duplicates("t_s")
    watts, method = estimated_power_w(telemetry.reset_index(drop=True), data.meta, settings)
    t = telemetry["t_s"].to_numpy(dtype=float)
    w = watts.to_numpy(dtype=float)
    # A cumulative counter (mJ) from the power, so the energy module attributes it.
    steps_j = np.diff(t) * (w[:-1] + w[1:]) / 2.0
    counter = pd.DataFrame({
        "t_s": t, "device": "estimate", "energy_source": method,
        "energy_mj": 1000.0 * np.concatenate([[0.0], np.cumsum(steps_j)]),
    })
    meter = en.energy_meter(counter)
    bare_w = meter.mean_power_w(recorded_window(data.meta, "baseline_bare"))
    if not math.isfinite(bare_w) and method == "host_model":
        bare_w = _vcpus(data.meta) * settings.value("cpu_min_w_per_vcpu")
    spans = en.instance_spans(data.events)
    timeline = en.phase_timeline(spans, data.requests, window, data.events)
    phases = en.phase_energy(timeline, meter, bare_w)
    w0, w1 = window
    total = float(meter.energy_j(w0, w1))
    covered = float(meter.covered_s(w0, w1))
    starts = en.cold_starts(spans, meter, bare_w, window)
    done = starts[starts["in_replay"].astype(bool) & (starts["outcome"] == "ready")] \
        if not starts.empty else starts
    return RunEnergy(
        method=method,
        phases=phases,
        total_j=total,
        above_baseline_j=total - bare_w * covered if math.isfinite(bare_w) else math.nan,
        bare_idle_power_w=bare_w,
        cold_starts=int(starts["in_replay"].astype(bool).sum()) if not starts.empty else 0,
        cold_start_mean_s=mean(done["cold_start_s"]) if not done.empty else math.nan,
        cold_start_energy_mean_j=mean(done["energy_j"]) if not done.empty else math.nan,
        cold_start_above_baseline_mean_j=(mean(done["above_baseline_j"])
                                          if not done.empty else math.nan),
    )


# ---------------------------------------------------------------------------------------
# Step 1: energy and cost of each run


def _measured(row: Mapping[str, Any]) -> bool:
    source = str(row.get("energy_source") or "none")
    return source not in ("none", "nan") and math.isfinite(num(row.get("energy_total_j")))


def _run_dir_index(run_dirs: Sequence[Path]) -> dict[tuple[str, str], Path]:
    """(strategy, rep) -> run folder, from run.json (or the folder names)."""
    out: dict[tuple[str, str], Path] = {}
    for d in run_dirs:
        d = Path(d)
        meta = read_run_meta(d)
        key = Layout.parse_run_dir(d)
        out[(str(meta.get("strategy") or key.strategy), str(meta.get("rep", key.rep)))] = d
    return out


def run_energy_tables(
    summary: pd.DataFrame, phase_energy: pd.DataFrame, run_dirs: Sequence[Path],
    settings: ProjectionSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run energy and cost (RUN_COLUMNS) and per-run phase energy (PHASE_COLUMNS),
    measured where the run had a counter, estimated otherwise."""
    dirs = _run_dir_index(run_dirs)
    price = settings.value("gpu_hour_price_usd")
    runs, phases = [], []
    for _, row in summary.iterrows():
        strategy, rep = str(row["strategy"]), str(row["rep"])
        key = {"workload": row["workload"], "strategy": strategy, "rep": row["rep"]}
        if _measured(row):
            basis, method = BASIS_MEASURED, str(row["energy_source"])
            mask = (phase_energy["strategy"].astype(str) == strategy) & \
                   (phase_energy["rep"].astype(str) == rep)
            ph = phase_energy.loc[mask, ["phase", "duration_s", "energy_j", "mean_power_w",
                                         "above_baseline_j"]].reset_index(drop=True)
            total, above = num(row["energy_total_j"]), num(row["energy_above_baseline_j"])
            bare = num(row["bare_idle_power_w"])
            cs_n = num(row["cold_starts"])
            cs_s, cs_j = num(row["cold_start_mean_s"]), num(row["cold_start_energy_mean_j"])
            cs_above = num(row["cold_start_above_baseline_mean_j"])
        elif (strategy, rep) in dirs:
            est = estimate_run_energy(dirs[(strategy, rep)], settings)
            basis, method = BASIS_ESTIMATED, est.method
            ph = est.phases
            total, above, bare = est.total_j, est.above_baseline_j, est.bare_idle_power_w
            cs_n, cs_s = float(est.cold_starts), est.cold_start_mean_s
            cs_j, cs_above = est.cold_start_energy_mean_j, est.cold_start_above_baseline_mean_j
        else:
            raise UserError(f"no energy counter in {strategy} repeat {rep} and no run "
                            "folder to estimate its energy from")
        by_phase = ph.set_index("phase")

        def phase_power(name: str, frame: pd.DataFrame = by_phase) -> float:
            if name not in frame.index:
                return math.nan
            return ratio(num(frame.at[name, "energy_j"]), num(frame.at[name, "duration_s"]))

        ok = num(row["ok"])
        tokens = num(row["output_tokens"])
        instance_s = num(row["instance_s"])
        cost = instance_s / 3600.0 * price if math.isfinite(instance_s) else math.nan
        idle_w = phase_power("idle_loaded")
        runs.append({
            **key, "basis": basis, "method": method,
            "duration_s": num(row["duration_s"]), "requests": num(row["requests"]),
            "ok": ok, "output_tokens": tokens,
            "energy_total_j": total, "energy_above_baseline_j": above,
            "above_baseline_share": ratio(above, total),
            "energy_per_request_j": ratio(total, ok),
            "energy_per_request_above_baseline_j": ratio(above, ok),
            "energy_per_output_token_j": ratio(total, tokens),
            "energy_per_output_token_above_baseline_j": ratio(above, tokens),
            "bare_idle_power_w": bare, "idle_loaded_power_w": idle_w,
            "active_power_w": phase_power("active"),
            "cold_starts": cs_n, "cold_start_mean_s": cs_s,
            "cold_start_energy_mean_j": cs_j, "cold_start_above_baseline_mean_j": cs_above,
            "break_even_ttl_s": en.break_even_ttl_s(cs_above, idle_w, bare),
            "instance_s": instance_s,
            "mem_gib_h": num(row["mem_mib_s"]) / 1024.0 / 3600.0,
            "cost_usd": cost, "cost_per_1000_requests_usd": ratio(cost, ok) * 1000.0,
        })
        phases.append(ph.assign(**key, basis=basis))
    run_df = pd.DataFrame(runs, columns=list(RUN_COLUMNS))
    phase_df = (pd.concat(phases, ignore_index=True) if phases
                else pd.DataFrame(columns=list(PHASE_COLUMNS)))
    return run_df, phase_df[list(PHASE_COLUMNS)]


# ---------------------------------------------------------------------------------------
# Step 2: the projection's inputs per strategy


def as_flag(value: Any) -> bool:
    """One yes/no cell as read back from a CSV (see metrics.as_bool); empty is no."""
    return bool(mx.as_bool(pd.Series([value], dtype=object)).iloc[0])


def _runtime_warm_ttl_s(row: Mapping[str, Any]) -> float:
    """The policy's runtime-warm TTL (s; 0: no runtime-warm tier), from the summary's
    policy_runtime_warm_ttl_s, else from the policy rebuilt from its recorded name and
    parameters; 0 when nothing says (summaries written before the tier)."""
    ttl = num(row.get("policy_runtime_warm_ttl_s"))
    if math.isnan(ttl):
        name = row.get("policy")
        try:
            ttl = recorded_accounting({**row, "name": name if isinstance(name, str) and name
                                       else row.get("strategy")}).runtime_warm_ttl_s
        except UserError:
            return 0.0
    return ttl if ttl > 0 else 0.0


def _policy(row: Mapping[str, Any]) -> tuple[str, bool, float]:
    """(policy name, always on?, idle TTL in s: 0 for naive, inf for always on).

    From the summary's policy_always_on and policy_idle_ttl_s (run.json's
    policy.accounting); a summary without them rebuilds the policy from its name and the
    recorded parameters. A policy that holds an instance at all times keeps the one
    instance projected here forever, whatever its TTL for instances above the minimum.
    """
    name = row.get("policy")
    # An empty CSV cell reads as NaN, which is truthy: fall back to the strategy's name.
    policy = name if isinstance(name, str) and name else str(row.get("strategy"))
    always_on, ttl = row.get("policy_always_on"), num(row.get("policy_idle_ttl_s"))
    if always_on is None or (isinstance(always_on, float) and math.isnan(always_on)):
        try:
            accounting = recorded_accounting({**row, "name": name})
        except UserError:
            return policy, False, 0.0  # nothing says what the policy does
        always_on, ttl = accounting.always_on, accounting.idle_ttl_s
    if as_flag(always_on):
        return policy, True, math.inf
    return policy, False, ttl if ttl >= 0 else 0.0


def _pooled_phase_power(phases: pd.DataFrame, phase: str) -> float:
    sel = phases[phases["phase"] == phase]
    energy = pd.to_numeric(sel["energy_j"], errors="coerce")
    duration = pd.to_numeric(sel["duration_s"], errors="coerce")
    keep = energy.notna() & duration.notna() & (duration > 0)
    return ratio(float(energy[keep].sum()), float(duration[keep].sum()))


def _weighted(values: pd.Series, weights: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce")
    w = pd.to_numeric(weights, errors="coerce")
    keep = v.notna() & w.notna() & (w > 0)
    return ratio(float((v[keep] * w[keep]).sum()), float(w[keep].sum()))


def projection_model(summary: pd.DataFrame, runs: pd.DataFrame,
                     phases: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy (MODEL_COLUMNS): pooled per-state power and cold-start cost,
    busy seconds per request, and the strategy's policy."""
    # Measured runs when there are any: estimates are not mixed into measurements.
    use = runs[runs["basis"] == BASIS_MEASURED]
    if use.empty:
        use = runs
    basis = str(use["basis"].iloc[0]) if not use.empty else BASIS_ESTIMATED
    methods = sorted(set(use["method"].astype(str)))
    keys = set(zip(use["strategy"].astype(str), use["rep"].astype(str), strict=True))
    ph = phases[[(s, r) in keys for s, r in zip(phases["strategy"].astype(str),
                                                 phases["rep"].astype(str), strict=True)]]
    bare = mean(use["bare_idle_power_w"])
    idle = _pooled_phase_power(ph, "idle_loaded")
    if not math.isfinite(idle):
        idle = bare  # no run ever idled with the model loaded: nothing better to go on
    # Runtime-warm power: measured in runtime_warm phases, else the context-only baseline
    # (a sleeping instance holds only its runtime), else unknown.
    warm_w = _pooled_phase_power(ph, "runtime_warm")
    if not math.isfinite(warm_w) and "context_idle_power_w" in summary.columns:
        warm_w = mean(summary.loc[summary["energy_source"].astype(str) != "none",
                                  "context_idle_power_w"]) \
            if "energy_source" in summary.columns else mean(summary["context_idle_power_w"])
    active = _pooled_phase_power(ph, "active")
    cs_s = _weighted(use["cold_start_mean_s"], use["cold_starts"])
    cs_j = _weighted(use["cold_start_energy_mean_j"], use["cold_starts"])
    cs_above = _weighted(use["cold_start_above_baseline_mean_j"], use["cold_starts"])
    # A wake repeats the start's model load and readiness, not its process start: the cold
    # start less its runtime phase, at the cold start's mean power.
    runtime_s = (mean(summary["spawn_to_runtime_ready_mean_s"])
                 if "spawn_to_runtime_ready_mean_s" in summary.columns else math.nan)
    wake_s = cs_s - runtime_s if math.isfinite(runtime_s) else math.nan
    wake_j = wake_s * ratio(cs_j, cs_s)
    active_s = float(pd.to_numeric(ph.loc[ph["phase"] == "active", "duration_s"],
                                   errors="coerce").sum())
    ok_total = float(pd.to_numeric(use["ok"], errors="coerce").sum())
    per_request = ratio(active_s, ok_total)
    rows = []
    for strategy, group in summary.groupby("strategy", sort=True):
        first = group.iloc[0].to_dict()
        policy, always_on, ttl = _policy(first)
        rows.append({
            "workload": group["workload"].iloc[0], "strategy": strategy, "policy": policy,
            "always_on": always_on, "idle_ttl_s": ttl,
            "runtime_warm_ttl_s": 0.0 if always_on else _runtime_warm_ttl_s(first),
            "basis": basis, "method": "+".join(methods),
            "bare_idle_power_w": bare, "idle_loaded_power_w": idle,
            "runtime_warm_power_w": warm_w, "active_power_w": active,
            "cold_start_s": cs_s, "cold_start_energy_j": cs_j,
            "cold_start_above_baseline_j": cs_above, "wake_s": wake_s, "wake_energy_j": wake_j,
            "active_s_per_request": per_request,
            "break_even_ttl_s": en.break_even_ttl_s(cs_above, idle, bare),
        })
    return pd.DataFrame(rows, columns=list(MODEL_COLUMNS))


# ---------------------------------------------------------------------------------------
# Step 3: the traffic sweep


def project_strategy(model: Mapping[str, Any], traffic_rph: float, hours_per_day: float,
                     carbon_g_per_kwh: float, price_usd_per_h: float) -> dict[str, float]:
    """Expected day of one strategy at `traffic_rph` Poisson arrivals.

    With rate r (1/s), busy seconds per request S, cold start C seconds and E_cs joules,
    keep-warm TTL T (0: naive, inf: always on) and runtime-warm TTL W (0: none; a tiered
    policy's instance is loaded for T, then runtime-warm for W, then stopped; a wake
    takes C_w seconds and E_w joules), over a day of D seconds:

    - n = r D requests; busy time B = min(D, n S);
    - an arrival finds an instance loaded when the previous one came less than S + T
      earlier, runtime-warm when less than S + T + W, so the cold share is
      exp(-r (S + T + W)) (0 when always on) and the wake share
      exp(-r (S + T)) (1 - exp(-r W)); cold starts N = n exp(-r (S + T + W)), taking
      N C seconds, and wakes N_w = n exp(-r (S + T)) (1 - exp(-r W)), taking N_w C_w
      seconds (counted with the cold starts' time, as the energy phases count a wake);
    - after each request the instance idles min(gap, T), gap ~ Exp(r): on average
      (1 - exp(-r T)) / r, so idle-loaded time I = D (1 - exp(-r T)), then stays
      runtime-warm min(max(gap - T, 0), W): R = D exp(-r T) (1 - exp(-r W)); each at
      most what B, the starts and the time before it leave of the day; the rest is
      empty (bare idle);
    - energy = B P_active + N E_cs + N_w E_w + I P_idle_loaded + R P_runtime_warm
      + empty P_bare; above baseline subtracts D P_bare; cost = price x instance hours
      (B + N C + N_w C_w + I + R; all of D when always on), i.e. per-second billing of
      the time an instance is held.

    Without a runtime-warm tier (W = 0, or the model has no ``runtime_warm_ttl_s``) the
    wake and runtime-warm terms are 0 whatever their inputs.
    """
    day_s = hours_per_day * 3600.0
    rate = traffic_rph / 3600.0
    n = rate * day_s
    s = float(model["active_s_per_request"])
    c = float(model["cold_start_s"])
    e_cs = float(model["cold_start_energy_j"])
    ttl = float(model["idle_ttl_s"])
    always_on = as_flag(model["always_on"]) or math.isinf(ttl)
    p_bare = float(model["bare_idle_power_w"])
    p_idle = float(model["idle_loaded_power_w"])
    p_active = float(model["active_power_w"])
    warm_ttl = float(model.get("runtime_warm_ttl_s", 0.0))
    busy = min_nan(day_s, n * s)
    n_wake, wake_s, wake_j, warm_s, warm_j = 0.0, 0.0, 0.0, 0.0, 0.0
    if always_on:
        cold_share, n_cold, cold_s = 0.0, 0.0, 0.0
        idle = day_s - busy
        cold_j = 0.0  # no cold start, whether or not one was ever measured
    else:
        cold_share = math.exp(-rate * (s + ttl + (warm_ttl if warm_ttl > 0 else 0.0)))
        n_cold = n * cold_share
        cold_s = min_nan(day_s - busy, n_cold * c)
        if warm_ttl > 0:
            warm_share = math.exp(-rate * ttl) * -math.expm1(-rate * warm_ttl)
            n_wake = n * math.exp(-rate * s) * warm_share
            wake_s = min_nan(day_s - busy - cold_s, n_wake * float(model["wake_s"]))
            wake_j = n_wake * float(model["wake_energy_j"])
        idle = min_nan(day_s * (1.0 - math.exp(-rate * ttl)), day_s - busy - cold_s - wake_s)
        if warm_ttl > 0:
            warm_s = min_nan(day_s * warm_share, day_s - busy - cold_s - wake_s - idle)
            warm_j = warm_s * float(model["runtime_warm_power_w"])
        cold_j = n_cold * e_cs
    held_s = busy + cold_s + wake_s + idle + warm_s
    # Subtracted one by one, as before the runtime-warm terms (0 without them) existed.
    empty = (max(0.0, day_s - busy - cold_s - wake_s - idle - warm_s)
             if math.isfinite(idle) and math.isfinite(warm_s) else math.nan)
    energy_j = busy * p_active + cold_j + wake_j + idle * p_idle + warm_j + empty * p_bare
    above_j = energy_j - day_s * p_bare
    instance_h = day_s / 3600.0 if always_on else held_s / 3600.0
    kwh_day = energy_j / J_PER_KWH
    above_kwh_day = above_j / J_PER_KWH
    cost_day = instance_h * price_usd_per_h
    return {
        "traffic_rph": traffic_rph,
        "requests_per_day": n,
        "cold_start_share": cold_share,
        "cold_starts_per_day": n_cold,
        "active_h_per_day": busy / 3600.0,
        "cold_start_h_per_day": (cold_s + wake_s) / 3600.0,
        "idle_loaded_h_per_day": idle / 3600.0,
        "runtime_warm_wakes_per_day": n_wake,
        "runtime_warm_h_per_day": warm_s / 3600.0,
        "empty_h_per_day": empty / 3600.0,
        "instance_h_per_day": instance_h,
        "busy_share": ratio(busy / 3600.0, instance_h),
        "load": ratio(n * s, day_s),
        "energy_kwh_per_day": kwh_day,
        "energy_above_baseline_kwh_per_day": above_kwh_day,
        "energy_kwh_per_year": kwh_day * DAYS_PER_YEAR,
        "energy_above_baseline_kwh_per_year": above_kwh_day * DAYS_PER_YEAR,
        "kg_co2e_per_year": kg_co2e(kwh_day * DAYS_PER_YEAR, carbon_g_per_kwh),
        "kg_co2e_above_baseline_per_year":
            kg_co2e(above_kwh_day * DAYS_PER_YEAR, carbon_g_per_kwh),
        "cost_usd_per_day": cost_day,
        "cost_usd_per_month": cost_day * DAYS_PER_YEAR / MONTHS_PER_YEAR,
        "cost_usd_per_year": cost_day * DAYS_PER_YEAR,
        "energy_per_request_wh": ratio(energy_j / 3600.0, n),
    }


def project(model: pd.DataFrame, settings: ProjectionSettings) -> pd.DataFrame:
    """The sweep (SWEEP_COLUMNS): every strategy at every traffic level."""
    rows = []
    carbon = settings.value("carbon_intensity_g_per_kwh")
    price = settings.value("gpu_hour_price_usd")
    for _, m in model.iterrows():
        for rph in sorted(settings.traffic_rph):
            rows.append({"workload": m["workload"], "strategy": m["strategy"],
                         "basis": m["basis"],
                         **project_strategy(m.to_dict(), rph, settings.hours_per_day,
                                            carbon, price)})
    return pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))


# ---------------------------------------------------------------------------------------
# Files




def write_projections(
    summary_csv: Path, energy_csv: Path, run_dirs: Sequence[Path], settings: ProjectionSettings,
    outputs: Mapping[str, Path],
) -> dict[str, Path]:
    """Compute the run, model and sweep tables from the aggregate step's summary and
    phase-energy files (and the run folders, for estimates) and write them to `outputs`
    (keys as in `Layout.projection_files_in`). The constants used are written too, so that the
    figures and the report read them from here, downstream of this step only."""
    summary = pd.read_csv(summary_csv)
    if summary.empty:
        raise UserError(f"{summary_csv} has no runs")
    phase_energy = pd.read_csv(energy_csv)
    runs, phases = run_energy_tables(summary, phase_energy, list(run_dirs), settings)
    model = projection_model(summary, runs, phases)
    sweep = project(model, settings)
    written = {
        "sweep": write_table(sweep, Path(outputs["sweep"])),
        "model": write_table(model, Path(outputs["model"])),
        "runs": write_table(runs, Path(outputs["runs"])),
        "phases": write_table(phases, Path(outputs["phases"])),
    }
    constants_path = Path(outputs["constants"])
    constants_path.parent.mkdir(parents=True, exist_ok=True)
    constants_path.write_text(json.dumps({
        "constants": constants_as_dict(settings.constants),
        "projections": {"traffic_rph": list(settings.traffic_rph),
                        "hours_per_day": settings.hours_per_day,
                        "reference_rph": settings.reference_rph},
    }, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written["constants"] = constants_path
    return written


__all__ = [
    "MODEL_COLUMNS", "PHASE_COLUMNS", "RUN_COLUMNS", "SWEEP_COLUMNS", "RunEnergy",
    "estimate_run_energy", "estimated_power_w", "project", "project_strategy",
    "projection_model", "run_energy_tables", "write_projections",
]
