"""Every number the report's prose and tables show, computed from the pipeline's files.

`collect_inputs` reads the summaries, projections, run.json files and the trace;
`build_variables` turns them into a nested mapping of display strings (the report's
`_variables.yml`, cited in the text as `{{< var section.name >}}`); `build_tables`
writes the generated Markdown tables the report includes. Nothing in the report source
is a measured number typed by hand, so a rerun on other hardware rewrites the report
consistently. Sentences whose wording depends on the outcome (which strategy was
cheaper, whether energy was measured) are generated here too.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scalezero.analysis.energy import NVML_UNCERTAINTY_PCT
from scalezero.analysis.metrics import DEFAULT_SLO_SETS, as_bool
from scalezero.analysis.stats import mean_ci
from scalezero.report.figures import strategy_order

NA = "n/a"
CI_LEVEL = 0.95


# ---------------------------------------------------------------------------------------
# Formatting


def fmt(value: Any, digits: int = 3, *, thousands: bool = True) -> str:
    """A number for prose: `digits` significant digits, thousands separators, no
    scientific notation for everyday magnitudes; NaN/None as "n/a"."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return NA
    if not math.isfinite(x):
        return NA
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 15 or magnitude < -6:
        return f"{x:.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    rounded = round(x, decimals)
    text = f"{rounded:,.{decimals}f}" if thousands else f"{rounded:.{decimals}f}"
    if "." in text:  # 1.50 -> 1.5, 24.0 -> 24: zeros after the point say nothing here
        text = text.rstrip("0").rstrip(".")
    return text


