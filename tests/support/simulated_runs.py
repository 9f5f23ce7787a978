"""Synthetic measured runs of three strategies, for the projection, figure and report tests.

A tiny event simulation of one instance behind the gateway: cold starts take
COLD_START_S (spawn -> runtime_ready -> model_loaded -> ready), requests are served one
at a time in SERVICE_S, and the policy decides when the instance stops. Power is
piecewise constant by state (bare idle, starting, idle loaded, active), so the energy
counter is exact; `gpu=False` writes a host-telemetry run with no energy counter
(energy_source none), as on a CPU-only machine without readable RAPL.

Also holds two self-checks of the simulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from run_fixtures import counter_mj, event_row, request_row, write_run

from scalezero.analysis.aggregate import aggregate_workload

WORKLOAD = "demo"
STRATEGIES = ("always_on", "naive", "keep_warm")
T0 = 1000.0  # monotonic time of the replay start
COLD_PHASES_S = (0.3, 0.8, 0.4)  # spawn -> runtime_ready -> model_loaded -> ready
COLD_START_S = sum(COLD_PHASES_S)
TTFT_WARM_S = 0.12
SERVICE_S = 0.6
TOKENS_OUT = 8
TTL_S = 8.0
POWER_W = {"bare": 20.0, "starting": 45.0, "idle": 30.0, "active": 60.0}
MEM_MIB = 1500.0
RATE_HZ = 5.0


def arrivals(rep: int) -> list[float]:
    """Three bursts of three requests, 25 s apart (longer than the keep-warm TTL)."""
    return [b * 25.0 + k * 1.5 + 0.1 * rep for b in range(3) for k in range(3)]


def _policy(strategy: str) -> dict[str, Any]:
    if strategy == "always_on":
        return {"name": "always_on", "min_instances": 1, "max_instances": 1}
    if strategy == "naive":
        return {"name": "naive", "min_instances": 0, "max_instances": 1}
    return {"name": "keep_warm", "min_instances": 0, "max_instances": 1,
            "keep_warm_ttl_s": TTL_S}


def simulate(strategy: str, times: Sequence[float]) -> tuple[list[dict], list[dict], float]:
    """Instances [{id, spawn, ready, stop}] and requests of one run, and the replay end."""
    instances: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    busy_until = -np.inf
    if strategy == "always_on":
        current = {"id": "i1", "spawn": -8.0, "ready": -8.0 + COLD_START_S, "stop": None,
                   "reason": "min_instances", "first": None}
        instances.append(current)
    for k, t in enumerate(times):
        if current is not None and current["stop"] is not None and t >= current["stop"]:
            current = None
        cold = False
        if current is None:
            current = {"id": f"i{len(instances) + 1}", "spawn": t, "ready": t + COLD_START_S,
                       "stop": None, "reason": "on_demand", "first": None}
            instances.append(current)
        if t < current["ready"]:
            cold = True
        start = max(t, current["ready"], busy_until)
        first, end = start + TTFT_WARM_S, start + SERVICE_S
        if current["first"] is None and current["reason"] == "on_demand":
            current["first"] = first
        busy_until = end
        if strategy == "naive":
            current["stop"] = end + 0.05
        elif strategy == "keep_warm":
            current["stop"] = end + TTL_S
        requests.append({"k": k, "t": t, "first": first, "end": end, "cold": cold,
                         "instance": current["id"]})
    replay_end = max(r["end"] for r in requests) + 1.0
    for inst in instances:
        if inst["stop"] is None or inst["stop"] > replay_end + 0.5:
            inst["stop"] = replay_end + 0.5  # the gateway's shutdown after the replay
    return instances, requests, replay_end


def _telemetry(instances: list[dict], requests: list[dict], t_end: float,
               gpu: bool) -> pd.DataFrame:
    t = np.arange(-16.0, t_end + 2.0, 1.0 / RATE_HZ)
    segments = []
    for inst in instances:  # later segments override earlier ones
        segments.append((T0 + inst["ready"], T0 + inst["stop"], POWER_W["idle"]))
    for r in requests:
        segments.append((T0 + max(r["t"], r["end"] - SERVICE_S), T0 + r["end"],
                         POWER_W["active"]))
    for inst in instances:
        segments.append((T0 + inst["spawn"], T0 + inst["ready"], POWER_W["starting"]))
    alive = np.zeros(len(t), dtype=int)
    starting = np.zeros(len(t), dtype=bool)
    for inst in instances:
        alive += (t >= inst["spawn"]) & (t < inst["stop"])
        starting |= (t >= inst["spawn"]) & (t < inst["ready"])
    active = np.zeros(len(t), dtype=bool)
    for r in requests:
        active |= (t >= r["end"] - SERVICE_S) & (t < r["end"])
    power = np.full(len(t), POWER_W["bare"])
    power[alive > 0] = POWER_W["idle"]
    power[active] = POWER_W["active"]
    power[starting] = POWER_W["starting"]
    cpu = np.where(starting, 150.0, np.where(active, 100.0, np.where(alive > 0, 1.0, 0.0)))
    mem = np.where(alive > 0, MEM_MIB if gpu else 180.0, np.nan)
    mono = T0 + t
    return pd.DataFrame({
        "t_s": mono,
        "device": "gpu0" if gpu else "host",
        "energy_source": "nvml_counter" if gpu else "none",
        "energy_mj": counter_mj(mono, segments, POWER_W["bare"]) if gpu else np.nan,
        "power_w": power if gpu else np.nan,
        "power_source": "nvml_instant" if gpu else "none",
        "mem_used_mib": 500.0 + np.nan_to_num(mem),
        "mem_total_mib": 24000.0,
        "instance_mem_mib": mem,
        "instance_rss_mib": np.where(alive > 0, 180.0, np.nan),
        "instance_cpu_pct": cpu,
        "n_instances": alive,
        "util_pct": np.where(active, 90.0, 0.0),
        "mem_util_pct": np.nan,
        "pstate": np.where(alive > 0, 0, 8) if gpu else np.nan,
        "sm_clock_mhz": np.nan,
        "host_cpu_pct": cpu / 2.0,
    })


def _meta(strategy: str, rep: int, t_end: float, gpu: bool, workload: str) -> dict:
    device_info: dict[str, Any]
    if gpu:
        device_info = {"backend": "nvml", "device": "gpu0", "name": "NVIDIA L4",
                       "driver_version": "550.54.15", "cuda_driver_version": "12.4",
                       "memory_total_mib": 23034.0, "power_limit_w": 72.0,
                       "persistence_mode": True, "energy_source": "nvml_counter",
                       "power_source": "nvml_instant", "unsupported_queries": []}
    else:
        device_info = {"backend": "host", "device": "host", "nvml_available": False,
                       "nvml_error": "NVML Shared Library Not Found",
                       "energy_source": "none", "power_source": "none", "rapl_zones": [],
                       "note": "no NVML and no readable RAPL counter: energy is not "
                               "measured"}
    device_info["host"] = {"cpu_model": "Test CPU @ 2.0GHz", "logical_cpus": 4,
                           "ram_total_mib": 16000.0}
    return {
        "workload": workload, "strategy": strategy, "rep": rep,
        "order_index": (rep - 1) * 3 + STRATEGIES.index(strategy),
        "policy": _policy(strategy), "device": "cuda" if gpu else "cpu", "gpu_index": 0,
        "config_sha256": "c0ffee", "seed": 42, "status": "ok",
        "started_at": "2026-11-25T12:00:00+00:00", "ended_at": "2026-11-25T12:02:00+00:00",
        "clock": {"mono_s": T0, "wall_iso": "2026-11-25T12:00:20+00:00"},
        "windows": {"baseline_bare": [T0 - 15.0, T0 - 10.0], "baseline_context": None,
                    "replay": [T0, T0 + t_end]},
        "env": {"hostname": "test", "os": "Linux-6.1-x86_64", "python": "3.11.9",
                "cpu_count": 4, "cpu_model": "Test CPU @ 2.0GHz",
                "memory_total_mib": 16000, "scalezero": "0.1.0",
                "llama_cpp_python": "0.3.36", "llama_cpp_gpu_offload": gpu,
                "git_commit": "0123456789abcdef"},
        "model": {"name": "smollm2-135m", "path": "resources/models/smollm2-135m.gguf",
                  "bytes": 98362432, "sha256": "b179c952" + "0" * 56},
        "telemetry": {"rate_hz": RATE_HZ, "requested_backend": "auto",
                      "backend": device_info["backend"], "device_info": device_info},
    }


def make_run(root: Path, strategy: str, rep: int, *, gpu: bool = True,
             workload: str = WORKLOAD) -> Path:
    """Write one run folder under root/<workload>/<strategy>/<rep>."""
    instances, reqs, t_end = simulate(strategy, arrivals(rep))
    events: list[dict[str, Any]] = []
    for inst in instances:
        s = inst["spawn"]
        marks = np.cumsum([0.0, *COLD_PHASES_S])
        for name, dt in zip(("spawn", "runtime_ready", "model_loaded", "ready"), marks,
                            strict=True):
            events.append(event_row(T0 + s + dt, inst["id"], name,
                                    inst["reason"] if name == "spawn" else ""))
        if inst["first"] is not None:
            events.append(event_row(T0 + inst["first"], inst["id"], "first_token"))
        reason = "shutdown" if strategy == "always_on" else "idle_ttl"
        events.append(event_row(T0 + inst["stop"] - 0.05, inst["id"], "drain", reason))
        events.append(event_row(T0 + inst["stop"], inst["id"], "stopped", reason))
    requests, tokens = [], []
    for r in reqs:
        requests.append(request_row(r["k"], T0 + r["t"], T0 + r["t"], T0 + r["first"],
                                    T0 + r["end"], TOKENS_OUT, cold=r["cold"],
                                    instance_id=r["instance"]))
        step = (r["end"] - r["first"]) / (TOKENS_OUT - 1)
        tokens += [{"request_id": r["k"], "token_index": j, "t_s": T0 + r["first"] + j * step}
                   for j in range(TOKENS_OUT)]
    return write_run(Path(root) / workload / strategy / str(rep),
                     meta=_meta(strategy, rep, t_end, gpu, workload), requests=requests,
                     events=events, telemetry=_telemetry(instances, reqs, t_end, gpu),
                     tokens=tokens)


def make_trace(path: Path, rep: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"request_id": range(len(arrivals(rep))), "t_sched_s": arrivals(rep),
                  "max_tokens": TOKENS_OUT, "prompt": "Tell me about serverless GPUs."}
                 ).to_csv(path, index=False)
    return path


def make_results(root: Path, *, gpu: bool = True, reps: int = 2,
                 workload: str = WORKLOAD) -> dict[str, Any]:
    """A results/ tree: runs, trace and the aggregate step's summary files."""
    root = Path(root)
    run_dirs = [make_run(root / "runs", s, rep, gpu=gpu, workload=workload)
                for rep in range(1, reps + 1) for s in STRATEGIES]
    trace = make_trace(root / "traces" / f"{workload}.csv")
    summary = aggregate_workload(run_dirs, root / "summary", workload)
    return {"run_dirs": run_dirs, "trace": trace, "summary": summary, "root": root}
