"""The gateway as a serverless platform, against fake instances (fast, deterministic).

Each test starts its own gateway (in a thread of this process) in front of
``tests/support/fake_instance.py`` processes; tests with the real llama.cpp server are in
``test_gateway_real.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_fixtures import GatewayFactory, RunningGateway, wait_gone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from scalezero.serving import launcher
from scalezero.serving.settings import QueueSettings
from scalezero.serving.strategies import registered
from scalezero.serving.strategies.base import Policy

COMPLETION = {"prompt": "hello", "max_tokens": 4}
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def assert_error_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    """The OpenAI error body: {"error": {"message", "type", "param", "code"}}."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


def stream(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list]:
    """POST a streaming request; the data payloads of its SSE events (JSON decoded)."""
    payloads: list[Any] = []
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return response, payloads


def state_of(gw: RunningGateway) -> dict[str, Any]:
    return gw.client.get("/state").json()["deployments"][gw.config.deployment]


def spawn_count(gw: RunningGateway) -> int:
    return gw.event_names().count("spawn")


async def _post_many(url: str, path: str, body: dict[str, Any], n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n + 5)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits,
                                 trust_env=False) as client:
        return await asyncio.gather(*(client.post(path, json=body) for _ in range(n)))


def post_many(gw: RunningGateway, n: int, path: str = "/v1/completions",
              body: dict[str, Any] | None = None) -> list[httpx.Response]:
    """``n`` requests sent at once."""
    return asyncio.run(_post_many(gw.url, path, body or COMPLETION, n))


# ----------------------------------------------------------------- OpenAI routes


def test_openai_routes_json_and_stream(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("keep_warm")
    models = gw.client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["fake"]

    first = gw.client.post("/v1/completions", json=COMPLETION)
    assert first.status_code == 200
    assert first.json()["choices"][0]["text"].split() == ["tok0", "tok1", "tok2", "tok3"]
    assert first.headers["x-scalezero-cold"] == "true"
    assert float(first.headers["x-scalezero-queue-wait-ms"]) > 0
    assert first.headers["x-scalezero-start-tier"] == "host_cached"

    chat = gw.client.post("/v1/chat/completions", json={**CHAT, "model": "fake"})
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["role"] == "assistant"
    assert chat.headers["x-scalezero-cold"] == "false"
    assert chat.headers["x-scalezero-start-tier"] == "loaded"
    assert chat.headers["x-scalezero-instance"] == first.headers["x-scalezero-instance"]

    response, events = stream(gw.client, "/v1/completions", COMPLETION)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-scalezero-cold"] == "false"
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]).split() == [
        "tok0", "tok1", "tok2", "tok3"]

    response, events = stream(gw.client, "/v1/chat/completions", CHAT)
    assert response.status_code == 200 and events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert spawn_count(gw) == 1


