"""Summaries of measured runs: one row per strategy and repeat, plus long-format detail.

`summarize_run` reads one run folder (results/runs/<workload>/<strategy>/<rep>/);
`aggregate_workload` writes the per-workload files under results/summary/. Column
meanings live in SUMMARY_COLUMNS (and docs/data.md); `scalezero aggregate --explain`
prints them. Every column is always written, empty where its input is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalezero.analysis import energy as en
from scalezero.analysis import metrics as mx
from scalezero.analysis.numbers import mean, ratio
from scalezero.analysis.runs import read_run_meta, recorded_window, replay_window, write_table
from scalezero.analysis.stats import mean_ci
from scalezero.errors import UserError
from scalezero.serving.strategies import recorded_accounting
from scalezero.system.layout import Layout

LATENCY_PERCENTILES: tuple[int, ...] = (50, 90, 99)
_SLO_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# Columns that identify a run rather than measure it (kept out of the CI file).
_TEXT_COLUMNS = ("workload", "strategy", "policy", "device", "model", "energy_source")
_IDENTITY_NUMERIC = ("keep_warm_ttl_s", "min_instances", "max_instances", "policy_always_on",
                     "policy_idle_ttl_s", "policy_runtime_warm_ttl_s", "rep", "order_index",
                     "energy_uncertainty_pct")

_PHASE_MEANING = {
    "cold_start": "some instance starting (spawn to ready or failure) or waking (wake to "
                  "ready)",
    "active": "an instance up with its model loaded and a request in flight",
    "idle_loaded": "an instance up with its model loaded, no request in flight",
    "runtime_warm": "instances up only runtime-warm (process up, model unloaded: sleep to "
                    "the next wake or stop), none loaded or starting",
    "empty": "no instance up or starting",
}


def summary_columns(
    slo_sets: Mapping[str, Mapping[str, float]] = mx.DEFAULT_SLO_SETS,
) -> dict[str, str]:
    """Summary column -> one-line meaning with unit, in file order, for these SLO sets."""
    c: dict[str, str] = {
        "workload": "workload name",
        "strategy": "strategy name (run folder)",
        "policy": "gateway policy name (run.json policy.name)",
        "keep_warm_ttl_s": "policy keep-warm TTL, s (empty if the policy has none)",
        "min_instances": "policy minimum instances",
        "max_instances": "policy maximum instances",
        "policy_always_on": "the policy holds >= 1 instance at all times (run.json "
                            "policy.accounting)",
        "policy_idle_ttl_s": "how long the policy keeps an idle instance up, s (0: stops it "
                             "at once, inf: never; run.json policy.accounting)",
        "policy_runtime_warm_ttl_s": "how long the policy keeps an instance runtime-warm "
                                     "(model unloaded, process up) after its idle TTL, s "
                                     "(0: no runtime-warm tier, inf: never stops it; "
                                     "run.json policy.accounting)",
        "rep": "repeat number",
        "order_index": "position of this run in the measured sequence",
        "device": "device the instances ran on (run.json device)",
        "model": "model name",
        "duration_s": "replay window length, s",
        "requests": "requests sent",
        "ok": "successful requests (HTTP 200, no error)",
        "errors": "failed requests",
        "cold_starts": "instances spawned inside the replay window",
        "failed_starts": "of those, starts that never became ready",
        "evictions": "idle instances stopped inside the replay window to free memory for "
                     "another deployment (events.csv drain, reason evicted)",
        "host_cached_starts": "of cold_starts, those that began with the weights in the "
                              "host's page cache (events.csv spawn, tier host_cached)",
        "disk_cold_starts": "of cold_starts, those that read the weights from disk "
                            "(events.csv spawn, tier disk_cold)",
        "runtime_warm_wakes": "runtime-warm instances woken (model reloaded, process kept) "
                              "inside the replay window (events.csv wake)",
        "cold_requests": "requests flagged cold by the gateway (any outcome)",
        "cold_share": "cold_requests / requests, 0-1",
    }
    for m, name in (("ttft", "time to first token"), ("e2e", "end-to-end latency")):
        c[f"{m}_mean_ms"] = f"mean {name} of successful requests, ms"
        for subset, which in (("", "successful"), ("cold_", "successful cold"),
                              ("warm_", "successful warm")):
            for q in LATENCY_PERCENTILES:
                c[f"{m}_{subset}p{q}_ms"] = f"p{q} {name} of {which} requests, ms"
    c["tpot_mean_ms"] = "mean time per output token after the first (tokens_out > 1), ms"
    for q in LATENCY_PERCENTILES:
        c[f"tpot_p{q}_ms"] = f"p{q} time per output token (tokens_out > 1), ms"
    for q in LATENCY_PERCENTILES:
        c[f"itl_p{q}_ms"] = f"p{q} of all gaps between consecutive tokens, ms"
    c["send_lag_p99_ms"] = "p99 of send time - scheduled time, all requests, ms"
    c["send_lag_max_ms"] = "largest send time - scheduled time, ms"
    c["output_tokens"] = "output tokens of successful requests"
    c["output_tokens_per_s"] = "output_tokens / duration_s, tokens/s"
    for name, slo in slo_sets.items():
        limits = ", ".join(f"{k.removesuffix('_ms').upper()} <= {v:g} ms"
                           for k, v in slo.items())
        c[f"goodput_{name}_rps"] = f"successful requests meeting {limits}, per s of replay"
        c[f"slo_attainment_{name}"] = f"share of all requests meeting {limits}, 0-1"
    c.update({
        "instance_s": "time with >= 1 instance starting or up in the replay window, s",
        "instance_s_sum": "sum over instances of their starting + up time in the window, s",
        "runtime_warm_instance_s": "of instance_s_sum, the time instances were runtime-warm "
                                   "(process up, model unloaded: events.csv sleep to the "
                                   "next wake, drain or stop), s; the phases count it as "
                                   "runtime_warm",
        "mem_mib_s": "time integral of instance memory over the window, MiB*s",
        "peak_instance_mem_mib": "largest instance memory sample in the window, MiB",
        "mean_mem_used_mib": "time-weighted mean device memory in use in the window, MiB",
        "energy_source": "energy counter used (nvml_counter, rapl, none)",
        "energy_coverage_pct": "share of the replay window covered by counter samples, %",
        "energy_uncertainty_pct": "stated sensor accuracy, % (5 for NVML; empty = unknown)",
        "energy_total_j": "energy over the replay window, J",
        "energy_above_baseline_j": "energy_total_j minus bare-idle power x duration, J",
    })
    for phase in en.PHASES:
        c[f"phase_{phase}_s"] = f"time in phase {phase} ({_PHASE_MEANING[phase]}), s"
        c[f"phase_{phase}_energy_j"] = f"energy in phase {phase}, J"
    c.update({
        "bare_idle_power_w": "mean power over the baseline_bare window (no instance), W",
        "context_idle_power_w": "mean power over the baseline_context window, W",
        "idle_loaded_power_w": "mean power in phase idle_loaded, W",
        "energy_per_request_j": "energy_total_j / ok, J",
        "energy_per_request_above_baseline_j": "energy_above_baseline_j / ok, J",
        "energy_per_output_token_j": "energy_total_j / output_tokens, J",
        "energy_per_output_token_above_baseline_j": "energy_above_baseline_j / output_tokens, J",
        "cold_start_mean_s": "mean spawn -> ready of cold starts in the window, s",
        "spawn_to_runtime_ready_mean_s": "mean spawn -> runtime_ready, s",
        "runtime_ready_to_model_loaded_mean_s": "mean runtime_ready -> model_loaded, s",
        "model_loaded_to_ready_mean_s": "mean model_loaded -> ready, s",
        "ready_to_first_token_mean_s": "mean ready -> first_token, s",
        "cold_start_energy_mean_j": "mean energy of a cold start (spawn -> ready), J",
        "cold_start_above_baseline_mean_j": "mean cold-start energy above bare idle, J",
        "break_even_ttl_s": "cold_start_above_baseline_mean_j / "
                            "(idle_loaded_power_w - bare_idle_power_w), s",
    })
    return c


SUMMARY_COLUMNS: dict[str, str] = summary_columns()

REQUEST_FILE_BASE_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "rep", "request_id", "t_sched_rel_s", "t_send_rel_s", "ok",
    "cold", "status", "error", "instance_id", "tokens_in", "tokens_out", "ttft_ms", "e2e_ms",
    "tpot_ms", "itl_max_ms", "send_lag_ms", "queue_wait_ms",
)
ENERGY_FILE_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "rep", "phase", "duration_s", "energy_j", "mean_power_w",
    "above_baseline_j",
)
COLD_START_FILE_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "rep", "instance_id", "reason", "outcome", "in_replay",
    "t_spawn_rel_s", *en.COLD_START_COLUMNS[5:],
)
CI_FILE_COLUMNS: tuple[str, ...] = (
    "workload", "strategy", "metric", "n", "mean", "sd", "ci95_low", "ci95_high",
)


def count_evictions(events: pd.DataFrame, window: tuple[float, float]) -> int:
    """Drains with reason ``evicted`` inside the window."""
    if events.empty or "reason" not in events.columns:
        return 0
    t_s = events["t_s"].astype(float)
    hit = ((events["event"] == "drain") & (events["reason"].astype(str) == "evicted")
           & (t_s >= window[0]) & (t_s <= window[1]))
    return int(hit.sum())


def request_file_columns(
    slo_sets: Mapping[str, Mapping[str, float]] = mx.DEFAULT_SLO_SETS,
) -> list[str]:
    return [*REQUEST_FILE_BASE_COLUMNS, *(f"meets_{name}" for name in slo_sets)]


# ---------------------------------------------------------------------------------------
# Reading a run folder


@dataclass
class RunData:
    """The files of one run folder; a missing optional file is None."""

    run_dir: Path
    meta: dict[str, Any]
    requests: pd.DataFrame
    tokens: pd.DataFrame | None
    events: pd.DataFrame | None
    telemetry: pd.DataFrame | None


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot parse {path}: {exc}") from exc


def load_run(run_dir: Path) -> RunData:
    """Read run.json and the per-run CSVs of one run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    files = Layout.run_files(run_dir)
    meta = read_run_meta(run_dir, strict=True)
    requests = _read_csv(files["requests"])
    if requests is None:
        raise UserError(f"{run_dir} has no {files['requests'].name}")
    return RunData(
        run_dir=run_dir,
        meta=meta,
        requests=requests,
        tokens=_read_csv(files["tokens"]),
        events=_read_csv(files["events"]),
        telemetry=_read_csv(files["telemetry"]),
    )


