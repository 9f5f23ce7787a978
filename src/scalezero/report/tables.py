"""The generated Markdown tables and bullet lists the report includes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from scalezero.analysis.numbers import mean, num
from scalezero.report.facts import context_power_w, engine_text, measured_rows, setup_facts
from scalezero.report.format import NA, fmt, fmt_ci, fmt_int, fmt_pct, markdown_table
from scalezero.report.inputs import ReportInputs, per_strategy
from scalezero.report.trace_text import trace_paragraph


def _strategy_header(inp: ReportInputs) -> list[str]:
    return ["", *inp.strategies]


def summary_table(inp: ReportInputs, variables: Mapping[str, Any]) -> str:
    """Strategies side by side: latency, cold starts, energy, memory and cost."""
    sv = variables["s"]
    mem = "GPU memory held" if variables["run"]["device_kind"] == "GPU" \
        else "host memory held (instance RSS)"
    basis = set(inp.runs["basis"].astype(str))
    est = "" if basis == {"measured"} else " (estimated)"
    price = variables["const"].get("gpu_hour_price_usd", {})
    rows = [
        ("TTFT p50, cold requests (ms)", "ttft_cold_p50_ms"),
        ("TTFT p99, cold requests (ms)", "ttft_cold_p99_ms"),
        ("TTFT p50, warm requests (ms)", "ttft_warm_p50_ms"),
        ("TTFT p99, warm requests (ms)", "ttft_warm_p99_ms"),
        ("cold-start share of requests (%)", "cold_share_pct"),
        ("cold starts per run", "cold_starts"),
        (f"energy per request (J){est}", "energy_per_request_j"),
        (f"idle-loaded energy per run (J){est}", "idle_loaded_energy_j"),
        (f"{mem} (GiB·h per run)", "mem_gib_h"),
        (f"cost per 1,000 requests (USD, at {price.get('value', NA)} "
         f"{price.get('unit', 'USD/h')} of instance time)", "cost_per_1000_requests_usd"),
    ]
    for name in inp.slo_sets:
        rows.append((f"requests meeting {name} (%)", f"attainment_{name}_pct"))
    body = [[label, *(sv[s].get(key, NA) for s in inp.strategies)] for label, key in rows]
    return markdown_table(_strategy_header(inp), body)


def strategies_table(inp: ReportInputs, variables: Mapping[str, Any]) -> str:
    body = []
    for st in inp.strategies:
        v = variables["s"][st]
        mi = mean(per_strategy(inp.summary, st, "min_instances"))
        body.append([st, v["policy"], fmt_int(mi), v["idle_ttl_s"], v["requests"],
                     fmt_int(len(per_strategy(inp.summary, st, "rep")))])
    return markdown_table(["strategy", "policy", "min instances", "keep-warm TTL (s)",
                           "requests per run", "repeats"], body, ["l", "l", "r", "r", "r", "r"])


def _short(digest: str) -> str:
    """A shortened hash, marked as such ("n/a" stays as it is)."""
    return digest if digest == NA else f"{digest}..."


def setup_table(inp: ReportInputs, variables: Mapping[str, Any]) -> str:
    facts = setup_facts(inp.run_meta)
    r, w = variables["run"], variables["workload"]
    rows = [["device", r["device"]]]
    if facts["on_gpu"]:
        rows += [["GPU memory (MiB)", fmt(facts["gpu_memory_mib"], 5)],
                 ["GPU power limit (W)", fmt(facts["gpu_power_limit_w"])],
                 ["driver / CUDA", f"{facts['driver'] or NA} / {facts['cuda'] or NA}"],
                 ["persistence mode", str(facts["persistence_mode"])]]
    rows += [["host CPU", f"{r['cpu_model']} ({r['cpu_count']} logical CPUs)"],
             ["operating system", r["os"]],
             ["Python / llama-cpp-python", f"{r['python']} / {r['llama_cpp_python']}"],
             ["engine", engine_text(facts)],
             ["model", f"{r['model_name']} ({r['model_mib']} MiB, sha256 "
                       f"{_short(r['model_sha256'])})"],
             ["workload", f"{w['name']}: {w['requests']} requests over {w['span_s']} s "
                          f"(mean {w['rate_rph']} requests/h, longest gap {w['max_gap_s']} s)"],
             ["telemetry", f"{facts['backend']} backend, {r['telemetry_rate_hz']} Hz"],
             ["runs", f"{r['n_runs']} ({r['n_strategies']} strategies x {r['repeats']} "
                      f"repeats), {r['started']} to {r['ended']}"],
             ["code / config", f"scalezero {facts['scalezero']}, commit {r['git_commit']}, "
                               f"config sha256 {_short(r['config_sha256'])}"],
             ["renderer", variables["report"]["renderer"]]]
    return markdown_table(["", "value"], rows, ["l", "l"])


def measured_table(inp: ReportInputs) -> str:
    facts = setup_facts(inp.run_meta)
    return markdown_table(["quantity", "status", "how"],
                          measured_rows(facts, inp.runs, inp.summary), ["l", "l", "l"])


def constants_table(inp: ReportInputs) -> str:
    rows = [[name, fmt(c.get("value"), 4), c.get("unit", ""), c.get("source", ""),
             c.get("date", "")] for name, c in sorted(inp.constants.items())]
    return markdown_table(["constant", "value", "unit", "source", "date"], rows,
                          ["l", "r", "l", "l", "l"])


def cold_start_table(inp: ReportInputs) -> str:
    cs = inp.cold_starts
    if not cs.empty:
        from scalezero.analysis.metrics import as_bool

        cs = cs[as_bool(cs["in_replay"]) & (cs["outcome"] == "ready")]
    steps = ("spawn_to_runtime_ready_s", "runtime_ready_to_model_loaded_s",
             "model_loaded_to_ready_s", "ready_to_first_token_s", "cold_start_s")
    body = []
    for st in inp.strategies:
        mine = cs[cs["strategy"].astype(str) == st] if not cs.empty else cs
        n = per_strategy(inp.summary, st, "cold_starts")
        failed = per_strategy(inp.summary, st, "failed_starts")
        energy = per_strategy(inp.runs, st, "cold_start_energy_mean_j")
        body.append([st, fmt_ci(n), fmt_ci(failed),
                     *(fmt(mean(mine[c])) if len(mine) else NA for c in steps),
                     fmt_ci(energy)])
    return markdown_table(
        ["strategy", "cold starts per run", "failed per run", "spawn → runtime (s)",
         "runtime → loaded (s)", "loaded → ready (s)", "ready → first token (s)",
         "spawn → ready (s)", "energy per cold start (J)"], body)


def energy_table(inp: ReportInputs) -> str:
    body = []
    for st in inp.strategies:
        r = inp.runs
        body.append([st,
                     fmt_ci(per_strategy(r, st, "energy_total_j")),
                     fmt_ci(per_strategy(r, st, "energy_above_baseline_j")),
                     fmt_ci(per_strategy(r, st, "above_baseline_share"), scale=100.0),
                     fmt_ci(per_strategy(r, st, "energy_per_request_j")),
                     fmt_ci(per_strategy(r, st, "energy_per_output_token_j")),
                     ", ".join(sorted(set(r.loc[r["strategy"].astype(str) == st, "basis"]
                                          .astype(str))))])
    return markdown_table(["strategy", "energy per run (J)", "above bare idle (J)",
                           "above-baseline share (%)", "per request (J)",
                           "per output token (J)", "basis"], body,
                          ["l", "r", "r", "r", "r", "r", "l"])


def projections_table(inp: ReportInputs) -> str:
    body = []
    sweep = inp.sweep.copy()
    sweep["_order"] = sweep["strategy"].astype(str).map(
        {s: i for i, s in enumerate(inp.strategies)})
    for _, row in sweep.sort_values(["traffic_rph", "_order"]).iterrows():
        load = num(row["load"])
        body.append([fmt(row["traffic_rph"]), str(row["strategy"]),
                     fmt_pct(row["cold_start_share"]), fmt(row["instance_h_per_day"]),
                     fmt(row["energy_kwh_per_day"]), fmt(row["energy_kwh_per_year"]),
                     fmt(row["kg_co2e_per_year"]), fmt(row["cost_usd_per_day"]),
                     fmt(row["cost_usd_per_year"]),
                     fmt(load) + (" (over capacity)" if load > 1 else "")])
    return markdown_table(["requests/h", "strategy", "cold share", "instance h/day",
                           "kWh/day", "kWh/year", "kg CO2e/year", "USD/day", "USD/year",
                           "load"], body, ["r", "l", *["r"] * 8])


def _bullets(lines: Sequence[str]) -> str:
    return "".join(f"- {line}\n" for line in lines) if lines else "- (no runs)\n"


def latency_bullets(inp: ReportInputs, variables: Mapping[str, Any]) -> str:
    lines = []
    for st in inp.strategies:
        v = variables["s"][st]
        goodput = "; ".join(f"{v[f'attainment_{n}_pct']} % of requests meet {n} "
                            f"({v[f'goodput_{n}_rps']} requests/s)" for n in inp.slo_sets)
        if v["ttft_cold_p50_ms"] == NA:
            ttft = (f"TTFT p50 {v['ttft_warm_p50_ms']} ms, p99 {v['ttft_warm_p99_ms']} ms "
                    "(no cold requests)")
        elif v["ttft_warm_p50_ms"] == NA:
            ttft = (f"TTFT p50 {v['ttft_cold_p50_ms']} ms, p99 {v['ttft_cold_p99_ms']} ms "
                    "(every request cold)")
        else:
            ttft = (f"TTFT p50 {v['ttft_warm_p50_ms']} ms warm and {v['ttft_cold_p50_ms']} "
                    f"ms cold (p99 {v['ttft_warm_p99_ms']} and {v['ttft_cold_p99_ms']} ms)")
        lines.append(
            f"**{st}**: {ttft}; E2E p50 {v['e2e_p50_ms']} ms; TPOT p50 {v['tpot_p50_ms']} "
            f"ms; {v['cold_share_pct']} % of requests cold; {goodput}.")
    return _bullets(lines)


def resources_bullets(inp: ReportInputs, variables: Mapping[str, Any]) -> str:
    mem = "GPU memory" if variables["run"]["device_kind"] == "GPU" else "host memory"
    lines = []
    for st in inp.strategies:
        v = variables["s"][st]
        peak = fmt_ci(per_strategy(inp.summary, st, "peak_instance_mem_mib"))
        lines.append(
            f"**{st}**: an instance was starting or up {v['instance_s']} s of a "
            f"{v['duration_s']} s replay, serving requests {v['busy_share_pct']} of that "
            f"time; idle with the model loaded {v['idle_loaded_s']} s; {mem} held "
            f"{v['mem_gib_h']} GiB·h (peak {peak} MiB).")
    return _bullets(lines)


def limitations_bullets(inp: ReportInputs, variables: Mapping[str, Any]) -> str:
    facts = setup_facts(inp.run_meta)
    run = variables["run"]
    lines = []
    if not facts["on_gpu"]:
        lines.append(
            "These runs used no GPU: memory is host memory, energy is "
            + ("measured on the CPU package (RAPL), not a GPU" if set(inp.runs["basis"])
               == {"measured"} else "an estimate from CPU use and memory")
            + ", and cold starts of a small model on a CPU are far shorter than a GPU's "
              "(no CUDA context, no transfer of weights to GPU memory). The numbers show "
              "the method; a GPU run with a production-size model is the measurement that "
              "counts.")
    if set(inp.runs["basis"]) != {"measured"}:
        lines.append("Estimated energy depends on the per-vCPU and memory power constants "
                     "(see Setup); it is not a measurement.")
    else:
        lines.append("Energy counters carry the sensor's stated uncertainty; short "
                     "phases (a cold start lasts seconds) are resolved only as finely as "
                     f"the {run['telemetry_rate_hz']} Hz samples allow.")
    reps = run["repeats"]
    lines.append(f"Each strategy ran {reps} time(s); intervals are "
                 f"{variables['report']['ci_level_pct']} % Student-t intervals across "
                 "repeats and are missing where there is a single repeat.")
    lines.append("Prompts are synthetic and generation length is fixed by max_tokens; "
                 "real traffic has longer prompts and varied outputs.")
    lines.append("Whether these runs' cold starts read the model file from the operating "
                 "system's page cache or from storage was not measured (the size sweep "
                 "measures it for its own runs); a file read recently usually stays cached, "
                 "and a cold start from disk or network storage takes longer.")
    lines.append("The projections assume Poisson arrivals, one instance, no queueing, and "
                 "per-state power pooled over all runs; beyond one instance's capacity "
                 "(load above one) they do not hold.")
    lines.append("Costs price only the instance time held, at one on-demand price; storage, "
                 "network, platform fees and minimum billing increments are not included.")
    if not math.isfinite(context_power_w(inp.summary)[0]):
        lines.append("The idle power of a runtime holding a GPU context but no weights was "
                     "not measured, so the parking cost of a half-warm tier is unknown.")
    return _bullets(lines)


def build_tables(inp: ReportInputs, variables: Mapping[str, Any]) -> dict[str, str]:
    """Generated Markdown includes, by file name (without folder)."""
    return {
        "latency_list.md": latency_bullets(inp, variables),
        "resources_list.md": resources_bullets(inp, variables),
        "limitations_list.md": limitations_bullets(inp, variables),
        "summary_table.md": summary_table(inp, variables),
        "strategies_table.md": strategies_table(inp, variables),
        "setup_table.md": setup_table(inp, variables),
        "workload_source.md": trace_paragraph(inp.workload, inp.trace_info, inp.workload_spec),
        "measured_table.md": measured_table(inp),
        "constants_table.md": constants_table(inp),
        "cold_start_table.md": cold_start_table(inp),
        "energy_table.md": energy_table(inp),
        "projections_table.md": projections_table(inp),
    }


__all__ = [
    "build_tables", "cold_start_table", "constants_table", "energy_table", "latency_bullets",
    "limitations_bullets", "measured_table", "projections_table", "resources_bullets",
    "setup_table", "strategies_table", "summary_table",
]
