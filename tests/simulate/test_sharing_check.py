"""The sharing check: per-deployment figures of a shared run, and measured sharing runs
against the shared-budget simulation.

The round trip writes run folders as ``scalezero run --deployments`` does (run.json with
``deployments`` and ``memory``, requests.csv with a ``model`` column, events.csv with
prefixed instance ids, telemetry.csv with the instances' resident memory) from
simulations with known profiles; the check must recover the profiles and memory figures
from the dedicated runs and then predict the shared runs' cold starts and evictions.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalezero.errors import UserError
from scalezero.serving.events import EVENT_COLUMNS
from scalezero.serving.settings import QueueSettings
from scalezero.serving.strategies import make_policy
from scalezero.simulate.engine import SimRequest
from scalezero.simulate.profile import PlatformProfile
from scalezero.simulate.sharing import (
    SharedBudget,
    SharedDeployment,
    memory_held,
    shared_live_frames,
    sharing_metrics,
    simulate_shared,
)
from scalezero.simulate.sharing_check import (
    SHARING_CHECK_COLUMNS,
    run_deployments,
    sharing_check,
    write_sharing_check,
)

# ------------------------------------------------------------------ hand-built frames


def _event(t_s: float, instance_id: str, event: str, reason: str = "") -> dict:
    return {"t_s": t_s, "instance_id": instance_id, "event": event, "state": "",
            "pid": 1, "reason": reason, "detail": ""}


def _request(rid: int, model: str, t_s: float, status: int = 200, error: str = "",
             instance_id: str = "") -> dict:
    ok = status == 200
    return {"request_id": rid, "t_sched_s": t_s, "t_send_s": t_s,
            "t_first_s": t_s + 1.0 if ok else math.nan, "t_end_s": t_s + 2.0,
            "tokens_in": 5, "tokens_out": 3 if ok else 0, "max_tokens": 3, "status": status,
            "error": error, "cold": ok, "queue_wait_ms": 0.0, "instance_id": instance_id,
            "finish_reason": "length", "model": model}


def test_sharing_metrics_count_evictions_restarts_and_refusals() -> None:
    # a-i1 holds 100 MiB from 0 to 10 (evicted at 9.75), b-i1 200 MiB from 10 to 20,
    # a-i2 100 MiB from 12 to 20: a started again after its eviction.
    events = pd.DataFrame([
        _event(0.0, "a-i1", "spawn", "on_demand"), _event(1.0, "a-i1", "ready"),
        _event(9.75, "a-i1", "drain", "evicted"), _event(10.0, "a-i1", "stopped", "evicted"),
        _event(10.0, "b-i1", "spawn", "on_demand"), _event(11.0, "b-i1", "ready"),
        _event(12.0, "a-i2", "spawn", "on_demand"), _event(13.0, "a-i2", "ready"),
        _event(19.0, "b-i1", "drain", "shutdown"), _event(20.0, "b-i1", "stopped", "shutdown"),
        _event(19.0, "a-i2", "drain", "shutdown"), _event(20.0, "a-i2", "stopped", "shutdown"),
    ])
    requests = pd.DataFrame([
        _request(0, "a", 0.0, instance_id="a-i1"),
        _request(1, "b", 9.0, 503, "no memory for 'b': it needs ... (insufficient_memory)"),
        _request(2, "b", 10.0, instance_id="b-i1"),
        _request(3, "a", 12.0, instance_id="a-i2"),
    ])
    memory = {"a": 100.0, "b": 200.0}
    figures = sharing_metrics(requests, events, memory, (0.0, 20.0)).set_index(
        ["deployment", "metric"])["value"]
    assert figures[("a", "evictions")] == 1 and figures[("b", "evictions")] == 0
    assert figures[("a", "cold_starts")] == 2
    assert figures[("a", "eviction_cold_starts")] == 1
    assert figures[("b", "eviction_cold_starts")] == 0
    assert figures[("b", "memory_refused")] == 1 and figures[("a", "memory_refused")] == 0
    assert figures[("b", "requests")] == 2 and figures[("b", "ok")] == 1
    # a: 100 MiB for 10 s and 8 s of 20; b: 200 MiB for 10 s of 20.
    assert figures[("a", "memory_mean_mib")] == pytest.approx(90.0)
    assert figures[("b", "memory_mean_mib")] == pytest.approx(100.0)
    # Together: 100, then 200 (10-12), then 300 (12-20).
    assert figures[("", "memory_peak_mib")] == 300.0
    assert figures[("", "memory_mean_mib")] == pytest.approx((1000 + 400 + 2400) / 20)


def test_memory_held_counts_a_stop_before_a_start_at_the_same_instant() -> None:
    events = pd.DataFrame([_event(0.0, "a-i1", "spawn"), _event(5.0, "a-i1", "stopped"),
                           _event(5.0, "a-i2", "spawn"), _event(8.0, "a-i2", "stopped")])
    mean, peak = memory_held(events, {"a": 50.0}, (0.0, 10.0))
    assert peak == 50.0 and mean == pytest.approx(50.0 * 8 / 10)


def test_run_deployments_reads_the_first_and_the_others() -> None:
    meta = {"model": {"name": "alpha"},
            "policy": {"name": "keep_warm", "keep_warm_ttl_s": 30, "accounting": {}},
            "deployments": {"beta": {"path": "b.gguf", "policy": "naive"}}}
    policies = run_deployments(meta)
    assert list(policies) == ["alpha", "beta"]
    assert policies["alpha"].params()["keep_warm_ttl_s"] == 30
    assert policies["beta"].name == "naive"
    with pytest.raises(UserError):
        run_deployments({"policy": {"name": "naive"}})


# ------------------------------------------------------------------ round trip

T0_S = 1000.0  # the runs' clock at their replay start
PROFILES = {
    "a": PlatformProfile(name="a", model="a", device="cpu", basis="assumed",
                         spawn_to_runtime_ready_s=0.25, runtime_ready_to_model_loaded_s=1.5,
                         model_loaded_to_ready_s=0.25, first_request_extra_s=0.0, stop_s=0.5,
                         ttft_base_s=0.05, ttft_s_per_prompt_token=0.002, tpot_s=0.02),
    "b": PlatformProfile(name="b", model="b", device="cpu", basis="assumed",
                         spawn_to_runtime_ready_s=0.5, runtime_ready_to_model_loaded_s=3.0,
                         model_loaded_to_ready_s=0.5, first_request_extra_s=0.0, stop_s=0.25,
                         ttft_base_s=0.1, ttft_s_per_prompt_token=0.004, tpot_s=0.04),
}
MEMORY_MIB = {"a": 120.0, "b": 180.0}


def _trace() -> list[tuple[str, SimRequest]]:
    # a and b take turns, with bursts of the same model in between.
    models = ["a", "a", "b", "a", "b", "b", "a", "b", "a", "a", "b", "a"]
    return [(m, SimRequest(k, 2.0 + 7.5 * k, 10 + 5 * (k % 4), 6))
            for k, m in enumerate(models)]


def _write_run(run_dir: Path, policy: str, params: dict, budget: SharedBudget | None) -> None:
    deployments = [SharedDeployment(name, make_policy(policy, params), PROFILES[name],
                                    MEMORY_MIB[name]) for name in PROFILES]
    limits = QueueSettings().pool_limits()
    result = simulate_shared(deployments, _trace(),
                             budget or SharedBudget(budget_mib=1e9), limits)
    requests, events = shared_live_frames(result)
    prompts = {r.request_id: r.prompt_tokens for _, r in _trace()}
    ok = requests["status"] == 200
    requests = requests.assign(
        t_sched_s=requests["t_sched_s"] + T0_S, t_send_s=requests["t_send_s"] + T0_S,
        t_first_s=requests["t_first_s"] + T0_S, t_end_s=requests["t_end_s"] + T0_S,
        tokens_in=requests["request_id"].map(prompts), tokens_out=np.where(ok, 6, 0),
        max_tokens=6, finish_reason="length")
    events = events.assign(t_s=events["t_s"] + T0_S, pid=4242)
    # Resident memory of the instances, sampled at 10 Hz: each ready one holds its figure.
    t_s = np.arange(T0_S - 20.0, T0_S + result.window[1] + 5.0, 0.1)
    rss = np.zeros(len(t_s))
    for _, rows in events.groupby("instance_id"):
        name = str(rows["instance_id"].iloc[0]).split("-")[0]
        ready = rows.loc[rows["event"] == "ready", "t_s"]
        end = rows.loc[rows["event"].isin(["drain", "stopped"]), "t_s"]
        if not ready.empty:
            rss += MEMORY_MIB[name] * ((t_s >= ready.min()) & (t_s < end.min()))
    telemetry = pd.DataFrame({"t_s": t_s, "device": "host", "energy_source": "none",
                              "energy_mj": np.nan, "power_w": np.nan, "power_source": "none",
                              "mem_used_mib": 1000.0, "mem_total_mib": 8000.0,
                              "instance_mem_mib": rss, "instance_rss_mib": rss,
                              "instance_cpu_pct": np.nan, "n_instances": 1})
    meta = {
        "workload": "mix", "strategy": policy, "rep": 1, "order_index": 0, "device": "cpu",
        "policy": {"name": policy, **params},
        "model": {"name": "a", "path": "a.gguf", "sha256": "0", "bytes": 1},
        "deployments": {"b": {"path": "b.gguf", "policy": policy, **params}},
        "windows": {"baseline_bare": [T0_S - 19.0, T0_S - 18.0], "baseline_context": None,
                    "replay": [T0_S, T0_S + result.window[1]]},
        "telemetry": {"backend": "host", "rate_hz": 10},
    }
    if budget is not None:
        meta["memory"] = {"budget_mib": budget.budget_mib, "eviction": budget.eviction}
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    requests.to_csv(run_dir / "requests.csv", index=False)
    events[list(EVENT_COLUMNS)].to_csv(run_dir / "events.csv", index=False)
    telemetry.to_csv(run_dir / "telemetry.csv", index=False)


@pytest.fixture(scope="module")
def sharing_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("sharing") / "runs"
    _write_run(runs / "dedicated-naive", "naive", {}, None)
    _write_run(runs / "dedicated-always_on", "always_on", {}, None)
    # Room for one instance of each, not both: a start evicts the other deployment.
    for eviction in ("lru", "cost_aware"):
        _write_run(runs / f"shared-{eviction}", "keep_warm", {"keep_warm_ttl_s": 60.0},
                   SharedBudget(budget_mib=250.0, eviction=eviction))
    return runs


def test_the_check_predicts_runs_made_with_known_profiles(sharing_runs: Path) -> None:
    log = io.StringIO()
    frame = sharing_check(sharing_runs, log=log)
    assert "dedicated-always_on, dedicated-naive" in log.getvalue()
    assert set(frame["variant"]) == {"shared-lru", "shared-cost_aware"}
    assert list(frame.columns) == list(SHARING_CHECK_COLUMNS)
    figures = frame.set_index(["variant", "deployment", "metric"])
    measured = figures["measured"]
    # The shared runs did evict and start again.
    assert measured[("shared-lru", "a", "evictions")] >= 2
    assert measured[("shared-lru", "b", "eviction_cold_starts")] >= 1
    for metric in ("cold_starts", "evictions", "eviction_cold_starts", "memory_refused"):
        rows = frame[frame["metric"] == metric]
        assert (rows["error"] == 0).all(), rows.to_string()
    for metric in ("instance_s", "memory_mean_mib", "ttft_p50_ms", "e2e_p50_ms"):
        rows = frame[(frame["metric"] == metric) & (frame["deployment"] != "")]
        assert np.allclose(rows["simulated"], rows["measured"], rtol=1e-6), rows.to_string()


def test_the_check_is_written_as_a_tidy_table(sharing_runs: Path, tmp_path: Path) -> None:
    path = write_sharing_check(sharing_check(sharing_runs, log=io.StringIO()),
                               tmp_path / "sharing" / "simulated.csv")
    table = pd.read_csv(path)
    assert list(table.columns) == list(SHARING_CHECK_COLUMNS)
    assert not table.duplicated(["variant", "deployment", "metric"]).any()


def test_the_check_needs_shared_runs(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        sharing_check(tmp_path)


def test_scalezero_simulate_sharing_check_writes_the_table(sharing_runs: Path,
                                                           tmp_path: Path) -> None:
    from scalezero.cli import main

    out = tmp_path / "simulated.csv"
    assert main(["simulate", "sharing-check", "--runs", str(sharing_runs),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert set(table["variant"]) == {"shared-lru", "shared-cost_aware"}
    assert set(table["deployment"]) == {"a", "b", ""}


def test_without_a_model_column_the_serving_instance_names_the_deployment(
        sharing_runs: Path, tmp_path: Path) -> None:
    import shutil

    runs = tmp_path / "runs"
    for variant in ("dedicated-naive", "dedicated-always_on", "shared-lru"):
        shutil.copytree(sharing_runs / variant, runs / variant)
    requests = pd.read_csv(runs / "shared-lru" / "requests.csv")
    requests.drop(columns="model").to_csv(runs / "shared-lru" / "requests.csv", index=False)
    with_model = sharing_check(sharing_runs, log=io.StringIO())
    without = sharing_check(runs, log=io.StringIO())
    expected = with_model[with_model["variant"] == "shared-lru"].reset_index(drop=True)
    pd.testing.assert_frame_equal(without, expected)