def _scalar(value: Any) -> Any:
    return np.nan if value is None else value


def _accounting_columns(policy: Mapping[str, Any]) -> dict[str, Any]:
    """policy_always_on, policy_idle_ttl_s and policy_runtime_warm_ttl_s of run.json's
    policy (empty if unknown)."""
    try:
        accounting = recorded_accounting(policy)
    except UserError:
        return {"policy_always_on": np.nan, "policy_idle_ttl_s": np.nan,
                "policy_runtime_warm_ttl_s": np.nan}
    return {"policy_always_on": accounting.always_on,
            "policy_idle_ttl_s": accounting.idle_ttl_s,
            "policy_runtime_warm_ttl_s": accounting.runtime_warm_ttl_s}


# ---------------------------------------------------------------------------------------
# One run


@dataclass
class RunSummary:
    """One run: its summary row, per-request metrics, per-phase energy, cold starts
    and the phase timeline (None without events.csv)."""

    row: dict[str, Any]
    requests: pd.DataFrame
    energy: pd.DataFrame
    cold_starts: pd.DataFrame
    timeline: pd.DataFrame | None


def summarize_run(
    run_dir: Path,
    slo_sets: Mapping[str, Mapping[str, float]] = mx.DEFAULT_SLO_SETS,
) -> RunSummary:
    """Summarize one run folder (see SUMMARY_COLUMNS for the row)."""
    data = load_run(run_dir)
    meta = data.meta
    run_dir = Path(run_dir)
    window = replay_window(data.meta, data.requests, data.run_dir)
    w0, w1 = window
    duration_s = w1 - w0
    policy = meta.get("policy") or {}
    model = meta.get("model")
    rep_value = meta.get("rep", run_dir.name)
    try:
        rep: Any = int(rep_value)
    except (TypeError, ValueError):
        rep = rep_value

    row: dict[str, Any] = dict.fromkeys(summary_columns(slo_sets), np.nan)
    row.update({
        # `scalezero run` outside the workflow may leave these empty: the folder names them.
        "workload": meta.get("workload") or Layout.parse_run_dir(run_dir).workload,
        "strategy": meta.get("strategy") or Layout.parse_run_dir(run_dir).strategy,
        "policy": policy.get("name", np.nan),
        "keep_warm_ttl_s": _scalar(policy.get("keep_warm_ttl_s")),
        "min_instances": _scalar(policy.get("min_instances")),
        "max_instances": _scalar(policy.get("max_instances")),
        **_accounting_columns(policy),
        "rep": rep,
        "order_index": _scalar(meta.get("order_index")),
        "device": _scalar(meta.get("device")),
        "model": _scalar(model.get("name") if isinstance(model, Mapping) else model),
        "duration_s": duration_s,
    })

    # Latency
    req = mx.request_metrics(data.requests, data.tokens)
    ok = req["ok"]
    good = req[ok]
    cold = good[good["cold"]]
    warm = good[~good["cold"]]
    row.update({
        "requests": len(req),
        "ok": int(ok.sum()),
        "errors": int((~ok).sum()),
        "cold_requests": int(req["cold"].sum()),
        "cold_share": ratio(float(req["cold"].sum()), len(req)),
    })
    for m in ("ttft", "e2e"):
        row[f"{m}_mean_ms"] = mean(good[f"{m}_ms"])
        for prefix, frame in (("", good), ("cold_", cold), ("warm_", warm)):
            for q, v in mx.percentiles(frame[f"{m}_ms"], LATENCY_PERCENTILES).items():
                row[f"{m}_{prefix}p{q}_ms"] = v
    row["tpot_mean_ms"] = mean(good["tpot_ms"])
    for q, v in mx.percentiles(good["tpot_ms"], LATENCY_PERCENTILES).items():
        row[f"tpot_p{q}_ms"] = v
    if data.tokens is not None:
        itl = mx.itl_ms(data.tokens, good["request_id"].dropna())
        for q, v in mx.percentiles(itl, LATENCY_PERCENTILES).items():
            row[f"itl_p{q}_ms"] = v
    row["send_lag_p99_ms"] = mx.percentiles(req["send_lag_ms"], (99,))[99]
    lag = req["send_lag_ms"].dropna()
    row["send_lag_max_ms"] = float(lag.max()) if not lag.empty else math.nan
    output_tokens = float(good["tokens_out"].fillna(0).sum())
    row["output_tokens"] = output_tokens
    row["output_tokens_per_s"] = ratio(output_tokens, duration_s)
    for name, g in mx.goodput(req, duration_s, slo_sets).items():
        row[f"goodput_{name}_rps"] = g.goodput_rps
        row[f"slo_attainment_{name}"] = g.attainment

    # Instances, phases and memory
    has_events = data.events is not None
    spans = en.instance_spans(data.events) if has_events else en.instance_spans(None)
    timeline = (en.phase_timeline(spans, data.requests, window, data.events) if has_events
                else None)
    if has_events:
        row["instance_s"], row["instance_s_sum"] = en.instance_seconds(spans, window)
        row["runtime_warm_instance_s"] = en.runtime_warm_seconds(data.events, window)
    row.update(en.memory_stats(data.telemetry, window))

    # Energy
    meter = en.energy_meter(data.telemetry)
    covered_s = float(meter.covered_s(w0, w1))
    source = meter.source
    if meter.available and covered_s <= 0:
        meter = en.EnergyMeter([], "none")  # the counter never saw the replay
    bare_w = meter.mean_power_w(recorded_window(meta, "baseline_bare"))
    row["energy_source"] = source
    row["energy_uncertainty_pct"] = en.energy_uncertainty_pct(source)
    phases = en.phase_energy(timeline, meter, bare_w)
    if meter.available:
        total_j = float(meter.energy_j(w0, w1))
        above_j = total_j - bare_w * covered_s
        row.update({
            "energy_coverage_pct": 100.0 * covered_s / duration_s,
            "energy_total_j": total_j,
            "energy_above_baseline_j": above_j,
            "bare_idle_power_w": bare_w,
            "context_idle_power_w": meter.mean_power_w(recorded_window(meta, "baseline_context")),
            "energy_per_request_j": ratio(total_j, row["ok"]),
            "energy_per_request_above_baseline_j": ratio(above_j, row["ok"]),
            "energy_per_output_token_j": ratio(total_j, output_tokens),
            "energy_per_output_token_above_baseline_j": ratio(above_j, output_tokens),
        })
    by_phase = phases.set_index("phase")
    for phase in en.PHASES:
        row[f"phase_{phase}_s"] = by_phase.at[phase, "duration_s"]
        row[f"phase_{phase}_energy_j"] = by_phase.at[phase, "energy_j"]
    row["idle_loaded_power_w"] = by_phase.at["idle_loaded", "mean_power_w"]

    # Cold starts
    starts = en.cold_starts(spans, meter, bare_w, window)
    if has_events:
        in_replay = starts[starts["in_replay"]]
        row["cold_starts"] = len(in_replay)
        row["failed_starts"] = int((in_replay["outcome"] != "ready").sum())
        row["evictions"] = count_evictions(data.events, window)
        row.update(en.start_tier_counts(data.events, window))
        done = in_replay[in_replay["outcome"] == "ready"]
        row["cold_start_mean_s"] = mean(done["cold_start_s"])
        for column in ("spawn_to_runtime_ready_s", "runtime_ready_to_model_loaded_s",
                       "model_loaded_to_ready_s", "ready_to_first_token_s"):
            row[column.removesuffix("_s") + "_mean_s"] = mean(done[column])
        row["cold_start_energy_mean_j"] = mean(done["energy_j"])
        row["cold_start_above_baseline_mean_j"] = mean(done["above_baseline_j"])
        row["break_even_ttl_s"] = en.break_even_ttl_s(
            row["cold_start_above_baseline_mean_j"], row["idle_loaded_power_w"], bare_w
        )

    # Detail frames, labelled with the run.
    labels = {"workload": row["workload"], "strategy": row["strategy"], "rep": rep}
    req_out = req.assign(**labels)
    req_out["t_sched_rel_s"] = req["t_sched_s"] - w0
    req_out["t_send_rel_s"] = req["t_send_s"] - w0
    for name, slo in slo_sets.items():
        req_out[f"meets_{name}"] = mx.meets_slo(req, slo.get("ttft_ms"), slo.get("tpot_ms"))
    req_out = req_out[request_file_columns(slo_sets)]
    energy_out = phases.assign(**labels)[list(ENERGY_FILE_COLUMNS)]
    starts_out = starts.assign(**labels)
    starts_out["t_spawn_rel_s"] = starts["t_spawn_s"] - w0
    starts_out = starts_out[list(COLD_START_FILE_COLUMNS)]
    return RunSummary(row=row, requests=req_out, energy=energy_out, cold_starts=starts_out,
                      timeline=timeline)


