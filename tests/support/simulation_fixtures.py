"""Two hand-built run folders with known numbers, for the simulation's fit and
validation tests: every warm request's service TTFT is BASE_S + PER_TOKEN_S x its
prompt tokens, every further token TPOT_S."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from run_fixtures import event_row, lifecycle, request_row, telemetry_frame, write_run

WORKLOAD = "hand"
# Warm service TTFT of every request below: 0.2 s + 0.01 s per prompt token.
BASE_S, PER_TOKEN_S = 0.2, 0.01
TPOT_S = 0.05


def warm_s(tokens_in: int) -> float:
    return BASE_S + PER_TOKEN_S * tokens_in


def _request(rid: int, send: float, tokens_in: int, t_first: float, *, cold: bool = False,
             wait_ms: float = 0.0, n_out: int = 4) -> dict:
    row = request_row(rid, send, send, t_first, t_first + TPOT_S * (n_out - 1), n_out,
                      cold=cold)
    row.update(tokens_in=tokens_in, queue_wait_ms=wait_ms)
    return row


def _meta(strategy: str, policy: dict, replay: tuple[float, float], bare: tuple[float, float],
          context: tuple[float, float] | None) -> dict:
    return {
        "workload": WORKLOAD, "strategy": strategy, "rep": 1, "order_index": 0,
        "policy": policy, "device": "gpu",
        "model": {"name": "tiny", "path": "x.gguf", "sha256": "0", "bytes": 1},
        "windows": {"baseline_bare": list(bare),
                    "baseline_context": list(context) if context else None,
                    "replay": list(replay)},
        "telemetry": {"backend": "nvml", "rate_hz": 10},
    }


def naive_run(root: Path) -> Path:
    """Replay [100, 200); one on-demand start (phases 0.5, 1.0, 0.5 s), a cold request
    waiting for it, two warm ones (one of them after a queue wait), drain -> stopped
    0.25 s; an energy counter: 80 W starting, 60 W up, 50 W otherwise, 55 W in the
    context baseline."""
    events = lifecycle("i1", 101.0, runtime_ready_s=101.5, model_loaded_s=102.5,
                       ready_s=103.0, first_token_s=103.0 + warm_s(10) + 0.6, stopped_s=110.0)
    requests = [
        # cold: waited for the start; its first token 0.6 s beyond the warm prediction
        _request(0, 101.0, 10, 103.0 + warm_s(10) + 0.6, cold=True, wait_ms=2000.0),
        _request(1, 105.0, 10, 105.0 + warm_s(10)),
        # waited 0.1 s in the gateway: the service time is what is left
        _request(2, 106.0, 30, 106.0 + 0.1 + warm_s(30), wait_ms=100.0),
    ]
    telemetry = telemetry_frame(np.arange(85.0, 215.0, 0.1),
                                [(96.0, 98.0, 55.0), (101.0, 103.0, 80.0), (103.0, 110.0, 60.0)],
                                50.0, instance_mem_mib=300.0)
    return write_run(root / WORKLOAD / "naive" / "1",
                     meta=_meta("naive", {"name": "naive"}, (100.0, 200.0), (88.0, 95.0),
                                (96.0, 98.0)),
                     requests=requests, events=events, telemetry=telemetry, tokens=None)


def always_on_run(root: Path) -> Path:
    """Replay [0, 50); an instance warmed up before it (phases 0.2, 1.0, 0.8 s), whose
    first request (flagged warm) takes 0.4 s beyond the warm prediction; stopped at
    shutdown 0.5 s after its drain; no energy counter."""
    events = lifecycle("i1", -10.0, runtime_ready_s=-9.8, model_loaded_s=-8.8, ready_s=-8.0,
                       first_token_s=5.0 + warm_s(50) + 0.4, reason="min_instances")
    events += [event_row(60.0, "i1", "drain", "shutdown"),
               event_row(60.5, "i1", "stopped", "shutdown")]
    requests = [_request(0, 5.0, 50, 5.0 + warm_s(50) + 0.4),
                _request(1, 10.0, 50, 10.0 + warm_s(50))]
    telemetry = telemetry_frame(np.arange(-15.0, 55.0, 0.1), [], 50.0, source="none",
                                instance_mem_mib=200.0)
    return write_run(root / WORKLOAD / "always_on" / "1",
                     meta=_meta("always_on", {"name": "always_on"}, (0.0, 50.0),
                                (-14.0, -12.0), None),
                     requests=requests, events=events, telemetry=telemetry, tokens=None)


def tiered_run(root: Path) -> Path:
    """Replay [100, 200); the naive run's start and requests, then the instance sleeps at
    108 (runtime-warm) until it is drained at 114.75 and stopped at 115; an energy
    counter: 80 W starting, 60 W loaded, 52 W runtime-warm, 50 W otherwise, 55 W in the
    context baseline."""
    events = lifecycle("i1", 101.0, runtime_ready_s=101.5, model_loaded_s=102.5,
                       ready_s=103.0, first_token_s=103.0 + warm_s(10) + 0.6)
    events += [event_row(108.0, "i1", "sleep", "idle_ttl"),
               event_row(114.75, "i1", "drain", "runtime_warm_ttl"),
               event_row(115.0, "i1", "stopped", "runtime_warm_ttl")]
    requests = [
        _request(0, 101.0, 10, 103.0 + warm_s(10) + 0.6, cold=True, wait_ms=2000.0),
        _request(1, 105.0, 10, 105.0 + warm_s(10)),
    ]
    telemetry = telemetry_frame(np.arange(85.0, 215.0, 0.1),
                                [(96.0, 98.0, 55.0), (101.0, 103.0, 80.0), (103.0, 108.0, 60.0),
                                 (108.0, 115.0, 52.0)],
                                50.0, instance_mem_mib=300.0)
    policy = {"name": "tiered", "loaded_ttl_s": 2.0, "runtime_warm_s": 6.75}
    return write_run(root / WORKLOAD / "tiered" / "1",
                     meta=_meta("tiered", policy, (100.0, 200.0), (88.0, 95.0), (96.0, 98.0)),
                     requests=requests, events=events, telemetry=telemetry, tokens=None)
