"""What the simulator is for: traffic the live runs cannot replay in their time budget.

Three tables, each over one or more platform profiles (the one fitted from this
workload's measured runs, and published GPU profiles, `scalezero.simulate.published`):

- **hour** (`hour_scenarios`): the whole production hour of the shipped Azure LLM trace
  (no time scaling) and thinned variants of it, under every configured strategy;
- **grid** (`rate_ttl_grid`): Poisson traffic at several rates x keep_warm TTLs: the
  instance-hours (cost) and the share of cold requests of each cell;
- **projections** (`projections_table`): a year at each `projections.traffic_rph`
  level, once simulated (a period of Poisson arrivals scaled to a year) and once by the
  closed form of `scalezero.analysis.projections.project_strategy`, in one table with a
  `method` column and the ratio of the two.

Every row says which profile it comes from (`profile`, `basis`) and carries `label`:
"measured" for a fitted profile, `LABEL` ("published, not measured") otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalezero.analysis.constants import ProjectionSettings, projection_settings
from scalezero.analysis.numbers import ratio
from scalezero.analysis.projections import DAYS_PER_YEAR, J_PER_KWH, kg_co2e, project_strategy
from scalezero.analysis.runs import write_table
from scalezero.errors import UserError
from scalezero.serving.pool import PoolLimits
from scalezero.serving.settings import QueueSettings
from scalezero.serving.strategies import Policy, make_policy
from scalezero.simulate.engine import SimRequest, requests_from_trace, simulate, summarize
from scalezero.simulate.profile import PlatformProfile
from scalezero.simulate.published import LABEL, is_published, published_profiles
from scalezero.simulate.settings import SimulationSettings, simulation_settings
from scalezero.workload.trace import generate_trace

MEASURED_LABEL = "measured"
HOUR_SCENARIO = "azure_llm_hour"
S_PER_H = 3600.0

#: Columns of the profile that every table starts with.
PROFILE_COLUMNS: tuple[str, ...] = ("workload", "profile", "device", "basis", "label")
HOUR_COLUMNS: tuple[str, ...] = (
    *PROFILE_COLUMNS, "scenario", "keep_probability", "strategy", "policy", "requests",
    "ok", "errors", "cold_starts", "cold_requests", "cold_share", "window_s",
    "instance_h", "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "e2e_p50_ms",
    "e2e_p99_ms", "energy_total_j", "energy_above_baseline_j", "energy_per_request_j",
)
GRID_COLUMNS: tuple[str, ...] = (
    *PROFILE_COLUMNS, "rate_rph", "ttl_s", "requests", "period_h", "load", "cold_starts",
    "cold_share", "instance_h", "instance_h_per_day", "energy_kwh_per_day",
)
PROJECTION_COLUMNS: tuple[str, ...] = (
    *PROFILE_COLUMNS, "strategy", "traffic_rph", "method", "simulated_requests",
    "period_h", "requests_per_day", "cold_start_share", "cold_starts_per_day",
    "instance_h_per_day", "energy_kwh_per_day", "energy_kwh_per_year",
    "energy_above_baseline_kwh_per_year", "kg_co2e_per_year", "cost_usd_per_year",
    "instance_h_vs_closed_form", "energy_vs_closed_form",
)


def profile_columns(workload: str, profile: PlatformProfile) -> dict[str, str]:
    return {"workload": workload, "profile": profile.name, "device": profile.device,
            "basis": profile.basis,
            "label": LABEL if is_published(profile) else MEASURED_LABEL}


def pool_limits(profile: PlatformProfile, gateway: Mapping[str, Any] | None = None
                ) -> PoolLimits:
    """The gateway's limits (config `gateway:`), serving as many requests per instance
    at once as the profile's platform does."""
    limits = QueueSettings(**dict(gateway or {})).pool_limits()
    return dataclasses.replace(limits, instance_concurrency=profile.instance_concurrency)


def _num(summary: Mapping[str, Any], key: str) -> float:
    value = summary.get(key)
    return math.nan if value is None else float(value)


def _instance_h(summary: Mapping[str, Any]) -> float:
    """Instance-hours: the sum over instances of their starting and up time."""
    held = _num(summary, "instance_s_sum")
    if not math.isfinite(held):
        held = _num(summary, "instance_s")
    return held / S_PER_H


def _run(requests: Sequence[SimRequest], policy: Policy, profile: PlatformProfile,
         limits: PoolLimits, until_s: float | None = None) -> dict[str, Any]:
    result = simulate(requests, policy, profile, limits, until_s=until_s)
    summary = dict(summarize(result, profile))
    summary["window_s"] = float(result.window[1] - result.window[0])
    return summary


# ---------------------------------------------------------------------------------------
# The production hour


