"""Build synthetic run folders (requests, tokens, events, telemetry, run.json) for tests.

Power is given as piecewise-constant segments; the telemetry's cumulative energy
counter is the exact integral of that power at each sample time, so expected energies
can be worked out by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalezero.serving.events import EVENT_COLUMNS, Reason, write_event_header
from scalezero.serving.events import Lifecycle as L

REQUEST_COLUMNS = [
    "request_id", "t_sched_s", "t_send_s", "t_first_s", "t_end_s", "tokens_in", "tokens_out",
    "max_tokens", "status", "error", "cold", "queue_wait_ms", "instance_id", "finish_reason",
]


def counter_mj(t_s: np.ndarray, segments: Sequence[tuple[float, float, float]],
               default_w: float, start_mj: float = 5.0e8) -> np.ndarray:
    """Cumulative energy (mJ) at times t_s (>= 0) for power `segments` [(t0, t1, watts)]
    over a constant `default_w`; where segments overlap, the later one holds."""
    t = np.asarray(t_s, dtype=float)
    cuts = np.unique([0.0, float(t.max()), *(x for s in segments for x in s[:2])])
    mids = (cuts[:-1] + cuts[1:]) / 2.0
    watts = np.full(len(mids), float(default_w))
    for t0, t1, w in segments:
        watts[(mids > t0) & (mids < t1)] = w
    energy_at_cuts = np.concatenate([[0.0], np.cumsum(watts * np.diff(cuts))])
    # Power is constant between cuts, so the energy is linear there: interpolate.
    return start_mj + 1000.0 * np.interp(t, cuts, energy_at_cuts)


def telemetry_frame(t_s: np.ndarray, segments: Sequence[tuple[float, float, float]],
                    default_w: float, *, source: str = "nvml_counter",
                    device: str = "gpu0", instance_mem_mib: float | None = None) -> pd.DataFrame:
    energy = counter_mj(t_s, segments, default_w) if source != "none" else np.nan
    return pd.DataFrame({
        "t_s": t_s,
        "device": device,
        "energy_source": source,
        "energy_mj": energy,
        "power_w": np.nan,
        "power_source": "none",
        "mem_used_mib": 1000.0,
        "mem_total_mib": 8000.0,
        "instance_mem_mib": instance_mem_mib if instance_mem_mib is not None else np.nan,
        "instance_rss_mib": np.nan,
        "instance_cpu_pct": np.nan,
        "n_instances": 1,
        "util_pct": np.nan,
        "mem_util_pct": np.nan,
        "pstate": np.nan,
        "sm_clock_mhz": np.nan,
        "host_cpu_pct": np.nan,
    })


def request_row(request_id: int, t_sched: float, t_send: float, t_first: float | None,
                t_end: float, tokens_out: int, *, status: int = 200, error: str = "",
                cold: bool = False, instance_id: str = "i1") -> dict[str, Any]:
    return {
        "request_id": request_id, "t_sched_s": t_sched, "t_send_s": t_send,
        "t_first_s": t_first, "t_end_s": t_end, "tokens_in": 8, "tokens_out": tokens_out,
        "max_tokens": tokens_out, "status": status, "error": error, "cold": cold,
        "queue_wait_ms": 0.0, "instance_id": instance_id, "finish_reason": "length",
    }


_STATE_AFTER = {L.SPAWN: "starting", L.RUNTIME_READY: "starting", L.MODEL_LOADED: "starting",
                L.READY: "ready", L.FIRST_TOKEN: "ready", L.DRAIN: "draining",
                L.STOPPED: "stopped", L.START_FAILED: "failed", L.DIED: "failed",
                L.SLEEP: "sleeping", L.WAKE: "waking"}


def event_row(t_s: float, instance_id: str, event: str, reason: str = "",
              tier: str = "") -> dict[str, Any]:
    return {"t_s": t_s, "instance_id": instance_id, "event": str(event),
            "state": _STATE_AFTER[L(event)], "pid": 4242, "reason": str(reason), "detail": "",
            "tier": tier}


def lifecycle(instance_id: str, spawn_s: float, *, runtime_ready_s: float,
              model_loaded_s: float, ready_s: float, first_token_s: float | None = None,
              stopped_s: float | None = None,
              reason: str = Reason.ON_DEMAND) -> list[dict[str, Any]]:
    rows = [event_row(spawn_s, instance_id, L.SPAWN, reason),
            event_row(runtime_ready_s, instance_id, L.RUNTIME_READY),
            event_row(model_loaded_s, instance_id, L.MODEL_LOADED),
            event_row(ready_s, instance_id, L.READY)]
    if first_token_s is not None:
        rows.append(event_row(first_token_s, instance_id, L.FIRST_TOKEN))
    if stopped_s is not None:
        rows.append(event_row(stopped_s - 0.25, instance_id, L.DRAIN, Reason.IDLE_TTL))
        rows.append(event_row(stopped_s, instance_id, L.STOPPED, Reason.IDLE_TTL))
    return rows


def write_run(run_dir: Path, *, meta: dict[str, Any], requests: list[dict[str, Any]],
              events: list[dict[str, Any]] | None, telemetry: pd.DataFrame | None,
              tokens: list[dict[str, Any]] | None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    pd.DataFrame(requests, columns=REQUEST_COLUMNS).to_csv(run_dir / "requests.csv",
                                                            index=False)
    if events:
        pd.DataFrame(events, columns=EVENT_COLUMNS).to_csv(run_dir / "events.csv", index=False)
    elif events is not None:
        write_event_header(run_dir / "events.csv")
    if telemetry is not None:
        telemetry.to_csv(run_dir / "telemetry.csv", index=False)
    if tokens is not None:
        pd.DataFrame(tokens, columns=["request_id", "token_index", "t_s"]).to_csv(
            run_dir / "tokens.csv", index=False)
    return run_dir