def test_stream_is_relayed_token_by_token(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("keep_warm", fake_args=["--token-delay-s", "0.25"])
    arrivals_s: list[float] = []
    with gw.client.stream("POST", "/v1/completions",
                          json={**COMPLETION, "max_tokens": 5, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals_s.append(time.monotonic())
    # Five tokens 0.25 s apart: a buffering proxy would deliver them all at once.
    assert len(arrivals_s) == 6  # five tokens and the finish chunk
    assert arrivals_s[-1] - arrivals_s[0] > 0.6


def test_client_leaving_mid_stream_frees_the_instance(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("keep_warm", fake_args=["--token-delay-s", "0.1", "--max-generate", "100"])
    with gw.client.stream("POST", "/v1/completions",
                          json={**COMPLETION, "max_tokens": 100, "stream": True}) as response:
        lines = response.iter_lines()
        while not next(lines).startswith("data: {"):
            pass
    # The client hung up after the first token of a ten-second stream.
    gw.wait_for(lambda: gw.pool.in_flight == 0, 3, "the relay to stop")
    assert gw.client.post("/v1/completions", json=COMPLETION).status_code == 200


# ------------------------------------------------------------------ activator


def test_concurrent_requests_at_zero_cause_one_cold_start(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("naive", fake_args=["--load-delay-s", "0.5"])
    assert state_of(gw)["instances"] == []
    responses = post_many(gw, 50)
    assert [r.status_code for r in responses] == [200] * 50
    assert spawn_count(gw) == 1
    assert gw.pool.cold_starts == 1
    assert {r.headers["x-scalezero-instance"] for r in responses} == {"i1"}
    assert any(r.headers["x-scalezero-cold"] == "true" for r in responses)
    # naive: back to zero once nothing is in flight
    gw.wait_for(lambda: state_of(gw)["instances"] == [], 10, "scale to zero")


def test_cold_start_timeout_gives_504_and_start_goes_on(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(
        "keep_warm", fake_args=["--load-delay-s", "1.0"],
        limits=QueueSettings(cold_start_timeout_s=0.2).pool_limits(),
    )
    error = assert_error_shape(gw.client.post("/v1/completions", json=COMPLETION), 504)
    assert error["type"] == "timeout"
    gw.wait_ready()  # the start the timed-out request triggered still completes
    response = gw.client.post("/v1/completions", json=COMPLETION)
    assert response.status_code == 200
    assert response.headers["x-scalezero-cold"] == "false"
    assert spawn_count(gw) == 1


def test_full_queue_gives_429_with_retry_after(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(
        "always_on", fake_args=["--first-token-delay-s", "0.8"],
        limits=QueueSettings(max_queue=2, cold_start_timeout_s=30,
                             queue_timeout_s=30).pool_limits(),
    )
    gw.wait_ready()
    with concurrent.futures.ThreadPoolExecutor(3) as executor:
        futures = [
            executor.submit(httpx.post, gw.url + "/v1/completions", json=COMPLETION,
                            timeout=30, trust_env=False)
            for _ in range(3)
        ]
        # One being served, two waiting: the queue is full.
        gw.wait_for(lambda: gw.pool.in_flight == 1 and gw.pool.queue_depth == 2, 10,
                    "a full queue")
        rejected = gw.client.post("/v1/completions", json=COMPLETION)
        error = assert_error_shape(rejected, 429)
        assert error["type"] == "rate_limit_exceeded"
        assert int(rejected.headers["retry-after"]) >= 1
        assert [f.result().status_code for f in futures] == [200, 200, 200]


# ------------------------------------------------------------ anatomy, headers


def test_cold_start_anatomy_events(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    events_csv = tmp_path / "events.csv"
    gw = make_gateway("naive", events_path=events_csv)
    response = gw.client.post("/v1/completions", json=COMPLETION)
    assert response.status_code == 200 and response.headers["x-scalezero-cold"] == "true"
    gw.wait_for(lambda: "stopped" in gw.event_names(), 10, "the instance to stop")
    events = [e for e in gw.events if e.instance_id == "i1"]
    names = [e.event for e in events]
    anatomy = ["spawn", "runtime_ready", "model_loaded", "ready", "first_token"]
    assert names == [*anatomy, "drain", "stopped"]
    times = [e.t_s for e in events]
    assert times == sorted(times)
    assert events[0].reason == "on_demand" and events[0].pid
    # The request waited for the whole start, which the headers report.
    wait_ms = float(response.headers["x-scalezero-queue-wait-ms"])
    assert wait_ms >= (events[3].t_s - events[0].t_s) * 1000 * 0.9
    # The same record is written to CSV as it happens.
    rows = events_csv.read_text().splitlines()
    assert rows[0] == "t_s,instance_id,event,state,pid,reason,detail,tier"
    assert [row.split(",")[2] for row in rows[1:]] == names
    # The start's tier on its spawn row (the engine's stand-in reports host_cached).
    assert [row.split(",")[7] for row in rows[1:]] == ["host_cached"] + [""] * (len(names) - 1)


# ------------------------------------------------------------------ policies


@dataclasses.dataclass
class TwoUpPolicy(Policy):
    """Test policy: keeps one instance, bursts to two, stops the extra after idle_s."""

    name = "test_two_up"
    min_instances: int = 1
    max_instances: int = 2
    idle_s: float = 0.3
    arrivals: int = 0

    def idle_ttl_s(self, now_s: float) -> float | None:
        return self.idle_s

    def on_arrival(self, now_s: float) -> None:
        self.arrivals += 1


def test_registered_policy_is_used_by_name(make_gateway: GatewayFactory, fake_model: Path) -> None:
    import shlex

    from gateway_fixtures import fake_command

    from scalezero.cli import build_parser
    from scalezero.serving.cli import build_config

    with registered(TwoUpPolicy):
        parser = build_parser(only="serve")  # the CLI offers the registered name
        args = parser.parse_args([
            "serve", "--model", str(fake_model), "--strategy", "test_two_up",
            "--param", "idle_s=0.4",
            "--instance-command", shlex.join(fake_command("--first-token-delay-s", "1.5")),
        ])
        config = build_config(args)
    assert isinstance(config.policy, TwoUpPolicy) and config.policy.idle_s == 0.4
    gw = make_gateway.from_config(config)

    gw.wait_ready(1)  # min_instances: started before any request
    assert state_of(gw)["policy"]["policy"] == "test_two_up"
    assert gw.events[0].reason == "min_instances"
    responses = post_many(gw, 2)
    assert [r.status_code for r in responses] == [200, 200]
    # max_instances 2: the second request got a second instance instead of waiting.
    assert {r.headers["x-scalezero-instance"] for r in responses} == {"i1", "i2"}
    assert config.policy.arrivals == 2
    # Idle: back down to min_instances, through the policy's TTL.
    gw.wait_for(lambda: len(state_of(gw)["instances"]) == 1, 10, "scale down to one")
    drains = [e for e in gw.events if e.event == "drain"]
    assert [e.reason for e in drains] == ["idle_ttl"]
    time.sleep(0.6)
    assert state_of(gw)["ready"] == 1


def test_always_on_starts_before_requests_and_stays(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("always_on")
    gw.wait_ready()
    response = gw.client.post("/v1/completions", json=COMPLETION)
    assert response.headers["x-scalezero-cold"] == "false"
    time.sleep(0.5)
    assert state_of(gw)["ready"] == 1 and "drain" not in gw.event_names()


def test_keep_warm_stops_after_ttl(make_gateway: GatewayFactory) -> None:
    from scalezero.serving.strategies import make_policy

    gw = make_gateway(make_policy("keep_warm", {"keep_warm_ttl_s": 0.8}))
    assert gw.client.post("/v1/completions", json=COMPLETION).status_code == 200
    time.sleep(0.3)
    assert state_of(gw)["ready"] == 1  # still within the TTL
    second = gw.client.post("/v1/completions", json=COMPLETION)
    assert second.headers["x-scalezero-cold"] == "false"
    gw.wait_for(lambda: state_of(gw)["instances"] == [], 10, "the TTL to expire")
    assert [e.reason for e in gw.events if e.event == "drain"] == ["idle_ttl"]


# ------------------------------------------------------------ process hygiene


def test_instances_run_in_their_own_process_group(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("always_on")
    gw.wait_ready()
    pid = state_of(gw)["instances"][0]["pid"]
    assert os.getpgid(pid) == pid != os.getpgrp()


def test_always_on_replaces_an_instance_that_dies_while_idle(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway("always_on")
    gw.wait_ready()
    pid = state_of(gw)["instances"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    gw.wait_for(lambda: [i["instance_id"] for i in state_of(gw)["instances"]] == ["i2"]
                and state_of(gw)["ready"] == 1, 10, "a replacement instance")
    died = [e for e in gw.events if e.event == "died"]
    assert len(died) == 1 and died[0].pid == pid and "exit code -9" in died[0].detail
    assert gw.client.post("/v1/completions", json=COMPLETION).status_code == 200


def test_bad_model_file_gives_503_then_next_request_retries(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"this is not a model")
    gw = make_gateway("naive", spec={"model_path": model})
    error = assert_error_shape(gw.client.post("/v1/completions", json=COMPLETION), 503)
    assert error["type"] == "instance_start_failed"
    assert "not a GGUF file" in error["message"]
    failed = [e for e in gw.events if e.event == "start_failed"]
    assert len(failed) == 1 and "not a GGUF file" in failed[0].detail
    model.write_bytes(b"GGUF" + bytes(60))  # fixed: the next request starts afresh
    assert gw.client.post("/v1/completions", json=COMPLETION).status_code == 200
    assert spawn_count(gw) == 2


def test_crash_at_load_gives_503_to_all_waiters_then_retries(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway("naive", control={"fail_at_load": True, "load_delay_s": 0.3})
    responses = post_many(gw, 5)
    for response in responses:
        error = assert_error_shape(response, 503)
        assert "simulated failure while loading" in error["message"]
    assert spawn_count(gw) == 1  # one start for all five, one failure for all five
    assert gw.control_path is not None
    gw.control_path.write_text("{}")
    assert gw.client.post("/v1/completions", json=COMPLETION).status_code == 200
    assert spawn_count(gw) == 2


def test_port_taken_gives_503_then_retries(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1]]
    real_free_port = launcher.free_tcp_port
    # The first instance is handed a port someone else holds (a lost race for it).
    monkeypatch.setattr(
        launcher, "free_tcp_port", lambda host: ports.pop() if ports else real_free_port(host)
    )
    try:
        gw = make_gateway("naive")
        error = assert_error_shape(gw.client.post("/v1/completions", json=COMPLETION), 503)
        assert "address already in use" in error["message"].lower()
        assert gw.client.post("/v1/completions", json=COMPLETION).status_code == 200
    finally:
        taken.close()


def test_slow_start_past_ready_timeout_gives_503_and_is_killed(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway("naive", fake_args=["--load-delay-s", "30"],
                      spec={"ready_timeout_s": 0.5})
    error = assert_error_shape(gw.client.post("/v1/completions", json=COMPLETION), 503)
    assert "not ready after 0.5 s" in error["message"]
    assert wait_gone(gw.spawned_pids(), 10) == []


def test_instance_dying_mid_request_gives_502_and_is_replaced(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway("keep_warm", fake_args=["--crash-after-tokens", "2",
                                              "--crash-trigger", "CRASH"])
    assert gw.client.post("/v1/completions", json=COMPLETION).status_code == 200
    error = assert_error_shape(
        gw.client.post("/v1/completions", json={**COMPLETION, "prompt": "CRASH now"}), 502
    )
    assert error["type"] == "upstream_error"
    died = [e for e in gw.events if e.event == "died"]
    assert len(died) == 1 and died[0].instance_id == "i1" and "exit code 70" in died[0].detail
    again = gw.client.post("/v1/completions", json=COMPLETION)
    assert again.status_code == 200 and again.headers["x-scalezero-instance"] == "i2"


def test_instance_dying_mid_stream_sends_sse_error_and_is_replaced(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway("keep_warm", fake_args=["--crash-after-tokens", "2",
                                              "--crash-trigger", "CRASH"])
    response, events = stream(gw.client, "/v1/chat/completions",
                              {**CHAT, "messages": [{"role": "user", "content": "CRASH"}]})
    assert response.status_code == 200  # the stream had begun
    contents = [e["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert contents == [None, "tok0 ", "tok1 "]  # role chunk, two tokens
    assert events[-1]["error"]["type"] == "upstream_error"
    response, events = stream(gw.client, "/v1/chat/completions", CHAT)
    assert response.status_code == 200 and events[-1] == "[DONE]"
    assert response.headers["x-scalezero-instance"] == "i2"


# ------------------------------------------------------- health, metrics, state


def _metrics(gw: RunningGateway, headers: dict[str, str] | None = None) -> dict[tuple, float]:
    text = gw.client.get("/metrics", headers=headers).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return samples


def test_healthz_metrics_and_state(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("keep_warm", fake_args=["--first-token-delay-s", "0.8"])
    assert gw.client.get("/healthz").json() == {"status": "ok"}
    with concurrent.futures.ThreadPoolExecutor(2) as executor:
        futures = [
            executor.submit(httpx.post, gw.url + "/v1/completions", json=COMPLETION,
                            timeout=30, trust_env=False)
            for _ in range(2)
        ]
        gw.wait_for(lambda: gw.pool.in_flight == 1 and gw.pool.queue_depth == 1, 10,
                    "one request served, one queued")
        busy = _metrics(gw)
        state = state_of(gw)
        assert [f.result().status_code for f in futures] == [200, 200]
    dep = ("deployment", "fake")
    assert busy[("scalezero_in_flight", dep)] == 1
    assert busy[("scalezero_queue_depth", dep)] == 1
    assert busy[("scalezero_instances", dep, ("state", "ready"))] == 1
    assert state["in_flight"] == 1 and state["queue_depth"] == 1
    assert state["instances"][0]["state"] == "ready"
    assert state["policy"]["policy"] == "keep_warm"
    assert set(state["instances"][0]["phases"]) >= {"runtime_ready", "model_loaded", "listening"}

    gw.client.get("/nowhere")
    after = _metrics(gw)
    ok = ("scalezero_requests_total", ("route", "/v1/completions"), ("status", "200"))
    assert after[ok] == 2
    assert after[("scalezero_requests_total", ("route", "unmatched"), ("status", "404"))] == 1
    assert after[("scalezero_cold_starts_total", dep)] == 1
    assert after[("scalezero_cold_start_seconds_count", dep)] == 1
    assert 0 < after[("scalezero_cold_start_seconds_sum", dep)] < 30
    assert after[("scalezero_in_flight", dep)] == 0
    assert after[("scalezero_instances", dep, ("state", "starting"))] == 0


def test_api_key_guards_everything_but_healthz(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("naive", api_key="s3cret")
    assert gw.client.get("/healthz").status_code == 200
    for method, path in [("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/state"),
                         ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/nowhere"),
                         ("POST", "/v1/completions"), ("POST", "/v1/chat/completions")]:
        response = gw.client.request(method, path, json=COMPLETION)
        assert assert_error_shape(response, 401)["type"] == "authentication_error", path
    wrong = gw.client.get("/v1/models", headers={"authorization": "Bearer nope"})
    assert_error_shape(wrong, 401)
    assert spawn_count(gw) == 0  # a refused request never starts an instance
    good = {"authorization": "Bearer s3cret"}
    assert gw.client.get("/v1/models", headers=good).status_code == 200
    assert gw.client.get("/state", headers={"x-api-key": "s3cret"}).status_code == 200
    assert gw.client.post("/v1/completions", json=COMPLETION, headers=good).status_code == 200
    refused = _metrics(gw, good)
    assert refused[("scalezero_requests_total", ("route", "unmatched"), ("status", "401"))] == 1
    assert refused[("scalezero_requests_total", ("route", "/state"), ("status", "401"))] == 1


# ----------------------------------------------------------------- bad input

BAD_INPUTS: list[tuple[str, str, bytes, int]] = [
    ("POST", "/v1/completions", b"{not json", 400),
    ("POST", "/v1/completions", b"", 400),
    ("POST", "/v1/completions", b"[1, 2]", 400),
    ("POST", "/v1/completions", b"\xff\xfe\x00", 400),
    ("POST", "/v1/completions", b"[" * 4000, 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "temperature": NaN}', 400),
    ("POST", "/v1/completions", b'{"prompt": 5}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": "many"}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": 0}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": 1000000000000}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "stream": []}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "logit_bias": {"99999": 1}}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "logit_bias": {"abc": 1}}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "model": "gpt-17"}', 404),
    ("POST", "/v1/chat/completions", b'{"messages": "hi"}', 400),
    ("POST", "/v1/chat/completions", b'{"messages": []}', 400),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "wizard", "content": "x"}]}', 400),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user"}]}', 400),
    ("POST", "/v1/completions", b'{"prompt": "' + b"a" * 5000 + b'"}', 413),
    ("POST", "/v1/completions", b'{"prompt": "' + b"a" * (4 << 20) + b'"}', 413),
    ("POST", "/v1/embeddings", b"{}", 404),
    ("GET", "/v1/completions", b"", 405),
    ("DELETE", "/v1/models", b"", 405),
]


def test_bad_input_gets_clear_4xx_and_gateway_keeps_serving(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway("keep_warm", max_body_bytes=4096, vocab_size=1000)
    for method, path, body, status in BAD_INPUTS:
        response = gw.client.request(method, path, content=body,
                                     headers={"content-type": "application/json"})
        assert response.status_code == status, (path, body[:60], response.text)
        assert_error_shape(response, status)
    # A body too large without a declared length (chunked) is cut off as well.
    chunks = (b'{"prompt": "' + b"a" * 1000 for _ in range(10))
    assert_error_shape(gw.client.post("/v1/completions", content=chunks), 413)
    assert spawn_count(gw) == 0  # nothing reached an instance
    assert gw.client.post("/v1/completions", json=COMPLETION).status_code == 200


_JSON_LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)
_MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["system", "user", "assistant", "tool"]) | _JSON,
        "content": st.text(max_size=20) | _JSON,
    },
)
_BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["fake", "", "other"]) | _JSON,
        "prompt": st.text(max_size=30) | st.lists(st.text(max_size=5), max_size=2) | _JSON,
        "messages": st.lists(_MESSAGE, max_size=3) | _JSON,
        "max_tokens": st.integers(min_value=-5, max_value=10**13) | _JSON,
        "temperature": st.floats(allow_nan=False) | _JSON,
        "top_p": st.floats(allow_nan=False) | _JSON,
        "top_k": st.integers() | _JSON,
        "seed": st.integers() | _JSON,
        "stream": st.booleans() | _JSON,
        "stop": st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=6) | _JSON,
        "logit_bias": st.dictionaries(
            st.text(max_size=6) | st.integers(0, 10**10).map(str),
            st.floats(allow_nan=False) | _JSON, max_size=3,
        ) | _JSON,
        "presence_penalty": st.floats(allow_nan=False) | _JSON,
        "user": st.text(max_size=300) | _JSON,
        "echo": st.booleans() | _JSON,
    },
)


def test_property_client_input_never_causes_5xx(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("always_on", fake_args=["--max-generate", "3"],
                      max_body_bytes=2048, vocab_size=49152)
    gw.wait_ready()

    @settings(max_examples=250, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(
        path=st.sampled_from(["/v1/completions", "/v1/chat/completions"]),
        body=_BODY.map(lambda b: json.dumps(b).encode()) | _JSON.map(
            lambda v: json.dumps(v).encode()) | st.binary(max_size=40),
    )
    def check(path: str, body: bytes) -> None:
        with gw.client.stream("POST", path, content=body,
                              headers={"content-type": "application/json"}) as response:
            payload = response.read()
        assert response.status_code < 500, (path, body, payload)
        if response.status_code >= 400:
            assert_error_shape(response, response.status_code)
        elif response.headers["content-type"].startswith("application/json"):
            assert json.loads(payload)["choices"]

    check()
    assert state_of(gw)["ready"] == 1 and "died" not in gw.event_names()
