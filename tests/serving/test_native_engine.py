"""The native engine (llama.cpp's llama-server) without a build: its command line, its
slots, and its start-up phases read from its log (a stand-in prints them)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import pytest
from gateway_fixtures import GatewayFactory, wait_gone

from scalezero.cli import build_parser
from scalezero.errors import UserError
from scalezero.serving.app import Gateway, _engine_error
from scalezero.serving.cli import load_settings
from scalezero.serving.events import Lifecycle
from scalezero.serving.launcher import InstanceProcess, InstanceSpec, parse_native_line
from scalezero.serving.settings import GatewaySettings, InstanceSettings, QueueSettings
from scalezero.system.procs import signal_group

FAKE_SERVER = Path(__file__).resolve().parents[1] / "support" / "fake_llama_server.py"


def _settings(fake_model: Path, instance: InstanceSettings, concurrency: int = 1,
              device: str = "cpu") -> GatewaySettings:
    return GatewaySettings(model_path=fake_model, model_name="m", policy="naive",
                           device=device, instance=instance,  # type: ignore[arg-type]
                           gateway=QueueSettings(instance_concurrency=concurrency))


def test_command_line_gives_each_slot_the_context_and_as_many_slots_as_the_pool_sends(
    fake_model: Path, server_binary: Path,
) -> None:
    instance = InstanceSettings(engine="llama_server", n_ctx=512, n_threads=2,
                                extra_args=("--no-warmup",))
    spec = _settings(fake_model, instance, concurrency=4).instance_spec()
    assert spec.native and spec.server_binary == server_binary.resolve()
    assert spec.health_path == "/health" and spec.parallel == 4
    command = spec.build_command(port=4321, parent_pid=99)
    # Wrapped so that it dies with the gateway, as custom commands are.
    assert command[:6] == [sys.executable, "-m", "scalezero.serving.guard", "--parent-pid",
                           "99", "--"]
    assert command[6:] == [
        str(server_binary.resolve()), "--log-prefix", "--log-timestamps",
        "--model", str(fake_model.resolve()), "--alias", "m",
        "--host", "127.0.0.1", "--port", "4321", "--ctx-size", "2048", "--parallel", "4",
        "--n-gpu-layers", "0", "--threads", "2", "--no-warmup",
    ]


def test_all_gpu_layers_is_all_for_llama_server(fake_model: Path, server_binary: Path) -> None:
    # -1 means all layers in the settings; llama-server reads -1 as "auto".
    spec = _settings(fake_model, InstanceSettings(engine="llama_server"),
                     device="cuda").instance_spec()
    args = spec.native_args(port=1)
    assert args[args.index("--n-gpu-layers") + 1] == "all"
    assert "--threads" not in args  # unset: llama-server's default


def test_the_python_engine_is_still_the_default(fake_model: Path) -> None:
    spec = _settings(fake_model, InstanceSettings(), concurrency=3).instance_spec()
    assert spec.engine == "llama_cpp_python" and not spec.native
    assert spec.health_path == "/v1/models" and spec.server_binary is None
    assert spec.build_command(1, 2)[:3] == [sys.executable, "-m", "scalezero.serving.instance"]


def test_a_custom_command_wins_over_the_engine(fake_model: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEZERO_LLAMA_SERVER", "/no/such/llama-server")
    instance = InstanceSettings(engine="llama_server", command=("srv", "--port", "{port}"))
    spec = _settings(fake_model, instance).instance_spec()
    assert not spec.native
    assert spec.build_command(7, 1)[-3:] == ["srv", "--port", "7"]


def test_llama_server_not_built_stops_with_the_reason(fake_model: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEZERO_LLAMA_SERVER", "/no/such/llama-server")
    with pytest.raises(UserError, match=r"llama_server.*not an executable file"):
        _settings(fake_model, InstanceSettings(engine="llama_server")).instance_spec()


def test_serve_takes_the_engine_flag(fake_model: Path) -> None:
    args = build_parser(only="serve").parse_args(
        ["serve", "--model", str(fake_model), "--strategy", "naive", "--engine",
         "llama_server"])
    assert load_settings(args).instance.engine == "llama_server"
    with pytest.raises(SystemExit):
        build_parser(only="serve").parse_args(["serve", "--engine", "vllm"])


def test_the_gateway_gives_instances_as_many_slots_as_its_pool_sends(
    fake_model: Path, server_binary: Path,
) -> None:
    config = _settings(fake_model, InstanceSettings(engine="llama_server")).gateway_config()
    limits = dataclasses.replace(config.limits, instance_concurrency=3)
    gateway = Gateway(dataclasses.replace(config, limits=limits))
    try:
        spec = next(iter(gateway.pools.values())).spec
        assert spec.parallel == 3
        assert spec.native_args(1)[spec.native_args(1).index("--parallel") + 1] == "3"
    finally:
        gateway.events.close()


def _native_spec(fake_model: Path, load_delay_s: float) -> InstanceSpec:
    settings = _settings(fake_model, InstanceSettings(
        engine="llama_server", extra_args=("--load-delay-s", str(load_delay_s)),
        ready_timeout_s=30.0, stop_grace_s=3.0))
    return settings.instance_spec()


def test_stamped_log_lines_are_parsed() -> None:
    assert parse_native_line("1.02.003.004 I srv    load_model: loading model 'm'") == (
        pytest.approx(62.003004), "srv    load_model: loading model 'm'")
    assert parse_native_line("warning: no usable GPU found") == (
        None, "warning: no usable GPU found")


def test_phases_come_from_the_log_and_ready_waits_for_the_load(
    fake_model: Path, server_binary: Path,
) -> None:
    spec = _native_spec(fake_model, load_delay_s=0.5)
    seen: list[tuple[str, float]] = []

    async def scenario() -> tuple[float, int | None, int | None]:
        proc = InstanceProcess("i1", spec)
        await proc.spawn(lambda phase, t_s: seen.append((str(phase), t_s)))
        # A busy gateway: the loop reads nothing for a while, and the first phase's line
        # waits in the pipe. Its time comes from llama-server's stamps, not from the read.
        time.sleep(0.4)
        try:
            ready_s = await proc.wait_ready()
        finally:
            code = await proc.stop()
        return ready_s, proc.pid, code

    ready_s, pid, code = asyncio.run(scenario())
    names = [name for name, _ in seen]
    assert names == ["spawn", "runtime_ready", "model_loaded"]
    times = dict(seen)
    # /health answered 503 during the load: ready only after it, and in order.
    assert 0.45 <= times["model_loaded"] - times["runtime_ready"] < 0.6
    assert times["spawn"] < times["runtime_ready"] < times["model_loaded"] <= ready_s
    assert code is not None and pid is not None
    assert not wait_gone([pid], 5.0)


def test_a_llama_server_printing_other_lines_has_spawn_and_ready_only(
    fake_model: Path, server_binary: Path, tmp_path: Path,
) -> None:
    quiet = tmp_path / "quiet-llama-server"
    quiet.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@" 2>/dev/null\n')
    quiet.chmod(0o755)
    spec = dataclasses.replace(_native_spec(fake_model, load_delay_s=0.2), server_binary=quiet)
    seen: list[str] = []

    async def scenario() -> float:
        proc = InstanceProcess("i1", spec)
        await proc.spawn(lambda phase, t_s: seen.append(str(phase)))
        try:
            return await proc.wait_ready()
        finally:
            await proc.stop()
            if proc.pid is not None:
                for pid in wait_gone([proc.pid], 5.0):
                    signal_group(pid, 9)

    started_s = asyncio.run(scenario())
    assert seen == [Lifecycle.SPAWN] and started_s > 0


def test_fields_llama_server_would_answer_otherwise_are_refused(
    make_gateway: GatewayFactory, server_binary: Path,
) -> None:
    gw = make_gateway("naive", spec={"engine": "llama_server", "command": None,
                                     "server_binary": server_binary})
    cases = [
        ("/v1/completions", {"prompt": "Hi", "echo": True}, "echo"),
        ("/v1/completions", {"prompt": "Hi", "logprobs": 1}, "logprobs"),
        ("/v1/chat/completions", {
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}}, "tools"),
    ]
    for path, body, param in cases:
        response = gw.client.post(path, json={"model": "fake", "max_tokens": 2, **body})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param and error["code"] == "unsupported_parameter"
        assert "llama-server" in error["message"]
    assert gw.spawned_pids() == []  # refused before any instance was asked


def test_llama_servers_context_error_keeps_openais_code() -> None:
    body = (b'{"error": {"code": 400, "message": "request (601 tokens) exceeds the available '
            b'context size (512 tokens)", "type": "exceed_context_size_error"}}')
    error = _engine_error(400, body, "i1", {})
    assert error.status_code == 400 and error.code == "context_length_exceeded"
