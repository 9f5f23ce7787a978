"""Hand-written runs of three strategies whose every number is chosen, for value tests.

Unlike the simulation in simulated_runs, nothing here is computed by a model of
the gateway: each strategy's instances (spawn, phase marks, first token, stop) and
requests (send time, TTFT, E2E) are listed below, and its power levels, memory and bare
idle power differ from the other strategies', so that a number reported under the wrong
strategy, or pooled across strategies, cannot match. The tests derive their expected
values from these lists by hand.

All times are seconds after the replay start T0 and fall on the 10 Hz telemetry grid
(whole deciseconds), so the energy counter, which is the exact integral of the
piecewise-constant power at each sample, makes every phase energy exact; latencies
(TTFT, E2E) need not be on the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from run_fixtures import counter_mj, event_row, request_row, write_run

from scalezero.analysis.aggregate import aggregate_workload

WORKLOAD = "values"
T0 = 5000.0  # monotonic time of the replay start
DURATION_S = 20.0  # replay window [T0, T0 + DURATION_S]
RATE_HZ = 10.0
TICKS_PER_S = 10  # telemetry samples per second: times are whole ticks
TOKENS_OUT = 5
BASELINE_BARE = (-16.0, -12.0)  # no process: bare idle
BASELINE_CONTEXT = (-11.5, -9.5)  # the context probe: a runtime, no weights
PRICE_USD_PER_H = 3.6  # so that cost (USD) = instance seconds / 1000
TRAFFIC_RPH = (6.0, 60.0, 600.0)
CONFIG: dict[str, Any] = {
    "constants": {"gpu_hour_price_usd": {"value": PRICE_USD_PER_H, "unit": "USD/h",
                                         "source": "test", "date": "2026"}},
    "projections": {"traffic_rph": list(TRAFFIC_RPH), "hours_per_day": 24,
                    "reference_rph": 60},
}


@dataclass(frozen=True)
class Instance:
    id: str
    spawn: float
    phases: tuple[float, float, float]  # spawn->runtime_ready->model_loaded->ready, s
    stop: float
    first_token: float | None = None
    reason: str = "on_demand"

    @property
    def ready(self) -> float:
        return self.spawn + sum(self.phases)


@dataclass(frozen=True)
class Request:
    send: float
    ttft_ms: float
    e2e_ms: float
    cold: bool
    instance: str

    @property
    def end(self) -> float:
        return self.send + self.e2e_ms / 1000.0


@dataclass(frozen=True)
class Strategy:
    policy: dict[str, Any]
    power_w: dict[str, float]  # bare, context, starting, idle, active
    mem_mib: float
    instances: tuple[Instance, ...]
    requests: tuple[Request, ...]
    extra: dict[str, Any] = field(default_factory=dict)


STRATEGIES: dict[str, Strategy] = {
    # Up before the replay and through all of it: no cold start in the window.
    "always_on": Strategy(
        policy={"name": "always_on", "min_instances": 1, "max_instances": 1},
        power_w={"bare": 20.0, "context": 24.0, "starting": 40.0, "idle": 28.0,
                 "active": 60.0},
        mem_mib=1000.0,
        instances=(Instance("a1", -8.0, (0.5, 1.5, 1.0), stop=21.0,
                            reason="min_instances"),),
        requests=(Request(2.0, 40.0, 400.0, False, "a1"),
                  Request(6.0, 52.0, 500.0, False, "a1"),
                  Request(10.0, 64.0, 600.0, False, "a1")),
    ),
    # One instance per request, stopped 0.2 s after its answer: every request cold.
    "naive": Strategy(
        policy={"name": "naive", "min_instances": 0, "max_instances": 1},
        power_w={"bare": 21.0, "context": 25.0, "starting": 45.0, "idle": 33.0,
                 "active": 70.0},
        mem_mib=1200.0,
        instances=(Instance("n1", 1.0, (0.3, 0.9, 0.3), stop=3.2, first_token=2.7),
                   Instance("n2", 7.0, (0.3, 0.9, 0.3), stop=9.3, first_token=8.8),
                   Instance("n3", 13.0, (0.3, 0.9, 0.3), stop=15.9, first_token=14.9)),
        requests=(Request(1.0, 1700.0, 2000.0, True, "n1"),
                  Request(7.0, 1800.0, 2100.0, True, "n2"),
                  Request(13.0, 1900.0, 2700.0, True, "n3")),
    ),
    # Kept up 3 s after the last answer: two cold starts, three warm requests.
    "keep_warm": Strategy(
        policy={"name": "keep_warm", "min_instances": 0, "max_instances": 1,
                "keep_warm_ttl_s": 3.0},
        power_w={"bare": 22.0, "context": 26.0, "starting": 50.0, "idle": 35.0,
                 "active": 75.0},
        mem_mib=1100.0,
        instances=(Instance("k1", 1.0, (0.2, 0.6, 0.2), stop=6.4, first_token=2.1),
                   Instance("k2", 10.0, (0.2, 0.6, 0.2), stop=17.7, first_token=11.2)),
        requests=(Request(1.0, 1100.0, 1400.0, True, "k1"),
                  Request(3.0, 80.0, 400.0, False, "k1"),
                  Request(10.0, 1200.0, 1800.0, True, "k2"),
                  Request(12.0, 96.0, 500.0, False, "k2"),
                  Request(14.0, 100.0, 700.0, False, "k2")),
    ),
}


def _tick(t_s: float) -> int:
    return round(t_s * TICKS_PER_S)


def _events(spec: Strategy) -> list[dict[str, Any]]:
    rows = []
    for inst in spec.instances:
        t = inst.spawn
        rows.append(event_row(T0 + t, inst.id, "spawn", inst.reason))
        for name, dt in zip(("runtime_ready", "model_loaded", "ready"), inst.phases,
                            strict=True):
            t += dt
            rows.append(event_row(T0 + t, inst.id, name))
        if inst.first_token is not None:
            rows.append(event_row(T0 + inst.first_token, inst.id, "first_token"))
        reason = "shutdown" if inst.reason == "min_instances" else "idle_ttl"
        rows.append(event_row(T0 + inst.stop - 0.05, inst.id, "drain", reason))
        rows.append(event_row(T0 + inst.stop, inst.id, "stopped", reason))
    return rows


def _telemetry(spec: Strategy, *, gpu: bool, context: bool) -> pd.DataFrame:
    ticks = np.arange(_tick(-20.0), _tick(DURATION_S + 2.0) + 1)
    t = ticks / TICKS_PER_S
    p = spec.power_w
    # Later segments override earlier ones: context < idle < active < starting.
    segments: list[tuple[float, float, float]] = []
    if context:
        segments.append((T0 + BASELINE_CONTEXT[0], T0 + BASELINE_CONTEXT[1], p["context"]))
    by_id = {inst.id: inst for inst in spec.instances}
    for inst in spec.instances:
        segments.append((T0 + inst.ready, T0 + inst.stop, p["idle"]))
    for r in spec.requests:
        ready = by_id[r.instance].ready
        segments.append((T0 + max(r.send, ready), T0 + r.end, p["active"]))
    for inst in spec.instances:
        segments.append((T0 + inst.spawn, T0 + inst.ready, p["starting"]))
    alive = np.zeros(len(ticks), dtype=int)
    for inst in spec.instances:
        alive += (ticks >= _tick(inst.spawn)) & (ticks < _tick(inst.stop))
    mono = T0 + t
    mem = np.where(alive > 0, spec.mem_mib, np.nan)
    return pd.DataFrame({
        "t_s": mono,
        "device": "gpu0" if gpu else "host",
        "energy_source": "nvml_counter" if gpu else "none",
        "energy_mj": counter_mj(mono, segments, p["bare"]) if gpu else np.nan,
        "power_w": np.nan,
        "power_source": "none",
        "mem_used_mib": 500.0 + np.nan_to_num(mem),
        "mem_total_mib": 24000.0,
        "instance_mem_mib": mem,
        "instance_rss_mib": np.where(alive > 0, 300.0, np.nan),
        "instance_cpu_pct": np.where(alive > 0, 50.0, 0.0),
        "n_instances": alive,
        "util_pct": np.nan,
        "mem_util_pct": np.nan,
        "pstate": np.nan,
        "sm_clock_mhz": np.nan,
        "host_cpu_pct": np.nan,
    })


def _meta(name: str, spec: Strategy, *, gpu: bool, context: bool) -> dict[str, Any]:
    if gpu:
        device_info: dict[str, Any] = {
            "backend": "nvml", "device": "gpu0", "name": "NVIDIA L4",
            "driver_version": "550.54.15", "cuda_driver_version": "12.4",
            "memory_total_mib": 23034.0, "power_limit_w": 72.0, "persistence_mode": True,
            "energy_source": "nvml_counter", "power_source": "none",
            "unsupported_queries": []}
    else:
        device_info = {"backend": "host", "device": "host", "nvml_available": False,
                       "nvml_error": "NVML Shared Library Not Found",
                       "energy_source": "none", "power_source": "none", "rapl_zones": [],
                       "note": "no NVML and no readable RAPL counter: energy is not "
                               "measured"}
    device_info["host"] = {"cpu_model": "Test CPU", "logical_cpus": 8}
    return {
        "workload": WORKLOAD, "strategy": name, "rep": 1,
        "order_index": list(STRATEGIES).index(name), "policy": spec.policy,
        "device": "cuda" if gpu else "cpu", "config_sha256": "feed", "seed": 7,
        "status": "ok", "started_at": "2026-12-01T10:00:00+00:00",
        "ended_at": "2026-12-01T10:01:00+00:00",
        "windows": {
            "baseline_bare": [T0 + BASELINE_BARE[0], T0 + BASELINE_BARE[1]],
            "baseline_context": ([T0 + BASELINE_CONTEXT[0], T0 + BASELINE_CONTEXT[1]]
                                 if context else None),
            "replay": [T0, T0 + DURATION_S]},
        "env": {"cpu_count": 8, "cpu_model": "Test CPU", "os": "Linux",
                "python": "3.11", "llama_cpp_python": "0.3", "git_commit": "abc"},
        "model": {"name": "tiny", "path": "tiny.gguf", "bytes": 1048576,
                  "sha256": "ab" * 32},
        "telemetry": {"rate_hz": RATE_HZ, "backend": device_info["backend"],
                      "device_info": device_info},
    }


def make_run(root: Path, name: str, *, gpu: bool = True, context: bool = True) -> Path:
    """Write the run folder of strategy `name` under root/<workload>/<name>/1."""
    spec = STRATEGIES[name]
    requests, tokens = [], []
    for k, r in enumerate(spec.requests):
        first = r.send + r.ttft_ms / 1000.0
        requests.append(request_row(k, T0 + r.send, T0 + r.send, T0 + first, T0 + r.end,
                                    TOKENS_OUT, cold=r.cold, instance_id=r.instance))
        step = (r.end - first) / (TOKENS_OUT - 1)  # evenly spaced tokens
        tokens += [{"request_id": k, "token_index": j, "t_s": T0 + first + j * step}
                   for j in range(TOKENS_OUT)]
    return write_run(Path(root) / WORKLOAD / name / "1",
                     meta=_meta(name, spec, gpu=gpu, context=context), requests=requests,
                     events=_events(spec), telemetry=_telemetry(spec, gpu=gpu,
                                                                context=context),
                     tokens=tokens)


def make_trace(path: Path) -> Path:
    sends = sorted(r.send for spec in STRATEGIES.values() for r in spec.requests)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"request_id": range(len(sends)), "t_sched_s": sends,
                  "max_tokens": TOKENS_OUT, "prompt": "Hello."}).to_csv(path, index=False)
    return path


def make_value_results(root: Path, *, gpu: bool = True, context: bool = True,
                       strategies: Sequence[str] = tuple(STRATEGIES)) -> dict[str, Any]:
    """A results/ tree: one run per strategy, the trace and the aggregate step's files."""
    root = Path(root)
    run_dirs = [make_run(root / "runs", s, gpu=gpu, context=context) for s in strategies]
    trace = make_trace(root / "traces" / f"{WORKLOAD}.csv")
    summary = aggregate_workload(run_dirs, root / "summary", WORKLOAD)
    return {"run_dirs": run_dirs, "trace": trace, "summary": summary, "root": root}
