"""The gateway in front of the real llama.cpp server and the default model (SmolLM2-135M).

Fewer and slower than ``test_gateway.py``: the official OpenAI client end to end, the
anatomy of a real cold start, and a real instance dying with a SIGKILLed gateway.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from gateway_fixtures import GatewayFactory, GatewayProcess, wait_gone
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

API_KEY = "test-key"


def test_openai_client_against_gateway(make_gateway: GatewayFactory, real_model: Path) -> None:
    gw = make_gateway("keep_warm", real_model=real_model, api_key=API_KEY)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=API_KEY, max_retries=0,
                           timeout=120)
    assert [m.id for m in client.models.list().data] == ["smollm2"]

    completion = client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0
    )
    assert completion.choices[0].text and completion.usage.completion_tokens >= 1

    chat = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=6,
        temperature=0,
    )
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content

    pieces = []
    for chunk in client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Count to three."}],
        max_tokens=8, temperature=0, stream=True,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) >= 2  # token by token, not one block

    streamed = [
        chunk.choices[0].text
        for chunk in client.completions.create(
            model="smollm2", prompt="Once upon a time", max_tokens=6, stream=True
        )
        if chunk.choices
    ]
    assert len(streamed) >= 2 and "".join(streamed)

    # The current name of the output limit; the model would go on well past 5 tokens.
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    limited = client.chat.completions.create(
        model="smollm2", messages=story, max_completion_tokens=5, temperature=0
    )
    assert limited.usage.completion_tokens == 5
    assert limited.choices[0].finish_reason == "length"

    # Usage at the end of a stream, the same as the whole answer's (same greedy output).
    whole = client.chat.completions.create(
        model="smollm2", messages=story, max_completion_tokens=12, temperature=0, seed=1
    )
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=story, max_completion_tokens=12, temperature=0, seed=1,
        stream=True, stream_options={"include_usage": True},
    ))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens == 12
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content

    with pytest.raises(openai.BadRequestError) as several:
        client.chat.completions.create(model="smollm2", messages=story, n=3)
    assert several.value.param == "n"

    # Errors come back in OpenAI's shape, so the client raises its typed exceptions.
    with pytest.raises(openai.NotFoundError) as not_found:
        client.completions.create(model="gpt-17", prompt="x", max_tokens=2)
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="smollm2", prompt="x", max_tokens=10**9)
    assert bad.value.param == "max_tokens"
    wrong_key = openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.models.list()
    assert gw.pool.cold_starts == 1


def test_real_cold_start_anatomy(make_gateway: GatewayFactory, real_model: Path) -> None:
    gw = make_gateway("keep_warm", real_model=real_model)
    body: dict[str, Any] = {"prompt": "Hello", "max_tokens": 4, "stream": True}
    sent_s = time.monotonic()
    with gw.client.stream("POST", "/v1/completions", json=body) as response:
        lines = list(response.iter_lines())
    assert response.status_code == 200 and "data: [DONE]" in lines
    assert response.headers["x-scalezero-cold"] == "true"
    wait_ms = float(response.headers["x-scalezero-queue-wait-ms"])

    events = {e.event: e for e in gw.events if e.instance_id == "i1"}
    order = ["spawn", "runtime_ready", "model_loaded", "ready", "first_token"]
    assert list(events) == order
    times = [events[name].t_s for name in order]
    assert times == sorted(times)
    assert sent_s <= times[0] and times[-1] - times[0] < 60
    # The wait the header reports is the instance's start (spawn to ready), give or take.
    start_ms = (events["ready"].t_s - events["spawn"].t_s) * 1000
    assert start_ms * 0.9 <= wait_ms <= start_ms + 1000
    assert events["spawn"].pid and events["spawn"].reason == "on_demand"

    warm = gw.client.post("/v1/completions", json={**body, "stream": False})
    assert warm.status_code == 200 and warm.headers["x-scalezero-cold"] == "false"
    assert float(warm.headers["x-scalezero-queue-wait-ms"]) < 50

    metrics = {
        (s.name, s.labels.get("deployment")): s.value
        for family in text_string_to_metric_families(gw.client.get("/metrics").text)
        for s in family.samples
    }
    assert metrics[("scalezero_cold_start_seconds_count", "smollm2")] == 1
    assert metrics[("scalezero_cold_start_seconds_sum", "smollm2")] == pytest.approx(
        start_ms / 1000, rel=0.05
    )


def test_bad_model_file_real_server_503(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)))  # the magic, then an impossible version
    gw = make_gateway("naive", real_model=model)
    for attempt in (1, 2):  # each request tries a fresh start
        response = gw.client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["type"] == "instance_start_failed"
        assert "exited with code" in error["message"]
        names = gw.event_names()
        assert names.count("spawn") == names.count("start_failed") == attempt
        assert "ready" not in names


def test_sigkill_of_gateway_takes_real_instances_down(
    gateway_process: Any, real_model: Path
) -> None:
    gw: GatewayProcess = gateway_process("--model", str(real_model), "--strategy", "always_on",
                                         "--n-ctx", "512")
    gw.wait_healthy()
    deadline = time.monotonic() + 60
    while not next(iter(gw.state()["deployments"].values()))["ready"]:
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.1)
    import httpx

    answer = httpx.post(gw.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2},
                        timeout=60, trust_env=False)
    assert answer.status_code == 200
    pids = sorted(gw.instance_pids)
    assert pids and wait_gone(pids, 0) == pids
    os.kill(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(10)
    assert wait_gone(pids, 5.0) == [], "instances outlived the SIGKILLed gateway"