# ---------------------------------------------------------------------------------------
# One workload


def validate_slo_sets(slo_sets: Any) -> dict[str, dict[str, float]]:
    """Check `{name: {ttft_ms: .., tpot_ms: ..}}` (either limit may be left out)."""
    if not isinstance(slo_sets, Mapping) or not slo_sets:
        raise UserError("slo_sets must be a non-empty mapping {name: {ttft_ms, tpot_ms}}")
    out: dict[str, dict[str, float]] = {}
    for name, slo in slo_sets.items():
        if not isinstance(name, str) or not _SLO_NAME.match(name):
            raise UserError(f"SLO set name {name!r}: use lower-case letters, digits and _")
        if not isinstance(slo, Mapping) or not slo or set(slo) - {"ttft_ms", "tpot_ms"}:
            raise UserError(f"SLO set {name!r}: give ttft_ms and/or tpot_ms only")
        try:
            limits = {k: float(v) for k, v in slo.items()}
        except (TypeError, ValueError) as exc:
            raise UserError(f"SLO set {name!r}: limits must be numbers") from exc
        if any(not v > 0 for v in limits.values()):
            raise UserError(f"SLO set {name!r}: limits must be positive")
        out[name] = limits
    return out


def _ci_frame(summary: pd.DataFrame, workload: str, columns: Sequence[str]) -> pd.DataFrame:
    metrics = [c for c in columns if c not in _TEXT_COLUMNS and c not in _IDENTITY_NUMERIC]
    rows = []
    for strategy, group in summary.groupby("strategy", sort=True):
        for metric in metrics:
            ci = mean_ci(pd.to_numeric(group[metric], errors="coerce"))
            rows.append([workload, strategy, metric, ci.n, ci.mean, ci.sd, ci.low, ci.high])
    return pd.DataFrame(rows, columns=list(CI_FILE_COLUMNS))