def fmt_int(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return NA
    return f"{round(x):,}" if math.isfinite(x) else NA


def fmt_pct(share: Any, digits: int = 3) -> str:
    """A 0-1 share as a percentage ("12.5 %")."""
    try:
        x = float(share)
    except (TypeError, ValueError):
        return NA
    if not math.isfinite(x):
        return NA
    if 0 < abs(x) < 1e-4:
        return "< 0.01 %"
    return f"{fmt(100.0 * x, digits)} %"


def fmt_ci(values: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    """Mean over repeats, with the half-width of its 95 % interval when there are two
    or more finite values."""
    ci = mean_ci([float(v) * scale for v in values], CI_LEVEL)
    if ci.n == 0:
        return NA
    half = (ci.high - ci.low) / 2.0 if ci.n > 1 else math.nan
    if not math.isfinite(half) or half == 0:
        return fmt(ci.mean, digits)
    return f"{fmt(ci.mean, digits)} ± {fmt(half, 2)}"


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _mean(values: Any) -> float:
    s = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    return float(s.mean()) if not s.empty else math.nan


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
    """A pipe table; align per column: "l" or "r" (default: first left, rest right)."""
    align = list(align or ["l"] + ["r"] * (len(header) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Inputs


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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def collect_inputs(
    workload: str, summary_files: Mapping[str, Path], projection_files: Mapping[str, Path],
    run_dirs: Sequence[Path] = (), trace: Path | None = None,
    slo_sets: Mapping[str, Mapping[str, float]] | None = None,
) -> ReportInputs:
    """Read the aggregate step's files (summary, requests, cold_starts), the projection
    step's files (sweep, model, runs, phases, constants), run.json of each run folder and
    the trace."""
    summary = pd.read_csv(summary_files["summary"])
    constants = _read_json(Path(projection_files["constants"]))
    run_meta = [_read_json(Path(d) / "run.json") for d in run_dirs]
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
    )


# ---------------------------------------------------------------------------------------
# Facts about the setup (from run.json)


def _first(values: Sequence[Any]) -> Any:
    return next((v for v in values if v not in (None, "", [])), None)


def setup_facts(run_meta: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Hardware, software and measurement facts, from the first run that has each."""
    def get(*path: str) -> Any:
        values = []
        for meta in run_meta:
            node: Any = meta
            for key in path:
                node = node.get(key) if isinstance(node, Mapping) else None
            values.append(node)
        return _first(values)

    backend = get("telemetry", "device_info", "backend") or get("telemetry", "backend")
    gpu_name = get("telemetry", "device_info", "name")
    on_gpu = backend == "nvml" and bool(gpu_name)
    cpu_model = get("env", "cpu_model") or get("telemetry", "device_info", "host",
                                               "cpu_model")
    energy_source = get("telemetry", "device_info", "energy_source") or "none"
    power_source = get("telemetry", "device_info", "power_source") or "none"
    return {
        "on_gpu": on_gpu,
        "device": str(gpu_name) if on_gpu else f"CPU only ({cpu_model or 'unknown CPU'})",
        "device_kind": "GPU" if on_gpu else "CPU",
        "gpu_name": str(gpu_name or NA),
        "gpu_memory_mib": get("telemetry", "device_info", "memory_total_mib"),
        "gpu_power_limit_w": get("telemetry", "device_info", "power_limit_w"),
        "driver": get("telemetry", "device_info", "driver_version"),
        "cuda": get("telemetry", "device_info", "cuda_driver_version"),
        "persistence_mode": get("telemetry", "device_info", "persistence_mode"),
        "cpu_model": cpu_model or NA,
        "cpu_count": get("env", "cpu_count"),
        "host_memory_mib": get("env", "memory_total_mib"),
        "os": get("env", "os") or NA,
        "python": get("env", "python") or NA,
        "llama_cpp_python": get("env", "llama_cpp_python") or NA,
        "gpu_offload": get("env", "llama_cpp_gpu_offload"),
        "cpu_features": get("env", "cpu_features") or [],
        "ggml_backends": get("env", "engine", "backends") or {},
        "engine_cmake_args": get("env", "engine", "build", "cmake_args") or [],
        "scalezero": get("env", "scalezero") or NA,
        "git_commit": get("env", "git_commit") or NA,
        "config_sha256": get("config_sha256") or NA,
        "seed": get("seed"),
        "model_name": get("model", "name") or NA,
        "model_bytes": get("model", "bytes"),
        "model_sha256": get("model", "sha256") or NA,
        "backend": backend or NA,
        "rate_hz": get("telemetry", "rate_hz"),
        "energy_source": energy_source,
        "power_source": power_source,
        "note": get("telemetry", "device_info", "note"),
        "nvml_error": get("telemetry", "device_info", "nvml_error"),
        "unsupported": get("telemetry", "device_info", "unsupported_queries") or [],
        "started": min((str(m.get("started_at")) for m in run_meta if m.get("started_at")),
                       default=NA),
        "ended": max((str(m.get("ended_at")) for m in run_meta if m.get("ended_at")),
                     default=NA),
        "context_baseline": any((m.get("windows") or {}).get("baseline_context")
                                for m in run_meta),
    }


def context_power_w(summary: pd.DataFrame) -> tuple[float, float]:
    """(context-only idle power, bare idle power), W: means over the runs whose energy
    counter covered a context-only window; NaN when none did (no window, or no power
    sensor to read it with)."""
    if "context_idle_power_w" not in summary.columns:
        return math.nan, math.nan
    ctx = pd.to_numeric(summary["context_idle_power_w"], errors="coerce")
    seen = ctx.notna()
    if "bare_idle_power_w" not in summary.columns:
        return _mean(ctx[seen]), math.nan
    bare = pd.to_numeric(summary["bare_idle_power_w"], errors="coerce")
    return _mean(ctx[seen]), _mean(bare[seen])


def _context_row(facts: Mapping[str, Any], summary: pd.DataFrame | None) -> list[str]:
    quantity = "context-only idle power (a runtime without weights)"
    ctx_w, bare_w = context_power_w(summary) if summary is not None else (math.nan,) * 2
    if math.isfinite(ctx_w):
        return [quantity, "measured",
                f"mean power over the baseline_context window: {fmt(ctx_w)} W, against "
                f"{fmt(bare_w)} W bare idle ({facts['energy_source']})"]
    if facts["context_baseline"]:
        # The window was recorded, but nothing on this host can read its power.
        return [quantity, "not measured",
                "a baseline_context window was recorded, but this host has no power "
                "sensor or energy counter that covered it"]
    return [quantity, "not measured", "no baseline_context window was recorded"]


def measured_rows(facts: Mapping[str, Any], runs: pd.DataFrame,
                  summary: pd.DataFrame | None = None) -> list[list[str]]:
    """What was and was not measured: [quantity, status, how]. The context-only idle
    power counts as measured only where `summary` holds a value for it."""
    on_gpu = facts["on_gpu"]
    bases = set(runs["basis"].astype(str)) if "basis" in runs.columns else set()
    rate = fmt(facts.get("rate_hz"))
    energy_src = {"nvml_counter": "NVML total-energy counter (mJ), differences between "
                                  "samples",
                  "rapl": "RAPL CPU-package energy counter (the CPU package, not a GPU)"}
    rows = [
        ["request latency (TTFT, TPOT, ITL, E2E)", "measured",
         "client side, from each streamed token's arrival time"],
        ["instance lifecycle (spawn, runtime ready, model loaded, ready, first token)",
         "measured", "gateway events on the shared monotonic clock"],
    ]
    if "measured" in bases:
        rows.append(["energy", "measured" if bases == {"measured"} else "partly measured",
                     energy_src.get(str(facts["energy_source"]), str(facts["energy_source"]))])
    if "estimated" in bases:
        rows.append(["energy", "not measured: estimated",
                     str(facts.get("note") or "no energy counter readable")
                     + "; the report's energy figures are estimates (see Energy)"])
    if on_gpu:
        rows.append(["GPU memory", "measured",
                     f"NVML device and per-process memory, {rate} Hz samples"])
        rows.append(["power timeline", "measured" if facts["power_source"] != "none"
                     else "not measured", f"NVML power ({facts['power_source']}), timelines "
                     "only, never used for energy"])
    else:
        rows.append(["GPU memory, GPU power", "not measured", "no GPU (NVML unavailable"
                     + (f": {facts['nvml_error']}" if facts.get("nvml_error") else "") + ")"])
        rows.append(["host memory (RSS of the instance processes)", "measured",
                     f"psutil, {rate} Hz samples"])
    rows.append(["instance CPU use", "measured", f"psutil, {rate} Hz samples"])
    rows.append(_context_row(facts, summary))
    if facts["unsupported"]:
        rows.append(["NVML queries the device refused", "not measured",
                     ", ".join(map(str, facts["unsupported"]))])
    return rows


# ---------------------------------------------------------------------------------------
# Variables


def _per_strategy(frame: pd.DataFrame, strategy: str, column: str) -> list[float]:
    if column not in frame.columns:
        return []
    sel = frame.loc[frame["strategy"].astype(str) == strategy, column]
    return [float(v) for v in pd.to_numeric(sel, errors="coerce")]


def _strategy_vars(inp: ReportInputs, strategy: str) -> dict[str, str]:
    s, r = inp.summary, inp.runs
    out: dict[str, str] = {"name": strategy}
    for m in ("ttft", "e2e"):
        for subset in ("", "cold_", "warm_"):
            for q in (50, 90, 99):
                col = f"{m}_{subset}p{q}_ms"
                out[col] = fmt_ci(_per_strategy(s, strategy, col))
    for col in ("tpot_p50_ms", "tpot_p99_ms", "itl_p99_ms", "cold_starts", "requests", "ok",
                "errors", "duration_s", "cold_start_mean_s", "instance_s"):
        out[col] = fmt_ci(_per_strategy(s, strategy, col))
    out["cold_share_pct"] = fmt_ci(_per_strategy(s, strategy, "cold_share"), scale=100.0)
    for name in inp.slo_sets:
        out[f"goodput_{name}_rps"] = fmt_ci(_per_strategy(s, strategy, f"goodput_{name}_rps"))
        out[f"attainment_{name}_pct"] = fmt_ci(
            _per_strategy(s, strategy, f"slo_attainment_{name}"), scale=100.0)
    for col in ("energy_total_j", "energy_above_baseline_j", "energy_per_request_j",
                "energy_per_request_above_baseline_j", "energy_per_output_token_j",
                "energy_per_output_token_above_baseline_j", "mem_gib_h",
                "cost_per_1000_requests_usd", "cold_start_energy_mean_j"):
        out[col] = fmt_ci(_per_strategy(r, strategy, col))
    out["above_baseline_share_pct"] = fmt_ci(_per_strategy(r, strategy, "above_baseline_share"),
                                             scale=100.0)
    idle = inp.phases[(inp.phases["strategy"].astype(str) == strategy)
                      & (inp.phases["phase"] == "idle_loaded")]
    out["idle_loaded_energy_j"] = fmt_ci(pd.to_numeric(idle["energy_j"], errors="coerce"))
    out["idle_loaded_s"] = fmt_ci(pd.to_numeric(idle["duration_s"], errors="coerce"))
    # Share of the replay the instance spent serving: active / (time an instance was held).
    active = inp.phases[(inp.phases["strategy"].astype(str) == strategy)
                        & (inp.phases["phase"] == "active")]
    act = _mean(active["duration_s"])
    held = _mean(_per_strategy(s, strategy, "instance_s"))
    out["busy_share_pct"] = fmt_pct(act / held if held else math.nan)
    m = inp.model[inp.model["strategy"].astype(str) == strategy]
    ttl = _num(m["idle_ttl_s"].iloc[0]) if not m.empty else math.nan
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
            "idle_extra_power_w": fmt(_num(m["idle_loaded_power_w"])
                                      - _num(m["bare_idle_power_w"])),
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
    ref = _num(inp.projection_settings.get("reference_rph"))
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
        rows = [(s, _sweep_at(inp, s, ref)) for s in elastic]
        rows = [(s, r) for s, r in rows if r is not None
                and math.isfinite(_num(r["cost_usd_per_month"]))]
        if ao_row is not None and rows:
            best, best_row = min(rows, key=lambda x: _num(x[1]["cost_usd_per_month"]))
            ratio = _num(ao_row["cost_usd_per_month"]) / _num(best_row["cost_usd_per_month"]) \
                if _num(best_row["cost_usd_per_month"]) > 0 else math.nan
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
    carbon = _num(const.get("carbon_intensity_g_per_kwh", {}).get("value"))
    hours = _num(inp.projection_settings.get("hours_per_day"))
    if m is not None and always:
        idle_kwh_year = (_num(m["idle_loaded_power_w"]) - _num(m["bare_idle_power_w"])) \
            * hours * 365.0 / 1000.0
        idle_total_year = _num(m["idle_loaded_power_w"]) * hours * 365.0 / 1000.0
        estimate = "" if str(m["basis"]) == "measured" else " (estimated power)"
        out["idle_waste"] = (
            f"An instance held idle with the model loaded draws "
            f"{fmt(m['idle_loaded_power_w'])} W{estimate} against {fmt(m['bare_idle_power_w'])} W "
            f"for the idle {facts['device_kind']} without it: over a year of "
            f"{fmt(hours)}-hour days that is {fmt(idle_total_year)} kWh while idle, "
            f"{fmt(idle_kwh_year)} kWh of it attributable to holding the model "
            f"({fmt(idle_kwh_year * carbon / 1000.0)} kg CO2e at {fmt(carbon)} g/kWh).")
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
    tdp_w = _num(tdp.get("value"))
    if math.isfinite(tdp_w) and math.isfinite(hours):
        tdp_kwh = tdp_w * hours * 365.0 / 1000.0
        out["tdp"] = (
            f"For scale: a GPU drawing its full thermal design power of {fmt(tdp_w)} W "
            "(constant gpu_tdp_w, sourced under Setup) through every "
            f"{fmt(hours)}-hour day uses {fmt(tdp_kwh)} kWh a year, "
            f"{fmt(tdp_kwh * carbon / 1000.0)} kg CO2e at {fmt(carbon)} g/kWh.")
    else:
        out["tdp"] = ""
    be = _num(m["break_even_ttl_s"]) if m is not None else math.nan
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
    cold = [(st, _mean(_per_strategy(s, st, "ttft_cold_p50_ms"))) for st in elastic]
    cold = [(st, v) for st, v in cold if math.isfinite(v)]
    warm = [(st, _mean(_per_strategy(s, st, "ttft_warm_p50_ms"))) for st in inp.strategies]
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
            "max_tokens": fmt(_mean(trace["max_tokens"])) if "max_tokens" in trace else NA,
        })
    else:
        workload.update({"requests": fmt(_mean(summary["requests"])), "span_s": NA,
                         "rate_rph": NA, "max_gap_s": NA, "median_gap_s": NA,
                         "max_tokens": NA})
    slo = {name: {"ttft_ms": fmt(v.get("ttft_ms")), "tpot_ms": fmt(v.get("tpot_ms"))}
           for name, v in inp.slo_sets.items()}
    slo_text = "; ".join(
        f"{name}: TTFT <= {fmt(v.get('ttft_ms'))} ms and TPOT <= {fmt(v.get('tpot_ms'))} ms"
        for name, v in inp.slo_sets.items())
    model_bytes = _num(facts.get("model_bytes"))
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
            "duration_s": fmt(_mean(summary["duration_s"])),
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
        "fig": {k: str(v) for k, v in (figure_numbers or {}).items()},
    }
    return variables


# ---------------------------------------------------------------------------------------
# Generated tables


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
        mi = _mean(_per_strategy(inp.summary, st, "min_instances"))
        body.append([st, v["policy"], fmt_int(mi), v["idle_ttl_s"], v["requests"],
                     fmt_int(len(_per_strategy(inp.summary, st, "rep")))])
    return markdown_table(["strategy", "policy", "min instances", "keep-warm TTL (s)",
                           "requests per run", "repeats"], body, ["l", "l", "r", "r", "r", "r"])


def _short(digest: str) -> str:
    """A shortened hash, marked as such ("n/a" stays as it is)."""
    return digest if digest == NA else f"{digest}..."


def _engine_text(facts: Mapping[str, Any]) -> str:
    """What the engine was built with and what ggml says it can use, on this CPU."""
    backends = facts["ggml_backends"]
    used = "; ".join(f"{name}: " + " ".join(k for k, v in features.items() if v == "1")
                     for name, features in backends.items()) or NA
    cpu = " ".join(facts["cpu_features"]) or NA
    flags = " ".join(a.removeprefix("-D") for a in facts["engine_cmake_args"]) or (
        "not recorded (engine not installed by tools/setup-venv.sh)")
    return f"ggml reports {used}; CPU offers {cpu}; build flags {flags}"


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
             ["engine", _engine_text(facts)],
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
        cs = cs[as_bool(cs["in_replay"]) & (cs["outcome"] == "ready")]
    steps = ("spawn_to_runtime_ready_s", "runtime_ready_to_model_loaded_s",
             "model_loaded_to_ready_s", "ready_to_first_token_s", "cold_start_s")
    body = []
    for st in inp.strategies:
        mine = cs[cs["strategy"].astype(str) == st] if not cs.empty else cs
        n = _per_strategy(inp.summary, st, "cold_starts")
        failed = _per_strategy(inp.summary, st, "failed_starts")
        energy = _per_strategy(inp.runs, st, "cold_start_energy_mean_j")
        body.append([st, fmt_ci(n), fmt_ci(failed),
                     *(fmt(_mean(mine[c])) if len(mine) else NA for c in steps),
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
                     fmt_ci(_per_strategy(r, st, "energy_total_j")),
                     fmt_ci(_per_strategy(r, st, "energy_above_baseline_j")),
                     fmt_ci(_per_strategy(r, st, "above_baseline_share"), scale=100.0),
                     fmt_ci(_per_strategy(r, st, "energy_per_request_j")),
                     fmt_ci(_per_strategy(r, st, "energy_per_output_token_j")),
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
        load = _num(row["load"])
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
        peak = fmt_ci(_per_strategy(inp.summary, st, "peak_instance_mem_mib"))
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
        "measured_table.md": measured_table(inp),
        "constants_table.md": constants_table(inp),
        "cold_start_table.md": cold_start_table(inp),
        "energy_table.md": energy_table(inp),
        "projections_table.md": projections_table(inp),
    }


__all__ = [
    "ReportInputs", "build_tables", "build_variables", "collect_inputs", "fmt", "fmt_ci",
    "fmt_pct", "markdown_table", "setup_facts",
]
