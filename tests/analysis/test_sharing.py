"""The sharing experiment's analysis on a hand-built run: requests split by deployment,
instances by their id prefix, eviction-caused cold starts, memory, statuses, energy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from scalezero.analysis.sharing import (
    PER_DEPLOYMENT_COLUMNS,
    SUMMARY_COLUMNS,
    analyze_sharing,
    deployment_of,
    eviction_cold_starts,
    memory_over_time,
)
from scalezero.measure.replay import REQUEST_COLUMNS
from scalezero.serving.events import EVENT_COLUMNS

# (t_s, instance_id, event, reason). The deployment "gamma-x" has a dash in its name.
EVENTS = [
    (1.0, "alpha-i1", "spawn", "on_demand"),
    (2.0, "alpha-i1", "ready", ""),
    (5.0, "alpha-i1", "drain", "evicted"),
    (5.2, "alpha-i1", "stopped", "evicted"),
    (5.2, "beta-i1", "spawn", "on_demand"),
    (6.0, "beta-i1", "ready", ""),
    # alpha's previous instance was evicted and none is up: eviction-caused.
    (7.0, "alpha-i2", "spawn", "on_demand"),
    # alpha-i2 is still starting: a second instance is not caused by the eviction.
    (7.5, "alpha-i3", "spawn", "on_demand"),
    (8.0, "alpha-i2", "ready", ""),
    (8.5, "alpha-i3", "ready", ""),
    (9.0, "gamma-x-i1", "spawn", "on_demand"),
    (9.5, "gamma-x-i1", "ready", ""),
    (10.0, "beta-i1", "drain", "idle_ttl"),
    (10.1, "beta-i1", "stopped", "idle_ttl"),
    # beta stopped by its own TTL: not eviction-caused.
    (11.0, "beta-i2", "spawn", "on_demand"),
    (11.5, "beta-i2", "ready", ""),
    (12.0, "gamma-x-i1", "drain", "evicted"),
    (12.1, "gamma-x-i1", "stopped", "evicted"),
    # After the replay window: not counted.
    (25.0, "gamma-x-i2", "spawn", "on_demand"),
]
# request_id -> (deployment, status, t_send, t_first): the trace names the deployment.
REQUESTS = [
    (0, "alpha", 200, 1.0, 2.5),
    (1, "beta", 200, 5.2, 6.2),
    (2, "alpha", 503, 5.5, None),
    (3, "gamma-x", 200, 9.0, 9.9),
    (4, "beta", 429, 10.5, None),
    (5, "alpha", 200, 12.0, 12.1),
    (6, "gamma-x", 504, 13.0, None),
    (7, "alpha", 0, 14.0, None),
]


def _write_run(run_dir: Path, *, variant: str, budget: float | None) -> Path:
    run_dir.mkdir(parents=True)
    meta = {
        "strategy": variant, "workload": "mix", "rep": 1,
        "windows": {"replay": [0.0, 20.0], "baseline_bare": None},
        "model": {"name": "alpha", "path": "/m/alpha-model.gguf"},
        "policy": {"name": "keep_warm", "keep_warm_ttl_s": 30},
        "deployments": {"beta": {"path": "/m/beta-model.gguf", "policy": "keep_warm"},
                        "gamma-x": {"path": "/m/gamma.gguf", "policy": "keep_warm"}},
        "memory": {"budget_mib": budget, "eviction": "lru"},
    }
    (run_dir / "run.json").write_text(json.dumps(meta))
    rows = []
    for rid, _, status, t_send, t_first in REQUESTS:
        ok = status == 200
        rows.append({
            "request_id": rid, "t_sched_s": t_send, "t_send_s": t_send,
            "t_first_s": t_first if ok else None, "t_end_s": (t_first + 0.5) if ok else t_send,
            "tokens_in": 5, "tokens_out": 4 if ok else 0, "max_tokens": 4, "status": status,
            "error": "" if ok else "failed", "cold": "false", "queue_wait_ms": 0.0,
            "instance_id": "", "finish_reason": "length" if ok else ""})
    pd.DataFrame(rows, columns=list(REQUEST_COLUMNS)).to_csv(run_dir / "requests.csv",
                                                             index=False)
    pd.DataFrame(columns=["request_id", "token_index", "t_s"]).to_csv(
        run_dir / "tokens.csv", index=False)
    pd.DataFrame([{"t_s": t, "instance_id": i, "event": e, "state": "", "pid": 1,
                   "reason": r, "detail": ""} for t, i, e, r in EVENTS],
                 columns=list(EVENT_COLUMNS)).to_csv(run_dir / "events.csv", index=False)
    # Instances hold 100 MiB but for one sample of 300 at t = 10; the energy counter
    # (RAPL) adds 1 J per second.
    times = [float(t) for t in range(0, 21)]
    pd.DataFrame({
        "t_s": times, "device": "cpu", "energy_source": "rapl",
        "energy_mj": [1000.0 * t for t in times],
        "instance_mem_mib": [300.0 if t == 10 else 100.0 for t in times],
        "n_instances": 1,
    }).to_csv(run_dir / "telemetry.csv", index=False)
    return run_dir


@pytest.fixture
def analysed(tmp_path: Path) -> dict:
    trace = tmp_path / "trace.csv"
    pd.DataFrame({"request_id": [r[0] for r in REQUESTS],
                  "t_sched_s": [r[3] for r in REQUESTS],
                  "model": [r[1] for r in REQUESTS]}).to_csv(trace, index=False)
    run = _write_run(tmp_path / "runs" / "shared-lru", variant="shared-lru", budget=400.0)
    written = analyze_sharing([run], trace, tmp_path / "summary.csv",
                              tmp_path / "per_deployment.csv")
    detail = pd.read_csv(written["per_deployment"])
    assert list(detail.columns) == list(PER_DEPLOYMENT_COLUMNS)
    return {"summary": pd.read_csv(written["summary"]).iloc[0],
            "detail": detail.set_index("deployment"),
            "run": run}


def test_instance_ids_name_their_deployment() -> None:
    assert deployment_of("gamma-x-i12") == "gamma-x"
    assert deployment_of("alpha-i1") == "alpha"
    assert deployment_of("i3", single="only") == "only"
    assert deployment_of("i3") is None


def test_eviction_caused_cold_starts_follow_the_definition() -> None:
    events = pd.DataFrame([{"t_s": t, "instance_id": i, "event": e, "reason": r}
                           for t, i, e, r in EVENTS])
    starts = eviction_cold_starts(events, (0.0, 20.0)).set_index("instance_id")
    assert starts["eviction_caused"].to_dict() == {
        "alpha-i1": False, "beta-i1": False, "alpha-i2": True, "alpha-i3": False,
        "gamma-x-i1": False, "beta-i2": False, "gamma-x-i2": True}
    assert starts.loc["gamma-x-i2", "in_replay"] == False  # noqa: E712


def test_summary_counts_statuses_starts_and_evictions(analysed: dict) -> None:
    row = analysed["summary"]
    assert list(row.index) == list(SUMMARY_COLUMNS)
    assert (row["variant"], row["kind"], row["eviction"], row["budget_mib"]) == \
        ("shared-lru", "shared", "lru", 400.0)
    assert (row["requests"], row["status_200"], row["status_429"], row["status_503"],
            row["status_504"], row["status_other"]) == (8, 4, 1, 1, 1, 1)
    assert (row["cold_starts"], row["eviction_cold_starts"], row["evictions"]) == (6, 1, 2)


def test_memory_mean_and_peak_come_from_the_telemetry(analysed: dict) -> None:
    row = analysed["summary"]
    # 100 MiB for 20 s plus a triangle of 200 MiB over 2 s: 2200 MiB*s / 20 s.
    assert row["mem_mean_mib"] == pytest.approx(110.0)
    assert row["mem_peak_mib"] == 300.0
    series = memory_over_time(analysed["run"])
    assert series["mem_mib"].max() == 300.0 and len(series) == 21


def test_energy_is_the_counter_over_the_window(analysed: dict) -> None:
    row = analysed["summary"]
    assert (row["energy_basis"], row["energy_source"]) == ("measured", "rapl")
    assert row["energy_j"] == pytest.approx(20.0)
    assert row["energy_per_request_j"] == pytest.approx(5.0)


def test_per_deployment_split(analysed: dict) -> None:
    detail = analysed["detail"]
    assert set(detail["variant"]) == {"shared-lru"}
    assert detail["requests"].to_dict() == {"alpha": 4, "beta": 2, "gamma-x": 2}
    assert detail["status_200"].to_dict() == {"alpha": 2, "beta": 1, "gamma-x": 1}
    assert detail["status_other"].to_dict() == {"alpha": 1, "beta": 0, "gamma-x": 0}
    assert detail["cold_starts"].to_dict() == {"alpha": 3, "beta": 2, "gamma-x": 1}
    assert detail["eviction_cold_starts"].to_dict() == {"alpha": 1, "beta": 0, "gamma-x": 0}
    assert detail["evictions"].to_dict() == {"alpha": 1, "beta": 0, "gamma-x": 1}
    assert detail["model"].to_dict() == {"alpha": "alpha-model", "beta": "beta-model",
                                         "gamma-x": "gamma"}
    # TTFT of the successful requests: alpha 1.5 s and 0.1 s.
    assert detail.loc["alpha", "ttft_p50_ms"] == pytest.approx(800.0)
    assert detail.loc["gamma-x", "ttft_p99_ms"] == pytest.approx(900.0)
    # gamma-x-i1: spawn at 9, stopped at 12.1.
    assert detail.loc["gamma-x", "instance_s"] == pytest.approx(3.1)
    assert not math.isnan(detail.loc["beta", "instance_s"])


def test_columns_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text(encoding="utf-8")
    section = doc.split("## `results/sharing/`", 1)[1].split("\n## ", 1)[0]
    missing = [c for c in (*SUMMARY_COLUMNS, *PER_DEPLOYMENT_COLUMNS) if f"| `{c}` |" not in
               section]
    assert not missing


def test_a_run_without_a_counter_gets_the_projections_estimate(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    pd.DataFrame({"request_id": [r[0] for r in REQUESTS],
                  "model": [r[1] for r in REQUESTS]}).to_csv(trace, index=False)
    run = _write_run(tmp_path / "dedicated-naive", variant="dedicated-naive", budget=None)
    telemetry = pd.read_csv(run / "telemetry.csv")
    telemetry.assign(energy_source="none", energy_mj=None).to_csv(run / "telemetry.csv",
                                                                   index=False)
    written = analyze_sharing([run], trace, tmp_path / "s.csv", tmp_path / "d.csv")
    row = pd.read_csv(written["summary"]).iloc[0]
    assert (row["kind"], row["energy_basis"], row["energy_source"]) == \
        ("dedicated", "estimated", "host_model")
    assert row["energy_j"] > 0
    assert math.isnan(row["budget_mib"]) and pd.isna(row["eviction"])
