"""The gateway in front of llama.cpp's own server (the native engine, ``llama-server``)
and the default model: streamed answers as clients and the replay read them, usage, the
cold start's phases, and no server left behind.

The binary is the one tools/setup-venv.sh builds (or SCALEZERO_LLAMA_SERVER). These tests
are skipped only when setup did not build it because the build is switched off
(SCALEZERO_NATIVE_ENGINE=0) or failed (the skip gives setup's reason); a binary missing
for any other reason fails them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from gateway_fixtures import GatewayFactory, RunningGateway

from scalezero.models.gguf import eog_token_ids
from scalezero.serving.settings import GatewaySettings, InstanceSettings, QueueSettings
from scalezero.serving.tokens import count_tokens_isolated
from scalezero.system.engine_build import native_server

pytestmark = pytest.mark.slow


def native_binary() -> Path:
    found = native_server()
    if found.switched_off or found.failed:
        pytest.skip(f"llama-server {found.reason}")
    assert found.path is not None, f"llama-server {found.reason}"
    return found.path


def start_native_gateway(make_gateway: GatewayFactory, model: Path,
                         concurrency: int = 2) -> RunningGateway:
    settings = GatewaySettings(
        model_path=model, model_name="smollm2", policy="keep_warm",
        instance=InstanceSettings(engine="llama_server", n_ctx=512, n_threads=2,
                                  ready_timeout_s=60.0, stop_grace_s=3.0),
        gateway=QueueSettings(cold_start_timeout_s=60.0, queue_timeout_s=60.0,
                              instance_concurrency=concurrency),
    )
    return make_gateway.from_config(settings.gateway_config())


def _events(lines: list[str]) -> list[dict[str, Any]]:
    payloads = [line[5:].strip() for line in lines if line.startswith("data:")]
    assert payloads[-1] == "[DONE]", payloads[-3:]
    return [json.loads(p) for p in payloads[:-1]]


def _stream(gw: RunningGateway, path: str, body: dict[str, Any]
            ) -> tuple[httpx.Headers, list[dict[str, Any]]]:
    with httpx.Client(base_url=gw.url, timeout=120.0, trust_env=False) as client, \
            client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        return response.headers, _events(list(response.iter_lines()))


def native_servers(binary: Path) -> list[psutil.Process]:
    """Live llama-server processes of this binary (what a leak would leave)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0] == str(binary) and proc.info["status"] != "zombie":
            found.append(proc)
    return found


def test_native_engine_streams_a_chat_and_a_completion_through_the_gateway(
    make_gateway: GatewayFactory, real_model: Path,
) -> None:
    binary = native_binary()
    before = {p.pid for p in native_servers(binary)}
    gw = start_native_gateway(make_gateway, real_model)

    # A completion as the replay sends it: greedy, end of generation banned, so every
    # requested token comes, one streamed chunk each, then the finish reason and usage.
    prompt = "The capital of France is"
    banned = {str(token): -100.0 for token in eog_token_ids(real_model)}
    headers, chunks = _stream(gw, "/v1/completions", {
        "model": "smollm2", "prompt": prompt, "max_tokens": 12, "temperature": 0.0,
        "seed": 1, "logit_bias": banned, "stream_options": {"include_usage": True},
    })
    assert headers["x-scalezero-cold"] == "true"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    with_text = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] is None
                 and "text" in c["choices"][0]]
    assert len(with_text) == 12  # what the replay counts as tokens
    assert all(c["model"] == "smollm2" and c["object"] == "text_completion" for c in chunks)
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finish] == ["length"]
    # The prompt's tokens as the gateway's counter counts them for the replay's records.
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == count_tokens_isolated(real_model, [prompt])[0]
    assert usage["total_tokens"] == usage["prompt_tokens"] + 12

    # A chat answer through the official client, warm now, with usage at the end.
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0,
                           timeout=120)
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    streamed = list(client.chat.completions.create(
        model="smollm2", messages=story, max_completion_tokens=10, temperature=0, seed=1,
        stream=True, stream_options={"include_usage": True},
    ))
    assert streamed[-1].choices == [] and streamed[-1].usage is not None
    assert streamed[-1].usage.completion_tokens == 10
    pieces = [c.choices[0].delta.content for c in streamed
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2  # token by token, not one block
    whole = client.chat.completions.create(
        model="smollm2", messages=story, max_completion_tokens=10, temperature=0, seed=1)
    assert whole.choices[0].message.content == "".join(pieces)
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == streamed[-1].usage.prompt_tokens

    # A prompt over the slot's context: refused with OpenAI's code, as with the other engine.
    too_long = httpx.post(gw.url + "/v1/completions", timeout=60, trust_env=False, json={
        "model": "smollm2", "prompt": "word " * 600, "max_tokens": 4})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"

    # One cold start, its phases read from llama-server's log, in order.
    spawned = [e for e in gw.events if e.event == "spawn"]
    assert len(spawned) == 1
    times = {e.event: e.t_s for e in gw.events if e.instance_id == spawned[0].instance_id}
    assert (times["spawn"] < times["runtime_ready"] < times["model_loaded"]
            <= times["ready"] < times["first_token"])
    pid = spawned[0].pid
    assert pid is not None and psutil.Process(pid).cmdline()[0] == str(binary)
    assert "--parallel" in psutil.Process(pid).cmdline()

    gw.stop()  # fails if an instance outlives the gateway
    assert {p.pid for p in native_servers(binary)} <= before
