"""Every number the report's prose shows, computed from the pipeline's files.

`build_variables` turns the report's inputs (`scalezero.report.inputs`) into a nested
mapping of display strings (the report's `_variables.yml`, cited in the text as
`{{< var section.name >}}`); the generated tables are in `scalezero.report.tables`.
Nothing in the report source is a measured number typed by hand, so a rerun on other
hardware rewrites the report consistently. Sentences whose wording depends on the
outcome (which strategy was cheaper, whether energy was measured) are generated here too.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from scalezero.analysis.energy import NVML_UNCERTAINTY_PCT
from scalezero.analysis.frontier import IDLE_ENERGY, frontier_table
from scalezero.analysis.metrics import as_bool
from scalezero.analysis.numbers import mean, num
from scalezero.analysis.projections import kg_co2e, kwh_per_year
from scalezero.report.facts import context_power_w, setup_facts
from scalezero.report.format import CI_LEVEL, NA, fmt, fmt_ci, fmt_int, fmt_pct
from scalezero.report.inputs import ReportInputs, per_strategy


def _strategy_vars(inp: ReportInputs, strategy: str) -> dict[str, str]:
    s, r = inp.summary, inp.runs
    out: dict[str, str] = {"name": strategy}
    for m in ("ttft", "e2e"):
        for subset in ("", "cold_", "warm_"):
            for q in (50, 90, 99):
                col = f"{m}_{subset}p{q}_ms"
                out[col] = fmt_ci(per_strategy(s, strategy, col))
    for col in ("tpot_p50_ms", "tpot_p99_ms", "itl_p99_ms", "cold_starts", "requests", "ok",
                "errors", "duration_s", "cold_start_mean_s", "instance_s"):
        out[col] = fmt_ci(per_strategy(s, strategy, col))
    out["cold_share_pct"] = fmt_ci(per_strategy(s, strategy, "cold_share"), scale=100.0)
    for name in inp.slo_sets:
        out[f"goodput_{name}_rps"] = fmt_ci(per_strategy(s, strategy, f"goodput_{name}_rps"))
        out[f"attainment_{name}_pct"] = fmt_ci(
            per_strategy(s, strategy, f"slo_attainment_{name}"), scale=100.0)
    for col in ("energy_total_j", "energy_above_baseline_j", "energy_per_request_j",
                "energy_per_request_above_baseline_j", "energy_per_output_token_j",
                "energy_per_output_token_above_baseline_j", "mem_gib_h",
                "cost_per_1000_requests_usd", "cold_start_energy_mean_j"):
        out[col] = fmt_ci(per_strategy(r, strategy, col))
    out["above_baseline_share_pct"] = fmt_ci(per_strategy(r, strategy, "above_baseline_share"),
                                             scale=100.0)
    idle = inp.phases[(inp.phases["strategy"].astype(str) == strategy)
                      & (inp.phases["phase"] == "idle_loaded")]
    out["idle_loaded_energy_j"] = fmt_ci(pd.to_numeric(idle["energy_j"], errors="coerce"))
    out["idle_loaded_s"] = fmt_ci(pd.to_numeric(idle["duration_s"], errors="coerce"))
    # Share of the replay the instance spent serving: active / (time an instance was held).
    active = inp.phases[(inp.phases["strategy"].astype(str) == strategy)
                        & (inp.phases["phase"] == "active")]
    act = mean(active["duration_s"])
    held = mean(per_strategy(s, strategy, "instance_s"))
    out["busy_share_pct"] = fmt_pct(act / held if held else math.nan)
    m = inp.model[inp.model["strategy"].astype(str) == strategy]
    ttl = num(m["idle_ttl_s"].iloc[0]) if not m.empty else math.nan
    out["policy"] = str(m["policy"].iloc[0]) if not m.empty else NA
    out["idle_ttl_s"] = "forever" if math.isinf(ttl) else fmt(ttl)
    return out


def _model_row(inp: ReportInputs) -> pd.Series | None:
    return inp.model.iloc[0] if not inp.model.empty else None


def _sweep_at(inp: ReportInputs, strategy: str, rph: float) -> pd.Series | None:
    d = inp.sweep[(inp.sweep["strategy"].astype(str) == strategy)
                  & (pd.to_numeric(inp.sweep["traffic_rph"], errors="coerce") == rph)]
    return d.iloc[0] if not d.empty else None


def _rph_key(rph: float) -> str:
    return f"r{fmt(rph, 6, thousands=False).replace('.', '_')}"


def _projection_vars(inp: ReportInputs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    levels = sorted(set(pd.to_numeric(inp.sweep["traffic_rph"], errors="coerce").dropna()))
    out["levels"] = ", ".join(fmt(x) for x in levels)
    out["lowest_rph"] = fmt(min(levels)) if levels else NA
    out["highest_rph"] = fmt(max(levels)) if levels else NA
    out["hours_per_day"] = fmt(inp.projection_settings.get("hours_per_day"))
    for strategy in inp.strategies:
        per: dict[str, Any] = {}
        for rph in levels:
            row = _sweep_at(inp, strategy, rph)
            if row is None:
                continue
            per[_rph_key(rph)] = {
                "kwh_year": fmt(row["energy_kwh_per_year"]),
                "kg_co2e_year": fmt(row["kg_co2e_per_year"]),
                "usd_year": fmt(row["cost_usd_per_year"]),
                "usd_month": fmt(row["cost_usd_per_month"]),
                "cold_share_pct": fmt_pct(row["cold_start_share"]),
                "busy_share_pct": fmt_pct(row["busy_share"]),
                "instance_h_day": fmt(row["instance_h_per_day"]),
            }
        out[strategy] = per
    m = _model_row(inp)
    if m is not None:
        out.update({
            "basis": str(m["basis"]),
            "bare_idle_power_w": fmt(m["bare_idle_power_w"]),
            "idle_loaded_power_w": fmt(m["idle_loaded_power_w"]),
            "active_power_w": fmt(m["active_power_w"]),
            "idle_extra_power_w": fmt(num(m["idle_loaded_power_w"])
                                      - num(m["bare_idle_power_w"])),
            "cold_start_s": fmt(m["cold_start_s"]),
            "cold_start_energy_j": fmt(m["cold_start_energy_j"]),
            "cold_start_above_baseline_j": fmt(m["cold_start_above_baseline_j"]),
            "active_s_per_request": fmt(m["active_s_per_request"]),
            "break_even_ttl_s": fmt(m["break_even_ttl_s"]),
        })
    return out


def _discussion_vars(inp: ReportInputs, facts: Mapping[str, Any],
                     const: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Sentences whose content depends on the outcome; each cites its numbers."""
    out: dict[str, str] = {}
    model = inp.model
    ref = num(inp.projection_settings.get("reference_rph"))
    levels = sorted(set(pd.to_numeric(inp.sweep["traffic_rph"], errors="coerce").dropna()))
    if levels and (not math.isfinite(ref) or ref not in levels):
        ref = min(levels, key=lambda x: abs(x - ref) if math.isfinite(ref) else x)
    out["reference_rph"] = fmt(ref)
    always = [str(s) for s, a in zip(model["strategy"], as_bool(model["always_on"]),
                                     strict=True) if a]
    elastic = [str(s) for s in model["strategy"] if str(s) not in always]
    price = const.get("gpu_hour_price_usd", {})
    price_text = f"{fmt(price.get('value'), 4)} {price.get('unit', 'USD/h')}"
    hardware_note = "" if facts["on_gpu"] else (
        " The instances of this run held no GPU; the price is that of the GPU instance "
        "such a deployment would rent, applied to the instance time each strategy held.")
    # Compute divide: monthly bill at low traffic.
    if always and elastic:
        ao = always[0]
        ao_row = _sweep_at(inp, ao, ref)
        rows: list[tuple[str, pd.Series]] = []
        for s in elastic:
            row = _sweep_at(inp, s, ref)
            if row is not None and math.isfinite(num(row["cost_usd_per_month"])):
                rows.append((s, row))
        if ao_row is not None and rows:
            best, best_row = min(rows, key=lambda x: num(x[1]["cost_usd_per_month"]))
            ratio = num(ao_row["cost_usd_per_month"]) / num(best_row["cost_usd_per_month"]) \
                if num(best_row["cost_usd_per_month"]) > 0 else math.nan
            out["divide"] = (
                f"At {fmt(ref)} requests per hour, keeping one instance always on "
                f"({ao}) costs {fmt(ao_row['cost_usd_per_month'])} USD per month at "
                f"{price_text}, while {best} holds an instance "
                f"{fmt(best_row['instance_h_per_day'])} h a day for "
                f"{fmt(best_row['cost_usd_per_month'])} USD per month"
                + (f", {fmt(ratio)} times less" if math.isfinite(ratio) else "") + "."
                + hardware_note)
            out["busy"] = (
                f"The always-on instance serves requests {fmt_pct(ao_row['busy_share'])} of "
                f"the time it is held at {fmt(ref)} requests per hour (projection), and "
                f"{_strategy_vars(inp, ao)['busy_share_pct']} of the replay window in the "
                "measured runs; the rest of the time it holds memory and draws idle power.")
        else:
            out["divide"] = "The projection could not price the strategies at this traffic."
            out["busy"] = ""
    else:
        out["divide"] = ("The runs contain no always-on strategy and no scale-to-zero "
                         "strategy to compare." if not always or not elastic else "")
        out["busy"] = ""
    # Sustainability: idle waste of the always-on strategy.
    m = _model_row(inp)
    carbon = num(const.get("carbon_intensity_g_per_kwh", {}).get("value"))
    hours = num(inp.projection_settings.get("hours_per_day"))
    if m is not None and always:
        idle_kwh_year = kwh_per_year(num(m["idle_loaded_power_w"])
                                     - num(m["bare_idle_power_w"]), hours)
        idle_total_year = kwh_per_year(num(m["idle_loaded_power_w"]), hours)
        estimate = "" if str(m["basis"]) == "measured" else " (estimated power)"
        out["idle_waste"] = (
            f"An instance held idle with the model loaded draws "
            f"{fmt(m['idle_loaded_power_w'])} W{estimate} against {fmt(m['bare_idle_power_w'])} W "
            f"for the idle {facts['device_kind']} without it: over a year of "
            f"{fmt(hours)}-hour days that is {fmt(idle_total_year)} kWh while idle, "
            f"{fmt(idle_kwh_year)} kWh of it attributable to holding the model "
            f"({fmt(kg_co2e(idle_kwh_year, carbon))} kg CO2e at {fmt(carbon)} g/kWh).")
    else:
        out["idle_waste"] = "No idle-loaded power could be attributed in these runs."
    if set(inp.runs["basis"].astype(str)) == {"measured"} and facts["on_gpu"]:
        out["sensor"] = (
            "Energy here comes from NVML's cumulative energy counter, not from sampled "
            "power, because sampled power on recent GPUs sees only part of each interval "
            "[@yang2024; @nvml].")
    elif set(inp.runs["basis"].astype(str)) == {"measured"}:
        out["sensor"] = "Energy here comes from the CPU package's RAPL counter."
    else:
        out["sensor"] = (
            "No energy counter was readable in these runs, so the energy figures are "
            "estimates; on a GPU the pipeline reads NVML's cumulative energy counter rather "
            "than sampled power, because sampled power on recent GPUs sees only part of "
            "each interval [@yang2024; @nvml].")
    tdp = const.get("gpu_tdp_w", {})
    tdp_w = num(tdp.get("value"))
    if math.isfinite(tdp_w) and math.isfinite(hours):
        tdp_kwh = kwh_per_year(tdp_w, hours)
        out["tdp"] = (
            f"For scale: a GPU drawing its full thermal design power of {fmt(tdp_w)} W "
            "(constant gpu_tdp_w, sourced under Setup) through every "
            f"{fmt(hours)}-hour day uses {fmt(tdp_kwh)} kWh a year, "
            f"{fmt(kg_co2e(tdp_kwh, carbon))} kg CO2e at {fmt(carbon)} g/kWh.")
    else:
        out["tdp"] = ""
    be = num(m["break_even_ttl_s"]) if m is not None else math.nan
    if math.isfinite(be):
        out["break_even"] = (
            f"An idle gap shorter than {fmt(be)} s costs less energy kept warm than "
            "scaled to zero and started again; longer gaps favour scaling to zero.")
    else:
        out["break_even"] = (
            "The break-even keep-warm TTL is undefined here: it needs a measured cold start "
            "and an idle-loaded power above bare idle.")
    # Latency price of scaling to zero.
    s = inp.summary
    cold = [(st, mean(per_strategy(s, st, "ttft_cold_p50_ms"))) for st in elastic]
    cold = [(st, v) for st, v in cold if math.isfinite(v)]
    warm = [(st, mean(per_strategy(s, st, "ttft_warm_p50_ms"))) for st in inp.strategies]
    warm = [(st, v) for st, v in warm if math.isfinite(v)]
    if cold and warm:
        worst, worst_v = max(cold, key=lambda x: x[1])
        best, best_v = min(warm, key=lambda x: x[1])
        out["latency"] = (
            f"The price of scaling to zero is latency: the median cold TTFT of {worst} is "
            f"{fmt(worst_v)} ms, {fmt(worst_v / best_v)} times the median warm TTFT of "
            f"{best} ({fmt(best_v)} ms).")
    else:
        out["latency"] = "No cold request completed, so cold and warm latency cannot be compared."
    ctx_w, bare_w = context_power_w(inp.summary)
    if math.isfinite(ctx_w):
        out["context"] = (
            f"A process holding the runtime and a device context with a tiny model, but "
            f"not the served model's weights, drew {fmt(ctx_w)} W against {fmt(bare_w)} W "
            f"bare idle (measured over each run's context-only window, before the replay).")
    elif facts["context_baseline"]:
        out["context"] = (
            "The context-only idle power (a runtime holding a device context but no "
            "weights) was not measured: the runs recorded a context-only window, but no "
            "power sensor or energy counter covered it on this host.")
    else:
        out["context"] = ("The context-only idle power (a runtime holding a device context "
                          "but no weights) was not measured: no run recorded a context-only "
                          "window.")
    return out