def aggregate_workload(
    run_dirs: Sequence[Path],
    out_dir: Path,
    workload: str,
    slo_sets: Mapping[str, Mapping[str, float]] = mx.DEFAULT_SLO_SETS,
) -> dict[str, Path]:
    """Summarize the runs of one workload and write its summary files into out_dir.

    Returns the written paths under the keys summary, ci, requests, energy and
    cold_starts (files <workload>.csv, _ci.csv, _requests.csv, _energy.csv,
    _cold_starts.csv).
    """
    slo_sets = validate_slo_sets(slo_sets)
    if not run_dirs:
        raise UserError("no run folders given")
    summaries = [summarize_run(Path(d), slo_sets) for d in run_dirs]
    seen: dict[tuple[str, Any], Path] = {}
    for d, s in zip(run_dirs, summaries, strict=True):
        if s.row["workload"] != workload:
            raise UserError(f"{d} belongs to workload {s.row['workload']!r}, not {workload!r}")
        key = (str(s.row["strategy"]), s.row["rep"])
        if key in seen:
            raise UserError(f"{d} and {seen[key]} are both {key[0]} repeat {key[1]}")
        seen[key] = Path(d)
    summaries.sort(key=lambda s: (str(s.row["strategy"]), str(s.row["rep"]).zfill(12)))

    columns = list(summary_columns(slo_sets))
    summary = pd.DataFrame([s.row for s in summaries], columns=columns)
    requests = pd.concat([s.requests for s in summaries], ignore_index=True)
    energy = pd.concat([s.energy for s in summaries], ignore_index=True)
    starts = pd.concat([s.cold_starts for s in summaries], ignore_index=True)
    # Frames are already in run order; order within a run by request / time.
    requests = requests.sort_values(["request_id"], kind="mergesort")
    requests["_run"] = requests["strategy"].astype(str) + "\0" + \
        requests["rep"].astype(str).str.zfill(12)
    requests = requests.sort_values("_run", kind="mergesort").drop(columns="_run")
    starts = starts.sort_values(["t_spawn_rel_s", "instance_id"], kind="mergesort")
    starts["_run"] = starts["strategy"].astype(str) + "\0" + \
        starts["rep"].astype(str).str.zfill(12)
    starts = starts.sort_values("_run", kind="mergesort").drop(columns="_run")

    paths = Layout.summary_files_in(out_dir, workload)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return {
        "summary": write_table(summary, paths["summary"]),
        "ci": write_table(_ci_frame(summary, workload, columns), paths["ci"]),
        "requests": write_table(requests[request_file_columns(slo_sets)], paths["requests"]),
        "energy": write_table(energy[list(ENERGY_FILE_COLUMNS)], paths["energy"]),
        "cold_starts": write_table(starts[list(COLD_START_FILE_COLUMNS)], paths["cold_starts"]),
    }


