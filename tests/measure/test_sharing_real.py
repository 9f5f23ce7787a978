"""Three deployments sharing one machine under a memory budget that holds two, with real
llama.cpp instances: a measured run replays a mixed workload through ``scalezero run``'s
path; every request succeeds, an idle deployment is evicted, no process is left."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import tagged_servers, wait_no_servers

from scalezero.measure.runner import measured_run
from scalezero.measure.settings import RunSettings, TelemetrySettings
from scalezero.models.synthetic import write_synthetic_model
from scalezero.serving.cli import read_deployments
from scalezero.serving.settings import GatewaySettings, InstanceSettings, QueueSettings
from scalezero.workload import generate_trace, write_trace

pytestmark = pytest.mark.slow

#: Resident memory of one llama-cpp-python instance on the CPU at n_ctx 256, roughly:
#: SmolLM2-135M about 190 MiB, the tiny synthetic model about 100 MiB. The budget holds
#: tiny and one SmolLM2 with room to spare, and never all three.
BUDGET_MIB = 400.0


def test_three_models_share_a_budget_for_two(
        tmp_path: Path, real_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = f"sharing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SCALEZERO_TEST_TAG", tag)
    tiny = tmp_path / "tiny.gguf"
    write_synthetic_model(tiny, "tiny", dtype="f16", donor=real_model)
    deployments = tmp_path / "deployments.yaml"
    deployments.write_text(
        f"memory_budget_mib: {BUDGET_MIB}\n"
        "memory_wait_s: 60\n"
        "eviction: lru\n"
        "deployments:\n"
        f"  alpha: {{model: {real_model}, policy: keep_warm, keep_warm_ttl_s: 600}}\n"
        f"  beta: {{model: {real_model}, policy: keep_warm, keep_warm_ttl_s: 600}}\n"
        f"  tiny: {{model: {tiny}, policy: keep_warm, keep_warm_ttl_s: 600}}\n",
        encoding="utf-8")
    # tiny, alpha, beta, tiny, alpha: beta's start must evict (tiny, the least recent).
    trace = generate_trace("mix", {
        "kind": "poisson", "rate_rps": 0.5, "duration_s": 60.0, "seed": 1,
        "max_tokens": 3, "prompt_words": 4, "max_requests": 5,
        "models": {"popularity": "uniform", "models": ["alpha", "beta", "tiny"]}})
    trace["model"] = ["tiny", "alpha", "beta", "tiny", "alpha"][:len(trace)]
    trace["t_sched_s"] = [0.2 + 4.0 * i for i in range(len(trace))]
    trace_path = tmp_path / "trace.csv"
    write_trace(trace, trace_path)
    gateway = GatewaySettings.model_validate({
        **read_deployments(deployments),
        "instance": InstanceSettings(n_ctx=256, ready_timeout_s=120.0).model_dump(),
        "gateway": QueueSettings(cold_start_timeout_s=120.0).model_dump(),
    })
    try:
        run = measured_run(RunSettings(
            gateway=gateway, trace_path=trace_path, out_dir=tmp_path / "run",
            log_dir=tmp_path / "logs", telemetry=TelemetrySettings(baseline_s=0.2),
            workload="mix", strategy="keep_warm",
        ))
    finally:
        left = wait_no_servers(tag, 20.0)
    assert not left, f"processes left behind: {[p.pid for p in left]}"
    assert run["status"] == "ok"
    assert set(run["deployments"]) == {"beta", "tiny"} and run["model"]["name"] == "alpha"
    assert run["memory"] == {"budget_mib": BUDGET_MIB, "eviction": "lru"}
    requests = pd.read_csv(tmp_path / "run" / "requests.csv")
    assert requests["status"].tolist() == [200] * len(trace), requests.to_string()
    events = pd.read_csv(tmp_path / "run" / "events.csv", keep_default_na=False)
    drains = events[events["event"] == "drain"]
    assert (drains["reason"] == "evicted").sum() >= 1, events.to_string()
    assert not tagged_servers(tag)
    # The evicted instance stopped with its reason, and the summary column counts it.
    stopped = events[events["event"] == "stopped"]
    assert (stopped["reason"] == "evicted").sum() == (drains["reason"] == "evicted").sum()
