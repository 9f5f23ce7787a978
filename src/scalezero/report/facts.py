"""Facts about the setup (from run.json) and what was and was not measured."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from scalezero.analysis.numbers import mean
from scalezero.report.format import NA, fmt


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
        return mean(ctx[seen]), math.nan
    bare = pd.to_numeric(summary["bare_idle_power_w"], errors="coerce")
    return mean(ctx[seen]), mean(bare[seen])


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


def engine_text(facts: Mapping[str, Any]) -> str:
    """What the engine was built with and what ggml says it can use, on this CPU."""
    backends = facts["ggml_backends"]
    used = "; ".join(f"{name}: " + " ".join(k for k, v in features.items() if v == "1")
                     for name, features in backends.items()) or NA
    cpu = " ".join(facts["cpu_features"]) or NA
    flags = " ".join(a.removeprefix("-D") for a in facts["engine_cmake_args"]) or (
        "not recorded (engine not installed by tools/setup-venv.sh)")
    return f"ggml reports {used}; CPU offers {cpu}; build flags {flags}"


__all__ = ["context_power_w", "engine_text", "measured_rows", "setup_facts"]
