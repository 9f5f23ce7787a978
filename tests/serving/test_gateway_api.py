"""The gateway's OpenAI API as clients see it, against fake instances (fast).

Which request fields reach the engine and how, which are refused and how the refusal
names them, the usage chunk of a streamed answer, 5xx answers that carry a message and a
request id and are logged, the OpenAPI document (valid and complete), schema-driven
fuzzing with Schemathesis, and the official ``openai`` client reading each kind of error.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway_fixtures import GatewayFactory, RunningGateway
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from scalezero.serving.settings import QueueSettings

COMPLETION = {"prompt": "hello", "max_tokens": 4}
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
TESTS = Path(__file__).resolve().parents[1] / "support"


def sse_payloads(client: httpx.Client, path: str, body: dict[str, Any]) -> list[Any]:
    """POST a streaming request; the data of its events, JSON decoded (``[DONE]`` kept)."""
    payloads: list[Any] = []
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def recorded(path: Path) -> list[dict[str, Any]]:
    """What the fake instance received, request by request."""
    return [json.loads(line)["body"] for line in path.read_text().splitlines()]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


# ----------------------------------------------------------- what reaches the engine


def test_fields_reach_the_engine_translated(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    gw = make_gateway("keep_warm", fake_args=["--record", str(record)])
    chat = {
        "model": "fake",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "one"},
                                         {"type": "text", "text": "two"}], "name": "ann"},
            {"role": "assistant", "content": None, "refusal": None,
             "tool_calls": [{"id": "c1", "type": "function",
                             "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "max_tokens": 9, "max_completion_tokens": 3, "temperature": 0.5, "seed": 7,
        "stop": "END", "n": 1, "user": "u1", "metadata": {"k": "v"}, "store": False,
        "repetition_penalty": 1.2, "logprobs": True, "top_logprobs": 2,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "r", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "w"}}],
        "tool_choice": "required", "parallel_tool_calls": False, "service_tier": "auto",
        "stream_options": {"include_usage": True}, "stream": True,
    }
    sse_payloads(gw.client, "/v1/chat/completions", chat)
    completion = {"prompt": ["Once"], "max_tokens": 2, "echo": True, "logprobs": 1,
                  "best_of": 1, "top_k": 5, "min_p": 0.1, "ignore_eos": False}
    assert gw.client.post("/v1/completions", json=completion).status_code == 200

    sent_chat, sent_completion = recorded(record)
    assert sent_chat == {
        "model": "fake",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one\ntwo", "name": "ann"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        ],
        "max_tokens": 3,  # max_completion_tokens wins over max_tokens
        "temperature": 0.5, "seed": 7, "stop": ["END"], "repeat_penalty": 1.2,
        "logprobs": True, "top_logprobs": 2,
        "response_format": {"type": "json_object", "schema": {"type": "object"}},
        "tools": [{"type": "function", "function": {
            "name": "w", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": {"type": "function", "function": {"name": "w"}},
        "stream": True, "stream_options": {"include_usage": True},
    }
    assert sent_completion == {"model": "fake", "prompt": "Once", "max_tokens": 2,
                               "echo": True, "logprobs": 1, "top_k": 5, "min_p": 0.1}


def test_max_completion_tokens_limits_the_output(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("keep_warm", fake_args=["--max-generate", "40"])
    body = {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 5}
    answer = gw.client.post("/v1/chat/completions", json=body).json()
    assert answer["choices"][0]["message"]["content"].split() == [f"tok{i}" for i in range(5)]
    assert answer["usage"]["completion_tokens"] == 5
    both = gw.client.post("/v1/chat/completions", json={**body, "max_tokens": 12}).json()
    assert both["usage"]["completion_tokens"] == 5
    limited = gw.client.post("/v1/chat/completions",
                             json={**body, "max_completion_tokens": 10**6})
    assert error_of(limited, 400)["param"] == "max_completion_tokens"


# ---------------------------------------------------------------------- refusals

REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    ("/v1/completions", {}, "prompt", "missing_required_parameter"),
    ("/v1/completions", {"prompt": ""}, "prompt", "invalid_value"),
    ("/v1/completions", {"prompt": ["a", "b"]}, "prompt", "unsupported_parameter"),
    ("/v1/completions", {"prompt": [[1, 2]]}, "prompt", "unsupported_parameter"),
    ("/v1/completions", {"prompt": "x", "n": 3}, "n", "unsupported_parameter"),
    ("/v1/completions", {"prompt": "x", "best_of": 2}, "best_of", "unsupported_parameter"),
    ("/v1/completions", {"prompt": "x", "suffix": "y"}, "suffix", "unsupported_parameter"),
    ("/v1/completions", {"prompt": "x", "echo": True, "stream": True}, "echo",
     "unsupported_parameter"),
    ("/v1/completions", {"prompt": "x", "logprobs": 9}, "logprobs", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "ignore_eos": True}, "ignore_eos",
     "unsupported_parameter"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "5"}, "max_tokens", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "frobnicate": 1}, "frobnicate", "unknown_parameter"),
    ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": 1}},
     "stream_options.include_usage", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "repeat_penalty": 1.1, "repetition_penalty": 1.1},
     "repetition_penalty", "invalid_value"),
    ("/v1/chat/completions", {**CHAT, "n": 2}, "n", "unsupported_parameter"),
    ("/v1/chat/completions", {**CHAT, "top_logprobs": 2}, "top_logprobs", "invalid_value"),
    ("/v1/chat/completions", {**CHAT, "store": True}, "store", "unsupported_parameter"),
    ("/v1/chat/completions", {**CHAT, "audio": {"voice": "x"}}, "audio",
     "unsupported_parameter"),
    ("/v1/chat/completions", {**CHAT, "modalities": ["text", "audio"]}, "modalities",
     "unsupported_parameter"),
    ("/v1/chat/completions", {**CHAT, "reasoning_effort": "high"}, "reasoning_effort",
     "unsupported_parameter"),
    ("/v1/chat/completions", {**CHAT, "functions": [{"name": "f"}]}, "functions",
     "unsupported_parameter"),
    ("/v1/chat/completions", {**CHAT, "service_tier": "flex"}, "service_tier",
     "unsupported_parameter"),
    ("/v1/chat/completions", {**CHAT, "tools": [{"type": "function", "function": {"name": "w"}}]},
     "tools", "unsupported_parameter"),
    ("/v1/chat/completions",
     {**CHAT, "tools": [{"type": "function", "function": {"name": "a"}},
                        {"type": "function", "function": {"name": "b"}}],
      "tool_choice": "required"}, "tool_choice", "unsupported_parameter"),
    ("/v1/chat/completions",
     {**CHAT, "tools": [{"type": "function", "function": {"name": "a"}}],
      "tool_choice": {"type": "function", "function": {"name": "b"}}}, "tool_choice",
     "invalid_value"),
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema"}},
     "response_format", "invalid_value"),
    ("/v1/chat/completions",
     {**CHAT, "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "data:,"}}]}]},
     "messages[0].content", "unsupported_parameter"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "tool", "content": "x"}]},
     "messages[0].tool_call_id", "invalid_value"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user"}]},
     "messages[0].content", "invalid_value"),
]


def test_unsupported_or_invalid_fields_are_refused_by_name(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway("naive")
    for path, body, param, code in REFUSED:
        error = error_of(gw.client.post(path, json=body), 400)
        assert (error["param"], error["code"]) == (param, code), (body, error)
        assert param.split("[")[0].split(".")[0] in error["message"], error
    assert gw.event_names() == []  # no refused request started an instance


# ------------------------------------------------------------------ usage in streams


@pytest.mark.parametrize("path, body", [("/v1/chat/completions", CHAT),
                                        ("/v1/completions", COMPLETION)])
def test_include_usage_adds_a_usage_chunk(
    make_gateway: GatewayFactory, path: str, body: dict[str, Any]
) -> None:
    gw = make_gateway("keep_warm")
    events = sse_payloads(gw.client, path, {**body, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 1, "completion_tokens": 4,
                                    "total_tokens": 5}
    assert usage_chunk["id"] == events[0]["id"] and usage_chunk["object"] == events[0]["object"]
    assert all(event["choices"] for event in events[:-2])
    plain = sse_payloads(gw.client, path, body)  # not asked: no extra chunk
    assert len(plain) == len(events) - 1 and all(e["choices"] for e in plain[:-1])


# ----------------------------------------------------------------------- 5xx answers


def test_5xx_answers_carry_a_message_and_a_logged_request_id(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = make_gateway("keep_warm", fake_args=["--error-trigger", "FAIL",
                                              "--reject-trigger", "REJECT"])
    caplog.set_level(logging.INFO, logger="scalezero.serving")
    failed = gw.client.post("/v1/completions", json={**COMPLETION, "prompt": "FAIL"})
    error = error_of(failed, 502)  # the engine's 500 had an empty message
    request_id = failed.headers["x-request-id"]
    assert error["type"] == "upstream_error" and "HTTP 500" in error["message"]
    assert request_id in error["message"]
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].levelno == logging.ERROR

    rejected = gw.client.post("/v1/completions", json={**COMPLETION, "prompt": "REJECT"})
    assert "Field required" in error_of(rejected, 400)["message"]  # the engine's 422

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gw.pool, "acquire", broken)
    crashed = gw.client.post("/v1/chat/completions", json=CHAT)
    error = error_of(crashed, 500)
    request_id = crashed.headers["x-request-id"]
    assert error["type"] == "server_error" and request_id in error["message"]
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # with its traceback
    assert "a bug" in str(logged[0].exc_info[1])


def test_start_failure_503_names_the_request(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gw = make_gateway("naive", control={"fail_at_load": True})
    caplog.set_level(logging.INFO, logger="scalezero.serving")
    response = gw.client.post("/v1/completions", json=COMPLETION)
    error = error_of(response, 503)
    request_id = response.headers["x-request-id"]
    assert "simulated failure while loading" in error["message"]
    assert request_id in error["message"]
    assert any(request_id in r.getMessage() and "simulated failure" in r.getMessage()
               for r in caplog.records)


# ------------------------------------------------------------------- OpenAPI schema


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_document_is_valid_and_complete(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("naive", api_key="k", vocab_size=1000,
                      spec={"n_ctx": 512})
    gw.client.headers["authorization"] = "Bearer k"
    document = gw.client.get("/openapi.json").json()
    validate_openapi(document)

    resolver = Registry().with_resource("", DRAFT202012.create_resource(document)).resolver()
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        resolver.lookup(ref)  # raises if it does not resolve

    paths = document["paths"]
    for path in ("/v1/completions", "/v1/chat/completions"):
        responses = paths[path]["post"]["responses"]
        assert set(responses) == {"200", "400", "401", "404", "413", "429", "500", "502",
                                  "503", "504"}
        assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}
        for status, response in responses.items():
            if status != "200":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    served = gw.client.get("/metrics").headers["content-type"]
    assert served.startswith("text/plain")
    assert paths["/healthz"]["get"]["security"] == []

    schemas = document["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]["properties"]
    assert chat["model"]["anyOf"][0] == {"enum": ["fake"]}
    assert chat["max_completion_tokens"]["anyOf"][0]["maximum"] == 512
    pattern = re.compile(chat["logit_bias"]["anyOf"][0]["propertyNames"]["pattern"])
    assert pattern.match("999") and not pattern.match("1000") and not pattern.match("01")

    # Without an API key, nothing answers 401, so nothing documents it.
    open_gw = make_gateway("naive")
    open_document = open_gw.client.get("/openapi.json").json()
    statuses = {status for operations in open_document["paths"].values()
                for operation in operations.values() for status in operation["responses"]}
    assert "401" not in statuses and "securitySchemes" not in open_document["components"]


# ------------------------------------------------------------------------ fuzzing

#: Enough to reach every operation and field many times, and still well under a minute.
FUZZ_EXAMPLES = 100


def test_schemathesis_finds_nothing(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gw = make_gateway("always_on", fake_args=["--max-generate", "3"], api_key="k",
                      vocab_size=49152)
    gw.client.headers["authorization"] = "Bearer k"
    gw.wait_ready()
    # A body over the size limit is rejected with 413, which Schemathesis does not count
    # among rejections by default.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "404", "405", "413", "415", "422"]\n'
    )
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config),
        "run", gw.url + "/openapi.json", "--checks", "all", "--max-examples",
        str(FUZZ_EXAMPLES), "--seed", "1", "-H", "Authorization: Bearer k", "--no-color",
        "--output-sanitize", "false", "--workers", "1",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": str(TESTS)}
    started_s = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    elapsed_s = time.monotonic() - started_s
    summary = [line.strip() for line in run.stdout.splitlines()
               if line.startswith("====") or " generated, " in line]
    print(f"schemathesis ({elapsed_s:.1f} s): {' | '.join(summary)}")
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    assert "Tested: 6" in run.stdout  # every operation
    assert elapsed_s < 60
    assert gw.pool.snapshot()["ready"] == 1 and "died" not in gw.event_names()


# ------------------------------------------------------- openai client, each error


def test_openai_client_reads_each_kind_of_error(make_gateway: GatewayFactory) -> None:
    gw = make_gateway("keep_warm", api_key="k", max_body_bytes=4096,
                      fake_args=["--error-trigger", "FAIL"])
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "hi"}]

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="fake", messages=messages, n=2)
    assert bad.value.param == "n" and bad.value.code == "unsupported_parameter"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-17", messages=messages)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.APIStatusError) as too_large:
        client.completions.create(model="fake", prompt="x" * 5000)
    assert too_large.value.status_code == 413
    with pytest.raises(openai.InternalServerError) as upstream:
        client.completions.create(model="fake", prompt="FAIL", max_tokens=2)
    assert upstream.value.status_code == 502
    assert upstream.value.request_id and upstream.value.request_id in upstream.value.message

    busy = make_gateway("naive", api_key="k", fake_args=["--load-delay-s", "1"],
                        limits=QueueSettings(max_queue=0).pool_limits())
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=busy.url + "/v1", api_key="k", max_retries=0).completions.create(
            model="fake", prompt="x")
    slow = make_gateway("naive", fake_args=["--load-delay-s", "2"],
                        limits=QueueSettings(cold_start_timeout_s=0.2).pool_limits())
    with pytest.raises(openai.APIStatusError) as timeout:
        openai.OpenAI(base_url=slow.url + "/v1", api_key="-", max_retries=0).completions.create(
            model="fake", prompt="x")
    assert timeout.value.status_code == 504
    failing = make_gateway("naive", control={"fail_at_load": True})
    with pytest.raises(openai.InternalServerError) as start_failed:
        openai.OpenAI(base_url=failing.url + "/v1", api_key="-", max_retries=0
                      ).completions.create(model="fake", prompt="x")
    assert start_failed.value.status_code == 503


def test_openai_client_streams_usage(make_gateway: GatewayFactory) -> None:
    gw: RunningGateway = make_gateway("keep_warm")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="-", max_retries=0, timeout=30)
    chunks = list(client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "a b c"}], max_completion_tokens=3,
        stream=True, stream_options={"include_usage": True},
    ))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 3)