def hour_trace(path: Path | str, keep_probability: float, seed: int) -> pd.DataFrame:
    """The whole file of an Azure LLM trace at its own pace, each request kept with
    `keep_probability` (seeded). Prompt and output lengths are those a live replay of the
    trace gets (the azure_llm workload kind's defaults)."""
    spec = {"kind": "azure_llm", "path": str(path), "seed": int(seed),
            "keep_probability": float(keep_probability), "time_scale": 1.0}
    return generate_trace(HOUR_SCENARIO, spec)


def hour_scenarios(
    workload: str, trace_path: Path | str, thinning: Sequence[float],
    strategies: Mapping[str, Mapping[str, Any]], profiles: Sequence[PlatformProfile], *,
    seed: int = 0, gateway: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Every strategy on every profile over the hour and its thinned variants
    (HOUR_COLUMNS, one row per profile x keep probability x strategy)."""
    rows = []
    for keep in thinning:
        trace = hour_trace(trace_path, keep, seed)
        requests = requests_from_trace(trace)
        for profile in profiles:
            limits = pool_limits(profile, gateway)
            for name, spec in strategies.items():
                params = {k: v for k, v in spec.items() if k != "policy"}
                summary = _run(requests, make_policy(str(spec["policy"]), params), profile,
                               limits)
                instance_h = _instance_h(summary)
                energy = _num(summary, "energy_total_j")
                rows.append({
                    **profile_columns(workload, profile), "scenario": HOUR_SCENARIO,
                    "keep_probability": keep, "strategy": name, "policy": spec["policy"],
                    **{k: summary.get(k) for k in (
                        "requests", "ok", "errors", "cold_starts", "cold_requests",
                        "cold_share", "window_s", "ttft_p50_ms", "ttft_p90_ms",
                        "ttft_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "energy_total_j",
                        "energy_above_baseline_j")},
                    "instance_h": instance_h,
                    "energy_per_request_j": ratio(energy, _num(summary, "ok")),
                })
    return pd.DataFrame(rows, columns=list(HOUR_COLUMNS))


# ---------------------------------------------------------------------------------------
# Poisson traffic


def request_sizes(trace: pd.DataFrame) -> np.ndarray:
    """(prompt tokens, output tokens) of each request of a trace, as the simulator sees
    them: the mix the Poisson scenarios draw from."""
    reqs = requests_from_trace(trace)
    return np.array([(r.prompt_tokens, r.output_tokens) for r in reqs], dtype=np.int64
                    ).reshape(-1, 2)


def poisson_requests(rate_rph: float, period_s: float, sizes: np.ndarray,
                     rng: np.random.Generator) -> list[SimRequest]:
    """Poisson arrivals at `rate_rph` over [0, period_s), each with a size drawn from
    `sizes` (rows of prompt and output tokens).

    The count is the expected one (rate x period, rounded) and the times are uniform
    given the count, as a Poisson process's are: scaling the period to a day then
    carries no noise of the count, only of the gaps.
    """
    if rate_rph <= 0 or period_s <= 0:
        raise UserError("Poisson traffic needs a rate and a period > 0")
    if len(sizes) == 0:
        raise UserError("no request sizes to draw from")
    n = max(1, round(rate_rph / S_PER_H * period_s))
    times = np.sort(rng.uniform(0.0, period_s, n))
    drawn = sizes[rng.integers(0, len(sizes), n)]
    return [SimRequest(i, float(t), int(p), int(o))
            for i, (t, (p, o)) in enumerate(zip(times, drawn, strict=True))]


def period_s(rate_rph: float, expected_requests: int) -> float:
    """The period over which `rate_rph` brings `expected_requests` on average."""
    return expected_requests / rate_rph * S_PER_H


def _seed(*parts: float) -> np.random.SeedSequence:
    """One stream per scenario cell (the same arrivals for every TTL of a rate)."""
    return np.random.SeedSequence([round(p * 1000) for p in parts])


def mean_service_s(profile: PlatformProfile, sizes: np.ndarray) -> float:
    """Mean busy seconds of a warm request of the size mix."""
    prompt = sizes[:, 0].astype(float)
    output = sizes[:, 1].astype(float)
    busy = (profile.ttft_base_s + profile.ttft_s_per_prompt_token * prompt
            + profile.tpot_s * np.maximum(output - 1.0, 0.0))
    return float(np.mean(busy))


def rate_ttl_grid(
    workload: str, profiles: Sequence[PlatformProfile], rates_rph: Sequence[float],
    ttls_s: Sequence[float], sizes: np.ndarray, *, requests_per_cell: int, seed: int = 0,
    hours_per_day: float = 24.0, gateway: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """keep_warm at every TTL under Poisson traffic at every rate (GRID_COLUMNS).

    Each cell simulates the period in which its rate brings `requests_per_cell` requests
    on average; the arrivals of a rate are the same for every TTL, so the cells of a row
    differ by the TTL alone.
    """
    rows = []
    day_s = hours_per_day * S_PER_H
    for profile in profiles:
        limits = pool_limits(profile, gateway)
        service_s = mean_service_s(profile, sizes)
        for rate in rates_rph:
            span_s = period_s(rate, requests_per_cell)
            requests = poisson_requests(rate, span_s, sizes,
                                        np.random.default_rng(_seed(seed, rate)))
            for ttl in ttls_s:
                policy = make_policy("keep_warm", {"keep_warm_ttl_s": float(ttl)})
                summary = _run(requests, policy, profile, limits, until_s=span_s)
                instance_h = _instance_h(summary)
                per_day = day_s / span_s
                energy = _num(summary, "energy_total_j")
                rows.append({
                    **profile_columns(workload, profile), "rate_rph": rate, "ttl_s": ttl,
                    "requests": summary.get("requests"), "period_h": span_s / S_PER_H,
                    "load": rate / S_PER_H * service_s,
                    "cold_starts": summary.get("cold_starts"),
                    "cold_share": summary.get("cold_share"), "instance_h": instance_h,
                    "instance_h_per_day": instance_h * per_day,
                    "energy_kwh_per_day": energy * per_day / J_PER_KWH,
                })
    return pd.DataFrame(rows, columns=list(GRID_COLUMNS))


# ---------------------------------------------------------------------------------------
# Yearly projections, simulated and closed-form


def closed_form_model(profile: PlatformProfile, policy: Policy, sizes: np.ndarray
                      ) -> dict[str, Any]:
    """The inputs `project_strategy` takes, from a profile and a policy (its accounting)."""
    accounting = policy.accounting()
    power = profile.power_w
    cold_w = power.get("cold_start", math.nan)
    warm_w = profile.phase_power_w("runtime_warm")
    return {
        "always_on": accounting.always_on, "idle_ttl_s": accounting.idle_ttl_s,
        "runtime_warm_ttl_s": accounting.runtime_warm_ttl_s,
        "active_s_per_request": mean_service_s(profile, sizes),
        "cold_start_s": profile.cold_start_s,
        "cold_start_energy_j": profile.cold_start_s * cold_w,
        # A wake at the cold start's power, as the simulator counts it (phase cold_start).
        "wake_s": profile.wake_s, "wake_energy_j": profile.wake_s * cold_w,
        "runtime_warm_power_w": math.nan if warm_w is None else warm_w,
        "bare_idle_power_w": power.get("bare_idle", math.nan),
        "idle_loaded_power_w": power.get("idle_loaded", math.nan),
        "active_power_w": power.get("active", math.nan),
    }


def _closed_form_row(model: Mapping[str, Any], rph: float, settings: ProjectionSettings
                     ) -> dict[str, float]:
    day = project_strategy(model, rph, settings.hours_per_day,
                           settings.value("carbon_intensity_g_per_kwh"),
                           settings.value("gpu_hour_price_usd"))
    return {
        "requests_per_day": day["requests_per_day"],
        "cold_start_share": day["cold_start_share"],
        "cold_starts_per_day": day["cold_starts_per_day"],
        "instance_h_per_day": day["instance_h_per_day"],
        "energy_kwh_per_day": day["energy_kwh_per_day"],
        "energy_kwh_per_year": day["energy_kwh_per_year"],
        "energy_above_baseline_kwh_per_year": day["energy_above_baseline_kwh_per_year"],
        "kg_co2e_per_year": day["kg_co2e_per_year"],
        "cost_usd_per_year": day["cost_usd_per_year"],
    }


def _simulated_row(summary: Mapping[str, Any], span_s: float, settings: ProjectionSettings
                   ) -> dict[str, float]:
    per_day = settings.hours_per_day * S_PER_H / span_s
    instance_h_day = _instance_h(summary) * per_day
    kwh_day = _num(summary, "energy_total_j") * per_day / J_PER_KWH
    above_day = _num(summary, "energy_above_baseline_j") * per_day / J_PER_KWH
    requests = _num(summary, "requests")
    return {
        "requests_per_day": requests * per_day,
        "cold_start_share": _num(summary, "cold_share"),
        "cold_starts_per_day": _num(summary, "cold_starts") * per_day,
        "instance_h_per_day": instance_h_day,
        "energy_kwh_per_day": kwh_day,
        "energy_kwh_per_year": kwh_day * DAYS_PER_YEAR,
        "energy_above_baseline_kwh_per_year": above_day * DAYS_PER_YEAR,
        "kg_co2e_per_year": kg_co2e(kwh_day * DAYS_PER_YEAR,
                                    settings.value("carbon_intensity_g_per_kwh")),
        "cost_usd_per_year": instance_h_day * DAYS_PER_YEAR
        * settings.value("gpu_hour_price_usd"),
    }


def projections_table(
    workload: str, profiles: Sequence[PlatformProfile],
    strategies: Mapping[str, Mapping[str, Any]], sizes: np.ndarray,
    settings: ProjectionSettings, *, requests_per_level: int, seed: int = 0,
    gateway: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Every strategy on every profile at every traffic level, by both methods
    (PROJECTION_COLUMNS; the simulated rows carry their ratio to the closed form)."""
    rows = []
    for profile in profiles:
        limits = pool_limits(profile, gateway)
        for rph in sorted(settings.traffic_rph):
            span_s = period_s(rph, requests_per_level)
            requests = poisson_requests(rph, span_s, sizes,
                                        np.random.default_rng(_seed(seed, rph)))
            for name, spec in strategies.items():
                params = {k: v for k, v in spec.items() if k != "policy"}
                key = {**profile_columns(workload, profile), "strategy": name,
                       "traffic_rph": rph}
                closed = _closed_form_row(
                    closed_form_model(profile, make_policy(str(spec["policy"]), params),
                                      sizes), rph, settings)
                summary = _run(requests, make_policy(str(spec["policy"]), params), profile,
                               limits, until_s=span_s)
                simulated = _simulated_row(summary, span_s, settings)
                rows.append({**key, "method": "closed_form", **closed})
                rows.append({
                    **key, "method": "simulated",
                    "simulated_requests": summary.get("requests"),
                    "period_h": span_s / S_PER_H, **simulated,
                    "instance_h_vs_closed_form": ratio(simulated["instance_h_per_day"],
                                                       closed["instance_h_per_day"]),
                    "energy_vs_closed_form": ratio(simulated["energy_kwh_per_day"],
                                                   closed["energy_kwh_per_day"]),
                })
    return pd.DataFrame(rows, columns=list(PROJECTION_COLUMNS))


# ---------------------------------------------------------------------------------------
# Files (one function per workflow rule)


def scenario_profiles(measured_profile: Path | str | None, settings: SimulationSettings
                      ) -> list[PlatformProfile]:
    """The measured profile (when given) and the configured published ones, in order."""
    profiles = [PlatformProfile.read(Path(measured_profile))] if measured_profile else []
    profiles += published_profiles(settings.profiles, Path(settings.published_file))
    if not profiles:
        raise UserError("no profile to simulate: no measured profile and "
                        "simulation.profiles is empty")
    return profiles


def write_hour_scenarios(workload: str, config: Mapping[str, Any],
                         measured_profile: Path | str | None, out: Path) -> Path:
    """hour_scenarios for `config` (its strategies, gateway and simulation keys)."""
    sim = simulation_settings(config)
    table = hour_scenarios(
        workload, sim.trace, sim.thinning, config["strategies"],
        scenario_profiles(measured_profile, sim), seed=sim.seed,
        gateway=config.get("gateway"))
    return write_table(table, Path(out))


def _sizes(sim: SimulationSettings) -> np.ndarray:
    """The request mix of the Poisson scenarios: the least thinned hour's (the whole hour
    with the default thinning)."""
    return request_sizes(hour_trace(sim.trace, max(sim.thinning), sim.seed))


def write_rate_ttl_grid(workload: str, config: Mapping[str, Any],
                        measured_profile: Path | str | None, out: Path) -> Path:
    """rate_ttl_grid for `config` (gateway, simulation, projections keys); request sizes
    from the least thinned hour's trace."""
    sim = simulation_settings(config)
    proj = projection_settings(config)
    table = rate_ttl_grid(
        workload, scenario_profiles(measured_profile, sim), sim.rates_rph, sim.ttl_s,
        _sizes(sim), requests_per_cell=sim.requests_per_level, seed=sim.seed,
        hours_per_day=proj.hours_per_day, gateway=config.get("gateway"))
    return write_table(table, Path(out))


def write_projections_table(workload: str, config: Mapping[str, Any],
                            measured_profile: Path | str | None, out: Path) -> Path:
    """projections_table for `config` (strategies, gateway, simulation, constants,
    projections keys) at its projections.traffic_rph levels."""
    sim = simulation_settings(config)
    table = projections_table(
        workload, scenario_profiles(measured_profile, sim), config["strategies"],
        _sizes(sim), projection_settings(config), requests_per_level=sim.requests_per_level,
        seed=sim.seed, gateway=config.get("gateway"))
    return write_table(table, Path(out))


__all__ = [
    "GRID_COLUMNS", "HOUR_COLUMNS", "HOUR_SCENARIO", "MEASURED_LABEL", "PROJECTION_COLUMNS",
    "closed_form_model", "hour_scenarios", "hour_trace", "mean_service_s", "period_s",
    "poisson_requests", "pool_limits", "projections_table", "rate_ttl_grid",
    "request_sizes", "scenario_profiles", "write_hour_scenarios", "write_projections_table",
    "write_rate_ttl_grid",
]