def _energy_basis_text(runs: pd.DataFrame, facts: Mapping[str, Any]) -> str:
    bases = set(runs["basis"].astype(str)) if "basis" in runs.columns else set()
    methods = set(runs["method"].astype(str)) if "method" in runs.columns else set()
    if bases == {"measured"}:
        src = (f"the NVML energy counter (NVML states +/- {fmt(NVML_UNCERTAINTY_PCT)} % "
               "accuracy)" if "nvml_counter" in methods else "the RAPL CPU-package counter")
        return f"Energy was measured with {src}."
    how = []
    if "power_samples" in methods:
        how.append("integrated power samples")
    if "host_model" in methods:
        how.append("a host power model: every vCPU at the idle power per vCPU, plus the "
                   "difference between full-load and idle power per vCPU for each core the "
                   "instances kept busy, plus memory power for their resident memory")
    reason = "no GPU, as NVML is unavailable, and no readable RAPL counter" \
        if not facts["on_gpu"] else "no energy counter was readable"
    prefix = ("Energy was not measured in some runs" if "measured" in bases
              else f"Energy was not measured ({reason})")
    return (f"{prefix}. The energy numbers below are **estimates** from "
            + " and ".join(how) + ", with the constants listed under Setup.")


def _frontier_vars(inp: ReportInputs) -> dict[str, str]:
    """The strategies no other beats on idle cost and cold starts, for the text."""
    table = frontier_table(inp.summary, inp.strategies)
    on = [str(s) for s in table.loc[table["on_frontier"], "strategy"]]
    off = [str(s) for s in table.loc[~table["on_frontier"] & (table["runs"] > 0), "strategy"]]
    basis = ("idle energy (every run had an energy counter)" if (table["idle_cost_basis"]
             == IDLE_ENERGY).any() else "idle instance time (no energy counter covered "
             "every run)")
    return {
        "names": ", ".join(on) if on else NA,
        "count": fmt_int(len(on)),
        "dominated": ", ".join(off) if off else "none",
        "basis": basis,
    }