# ---------------------------------------------------------------------------------------
# Command line


def _parse_slo_json(text: str | None) -> dict[str, dict[str, float]]:
    if text is None:
        return {k: dict(v) for k, v in mx.DEFAULT_SLO_SETS.items()}
    path = Path(text)
    if not text.lstrip().startswith("{") and path.is_file():
        text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--slo-json is not valid JSON: {exc}") from exc
    return validate_slo_sets(value)


def _run_cli(args: argparse.Namespace) -> int:
    slo_sets = _parse_slo_json(args.slo_json)
    if args.explain:
        columns = summary_columns(slo_sets)
        width = max(len(c) for c in columns)
        for column, meaning in columns.items():
            print(f"{column:<{width}}  {meaning}")
        return 0
    if not args.run_dirs:
        raise UserError("give at least one RUN_DIR (or --explain)")
    if not args.workload or not args.out_dir:
        raise UserError("--workload and --out-dir are required")
    paths = aggregate_workload([Path(d) for d in args.run_dirs], Path(args.out_dir),
                               args.workload, slo_sets)
    for path in paths.values():
        print(path)
    return 0


def add_cli(subparsers: Any) -> None:
    """Add `scalezero aggregate RUN_DIR... --workload NAME --out-dir DIR`."""
    parser = subparsers.add_parser(
        "aggregate",
        help="summarize measured runs of one workload",
        description="Summarize run folders (results/runs/<workload>/<strategy>/<rep>/) into "
        "<workload>.csv, <workload>_ci.csv, <workload>_requests.csv, "
        "<workload>_energy.csv and <workload>_cold_starts.csv.",
    )
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders")
    parser.add_argument("--workload", help="workload name (checked against run.json)")
    parser.add_argument("--out-dir", help="folder for the summary files")
    parser.add_argument(
        "--slo-json",
        help='SLO sets as JSON (or a JSON file), e.g. \'{"strict": {"ttft_ms": 500, '
        '"tpot_ms": 30}}\'; default: MLPerf llama3.1-8b standard and interactive',
    )
    parser.add_argument("--explain", action="store_true",
                        help="print every summary column with its meaning and exit")
    parser.set_defaults(func=_run_cli)
