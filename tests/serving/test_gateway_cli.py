"""``scalezero serve`` as a user runs it: options, help, defaults, a real gateway process."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from gateway_fixtures import GatewayProcess, fake_command, wait_gone

from scalezero.cli import build_parser, main
from scalezero.errors import UserError
from scalezero.models.gguf import vocab_size
from scalezero.serving.cli import build_config, load_settings


def serve_parser() -> argparse.ArgumentParser:
    parser = build_parser(only="serve")
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["serve"]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(only="serve").parse_args(["serve", *argv])


def test_help_documents_every_option_without_empty_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: [])" not in text
    assert "(default: False)" not in text
    for action in serve_parser()._actions:
        assert action.help, f"{action.option_strings} has no help"
        for option in action.option_strings:
            assert option in text
    for strategy in ("always_on", "naive", "keep_warm"):
        assert strategy in text
    assert "(default: 127.0.0.1)" in text


def test_options_reach_the_config(fake_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCALEZERO_API_KEY", raising=False)
    args = parse("--model", str(fake_model), "--strategy", "keep_warm",
                 "--keep-warm-ttl-s", "7.5", "--max-queue", "3", "--cold-start-timeout-s", "9",
                 "--instance-command", "'{python}' '/path with space/x.py' --port {port}")
    settings = load_settings(args)
    assert settings.host == "127.0.0.1" and settings.port == 8000
    config = build_config(args)
    assert config.policy.name == "keep_warm" and config.policy.keep_warm_ttl_s == 7.5
    assert config.limits.max_queue == 3 and config.limits.cold_start_timeout_s == 9
    assert config.spec.command == ("{python}", "/path with space/x.py", "--port", "{port}")
    assert config.api_key is None
    assert config.deployment == "fake-model"


def test_api_key_from_flag_or_environment(
    fake_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALEZERO_API_KEY", "from-env")
    base = ("--model", str(fake_model), "--strategy", "naive")
    assert build_config(parse(*base)).api_key == "from-env"
    assert build_config(parse(*base, "--api-key", "from-flag")).api_key == "from-flag"


def test_user_errors_are_reported_plainly(
    fake_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model", "/no/such.gguf", "--strategy", "naive"]) == 2
    assert "file not found" in capsys.readouterr().err
    with pytest.raises(UserError, match="no parameter"):
        build_config(parse("--model", str(fake_model), "--strategy", "naive",
                           "--keep-warm-ttl-s", "5"))
    with pytest.raises(SystemExit):
        parse("--model", str(fake_model), "--strategy", "sometimes")


def test_vocab_size_read_from_gguf_header(real_model: Path, fake_model: Path) -> None:
    started_s = time.monotonic()
    assert vocab_size(real_model) == 49152
    assert time.monotonic() - started_s < 1.0  # the header only, not the whole vocabulary
    assert vocab_size(fake_model) is None


def _wait_ready(gw: GatewayProcess, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        pool = next(iter(gw.state(headers)["deployments"].values()))
        if pool["ready"]:
            return pool
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)


def test_gateway_process_binds_loopback_guards_with_env_key_and_dies_cleanly(
    gateway_process: Any, fake_model: Path
) -> None:
    gw: GatewayProcess = gateway_process(
        "--model", str(fake_model), "--strategy", "always_on",
        "--instance-command", shlex.join(fake_command()),
        env={"SCALEZERO_API_KEY": "k"},
    )
    gw.wait_healthy()
    listening = [c.laddr for c in psutil.Process(gw.proc.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", gw.port)]
    assert httpx.get(gw.url + "/state", trust_env=False).status_code == 401
    key = {"authorization": "Bearer k"}
    pool = _wait_ready(gw, key)
    pids = [i["pid"] for i in pool["instances"]]
    assert pids and all(os.getpgid(pid) == pid for pid in pids)  # own process groups
    os.kill(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(10)
    assert wait_gone(pids, 5.0) == [], "instances outlived the SIGKILLed gateway"


def test_sigterm_stops_gateway_and_its_instances_cleanly(
    gateway_process: Any, fake_model: Path, tmp_path: Path
) -> None:
    events_csv = tmp_path / "events.csv"
    gw: GatewayProcess = gateway_process(
        "--model", str(fake_model), "--strategy", "always_on", "--events-csv", str(events_csv),
        "--instance-command", shlex.join(fake_command()),
    )
    gw.wait_healthy()
    pids = [i["pid"] for i in _wait_ready(gw)["instances"]]
    os.kill(gw.proc.pid, signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal: the code says SIGTERM.
    assert gw.proc.wait(15) in (0, -signal.SIGTERM), gw.log()
    assert wait_gone(pids, 5.0) == []
    rows = [line.split(",") for line in events_csv.read_text().splitlines()[1:]]
    assert [(r[2], r[5]) for r in rows[-2:]] == [("drain", "shutdown"), ("stopped", "shutdown")]