def build_variables(inp: ReportInputs, *, title: str, author: str, renderer: str,
                    figure_numbers: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The nested variables the report cites (all values are display strings)."""
    facts = setup_facts(inp.run_meta)
    const = inp.constants
    summary = inp.summary
    reps = summary.groupby("strategy")["rep"].nunique() if not summary.empty else pd.Series()
    trace = inp.trace
    workload: dict[str, str] = {"name": inp.workload}
    if trace is not None and not trace.empty:
        t = pd.to_numeric(trace["t_sched_s"], errors="coerce").dropna().sort_values()
        span = float(t.max() - t.min()) if len(t) > 1 else 0.0
        gaps = t.diff().dropna()
        workload.update({
            "requests": fmt_int(len(trace)),
            "span_s": fmt(span),
            "rate_rph": fmt(3600.0 * (len(t) - 1) / span) if span > 0 else NA,
            "max_gap_s": fmt(gaps.max()) if not gaps.empty else NA,
            "median_gap_s": fmt(gaps.median()) if not gaps.empty else NA,
            "max_tokens": fmt(mean(trace["max_tokens"])) if "max_tokens" in trace else NA,
        })
    else:
        workload.update({"requests": fmt(mean(summary["requests"])), "span_s": NA,
                         "rate_rph": NA, "max_gap_s": NA, "median_gap_s": NA,
                         "max_tokens": NA})
    slo = {name: {"ttft_ms": fmt(v.get("ttft_ms")), "tpot_ms": fmt(v.get("tpot_ms"))}
           for name, v in inp.slo_sets.items()}
    slo_text = "; ".join(
        f"{name}: TTFT <= {fmt(v.get('ttft_ms'))} ms and TPOT <= {fmt(v.get('tpot_ms'))} ms"
        for name, v in inp.slo_sets.items())
    model_bytes = num(facts.get("model_bytes"))
    now = dt.datetime.now(dt.UTC)
    memory_kind = "GPU memory" if facts["on_gpu"] else \
        "host memory: the resident memory of the instance processes, as there is no GPU"
    variables: dict[str, Any] = {
        "report": {
            "title": title, "author": author, "workload": inp.workload,
            "renderer": renderer,
            "generated": now.strftime("%Y-%m-%d %H:%M UTC"),
            "date": now.strftime("%Y-%m-%d"),
            "ci_level_pct": fmt(100 * CI_LEVEL),
        },
        "run": {
            "strategies": ", ".join(inp.strategies),
            "n_strategies": fmt_int(len(inp.strategies)),
            "repeats": fmt_int(reps.max()) if len(reps) else NA,
            "n_runs": fmt_int(len(summary)),
            "duration_s": fmt(mean(summary["duration_s"])),
            "started": facts["started"], "ended": facts["ended"],
            "device": facts["device"], "device_kind": facts["device_kind"],
            "memory_kind": memory_kind,
            "cpu_model": facts["cpu_model"], "cpu_count": fmt_int(facts["cpu_count"]),
            "os": facts["os"], "python": facts["python"],
            "llama_cpp_python": facts["llama_cpp_python"],
            "git_commit": str(facts["git_commit"])[:12],
            "config_sha256": str(facts["config_sha256"])[:12] if facts["config_sha256"] != NA
            else NA,
            "telemetry_rate_hz": fmt(facts["rate_hz"]),
            "energy_basis": _energy_basis_text(inp.runs, facts),
            "context_idle_power_w": fmt(context_power_w(summary)[0]),
            "model_name": facts["model_name"],
            "model_mib": fmt(model_bytes / 2**20) if math.isfinite(model_bytes) else NA,
            "model_sha256": str(facts["model_sha256"])[:16] if facts["model_sha256"] != NA
            else NA,
        },
        "workload": workload,
        "slo": {**slo, "text": slo_text},
        "s": {st: _strategy_vars(inp, st) for st in inp.strategies},
        "proj": _projection_vars(inp),
        "const": {name: {"value": fmt(c.get("value"), 4), "unit": str(c.get("unit", "")),
                         "source": str(c.get("source", "")), "date": str(c.get("date", ""))}
                  for name, c in const.items()},
        "disc": _discussion_vars(inp, facts, const),
        "frontier": _frontier_vars(inp),
        "fig": {k: str(v) for k, v in (figure_numbers or {}).items()},
    }
    return variables


def simulation_variables(validation: pd.DataFrame | None,
                         profile: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The simulation section's numbers: the leave-one-out validation table's counts,
    a sentence listing every missed target, and the profile fitted on all runs (its
    record, `PlatformProfile.record()`)."""
    out: dict[str, str] = {"validated": "no"}
    if validation is not None and not validation.empty:
        met = validation["met"].astype("string").str.lower()
        runs = validation[["strategy", "rep"]].drop_duplicates()
        misses = validation[met == "false"]
        fits = sorted(set(validation["fit"].astype(str)))
        out.update({
            "validated": "yes",
            "n_runs": fmt_int(len(runs)),
            "n_checked": fmt_int(int(met.isin(["true", "false"]).sum())),
            "n_met": fmt_int(int((met == "true").sum())),
            "n_missed": fmt_int(len(misses)),
            "fit": "; ".join(fits),
            "missed": (" ".join(
                f"{r.strategy} repeat {r.rep} missed its {r.metric} target ({r.target}): "
                f"measured {fmt(r.measured)}, simulated {fmt(r.simulated)}"
                + (f" ({fmt(r.error_pct, 2)} %)." if math.isfinite(num(r.error_pct))
                   else f" (off by {fmt(r.error)}).")
                for r in misses.itertuples())
                if not misses.empty else "Every target was met."),
        })
    if profile:
        cold = sum(num(profile.get(k)) for k in (
            "spawn_to_runtime_ready_s", "runtime_ready_to_model_loaded_s",
            "model_loaded_to_ready_s"))
        power = profile.get("power_w") or {}
        out.update({
            "profile_sources": fmt_int(len(profile.get("sources") or ())),
            "cold_start_s": fmt(cold),
            "spawn_to_runtime_ready_s": fmt(profile.get("spawn_to_runtime_ready_s")),
            "runtime_ready_to_model_loaded_s":
                fmt(profile.get("runtime_ready_to_model_loaded_s")),
            "model_loaded_to_ready_s": fmt(profile.get("model_loaded_to_ready_s")),
            "first_request_extra_s": fmt(profile.get("first_request_extra_s")),
            "stop_s": fmt(profile.get("stop_s")),
            "ttft_base_ms": fmt(1000.0 * num(profile.get("ttft_base_s"))),
            "ttft_ms_per_prompt_token": fmt(1000.0 * num(profile.get("ttft_s_per_prompt_token"))),
            "tpot_ms": fmt(1000.0 * num(profile.get("tpot_s"))),
            "energy_source": str(profile.get("energy_source") or "none"),
            "idle_loaded_power_w": fmt(power.get("idle_loaded")),
            "active_power_w": fmt(power.get("active")),
            "instance_mem_mib": fmt(profile.get("instance_mem_mib")),
        })
    return out


__all__ = ["build_variables", "simulation_variables"]
