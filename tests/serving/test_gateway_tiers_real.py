"""The runtime-warm tier through the gateway, for real, with each engine: under the
``tiered`` policy an idle instance gives up its model after its loaded TTL, keeps its
process, and the next request wakes it (one process start, one wake, recorded as such
in events and on the answer). For llama-server the gateway sets its own idle timer.

llama-server is the one tools/setup-venv.sh builds (or SCALEZERO_LLAMA_SERVER); its test
is skipped only when that build is switched off."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from gateway_fixtures import GatewayFactory, RunningGateway

from scalezero.serving.settings import GatewaySettings, InstanceSettings, QueueSettings
from scalezero.system.engine_build import native_server

pytestmark = pytest.mark.slow

#: Loaded for this long after a request, then runtime-warm for the rest of the test.
LOADED_TTL_S = 1.0


def _complete(gw: RunningGateway) -> httpx.Response:
    response = httpx.post(gw.url + "/v1/completions", timeout=120.0, trust_env=False, json={
        "model": "smollm2", "prompt": "Once upon a time", "max_tokens": 4,
        "temperature": 0.0})
    assert response.status_code == 200, response.text
    return response


def _wait_for_event(gw: RunningGateway, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while name not in gw.event_names():
        assert time.monotonic() < deadline, f"no {name} event in {timeout_s} s: {gw.event_names()}"
        time.sleep(0.1)


def _check_runtime_warm_round(gw: RunningGateway) -> None:
    first = _complete(gw)
    assert first.headers["x-scalezero-start-tier"] in ("host_cached", "disk_cold")
    assert _complete(gw).headers["x-scalezero-start-tier"] == "loaded"
    # llama-server checks its idle timer once a second: allow the TTL plus that and slack.
    _wait_for_event(gw, "sleep", LOADED_TTL_S + 10.0)
    state = httpx.get(gw.url + "/state", timeout=10.0, trust_env=False).json()
    pool = next(iter(state["deployments"].values()))
    assert pool["sleeping"] == 1 and pool["ready"] == 0, pool

    woken = _complete(gw)
    assert woken.headers["x-scalezero-start-tier"] == "runtime_warm"
    assert woken.headers["x-scalezero-cold"] == "true"
    spawns = [e for e in gw.events if e.event == "spawn"]
    wakes = [e for e in gw.events if e.event == "wake"]
    assert len(spawns) == 1 and len(wakes) == 1
    assert wakes[0].tier == "runtime_warm" and spawns[0].tier in ("host_cached", "disk_cold")
    # The same process served before and after its sleep.
    assert wakes[0].pid == spawns[0].pid
    ready_after_wake = [e for e in gw.events if e.event == "ready" and e.t_s > wakes[0].t_s]
    assert ready_after_wake, gw.event_names()
    gw.stop()  # fails if an instance outlives the gateway


def _settings(model: Path, engine: str) -> GatewaySettings:
    return GatewaySettings(
        model_path=model, model_name="smollm2", policy="tiered",
        policy_params={"loaded_ttl_s": LOADED_TTL_S, "runtime_warm_s": 300.0},
        instance=InstanceSettings(engine=engine, n_ctx=256, n_threads=2,
                                  ready_timeout_s=120.0, stop_grace_s=3.0),
        gateway=QueueSettings(cold_start_timeout_s=120.0, queue_timeout_s=120.0),
    )


def test_python_engine_sleeps_and_wakes_under_the_tiered_policy(
    make_gateway: GatewayFactory, real_model: Path,
) -> None:
    gw = make_gateway.from_config(_settings(real_model, "llama_cpp_python").gateway_config())
    _check_runtime_warm_round(gw)


def test_llama_server_sleeps_on_its_timer_and_wakes_under_the_tiered_policy(
    make_gateway: GatewayFactory, real_model: Path,
) -> None:
    found = native_server()
    if found.switched_off:
        pytest.skip(f"llama-server {found.reason}")
    assert found.path is not None, f"llama-server {found.reason}"
    gw = make_gateway.from_config(_settings(real_model, "llama_server").gateway_config())
    _check_runtime_warm_round(gw)
