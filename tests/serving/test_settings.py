"""The gateway's settings: defaults stated once, read by serve, written by runs and the bench."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import pytest

from scalezero.cli import build_parser, main
from scalezero.errors import UserError
from scalezero.measure.settings import RunSettings, TelemetrySettings, config_sha256
from scalezero.serving.app import GatewayConfig
from scalezero.serving.cli import build_config, load_settings
from scalezero.serving.launcher import InstanceSpec
from scalezero.serving.pool import PoolLimits
from scalezero.serving.settings import (
    GatewaySettings,
    InstanceSettings,
    QueueSettings,
    field_default,
    serve_command,
)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(only="serve").parse_args(["serve", *argv])


#: The warm-tier fields of InstanceSpec keep a default that means "as before" (no idle
#: timer; starts leave the page cache alone), so that specs built outside the settings
#: (the simulator's virtual pool) need not name them; the settings always set cold_tier,
#: and with_sleep_timer sets sleep_idle_s.
DEFAULTS_AS_BEFORE = {("InstanceSpec", "sleep_idle_s"): None,
                      ("InstanceSpec", "cold_tier"): "host_cached"}


@pytest.mark.parametrize("runtime", [InstanceSpec, PoolLimits, GatewayConfig])
def test_runtime_objects_have_no_defaults_of_their_own(runtime: type) -> None:
    for field in dataclasses.fields(runtime):
        key = (runtime.__name__, field.name)
        if key in DEFAULTS_AS_BEFORE:
            assert field.default == DEFAULTS_AS_BEFORE[key], key
            continue
        assert field.default is dataclasses.MISSING, f"{runtime.__name__}.{field.name}"
        assert field.default_factory is dataclasses.MISSING, f"{runtime.__name__}.{field.name}"


def test_spec_and_limits_built_from_settings_equal_the_settings(fake_model: Path) -> None:
    instance = InstanceSettings(n_ctx=333, n_threads=3, extra_args=("--a", "1"),
                                ready_timeout_s=7.0, health_path="/health", stop_grace_s=2.0)
    queue = QueueSettings(max_queue=5, cold_start_timeout_s=6.0, queue_timeout_s=8.0,
                          instance_concurrency=2, failure_check_s=0.5)
    settings = GatewaySettings(model_path=fake_model, policy="naive", instance=instance,
                               gateway=queue, log_dir=Path("logs"))
    spec = settings.instance_spec()
    for name in ("n_ctx", "n_threads", "ready_timeout_s", "health_path", "stop_grace_s",
                 "host", "poll_interval_s"):
        assert getattr(spec, name) == getattr(instance, name), name
    assert tuple(spec.extra_args) == instance.extra_args
    assert spec.model_alias == "fake-model" and spec.model_path == fake_model.resolve()
    assert spec.n_gpu_layers == 0 and spec.env == {"CUDA_VISIBLE_DEVICES": ""}  # cpu
    assert spec.command is None and spec.log_dir == Path("logs")
    assert dataclasses.asdict(settings.pool_limits()) == {
        name: getattr(queue, name) for name in dataclasses.asdict(settings.pool_limits())
    }
    config = settings.gateway_config()
    assert config.upstream_timeout_s == queue.upstream_timeout_s
    assert config.max_body_bytes == field_default(GatewaySettings, "max_body_bytes")


def test_gpu_layers_default_all_on_cuda_none_on_cpu(fake_model: Path) -> None:
    cuda = GatewaySettings(model_path=fake_model, policy="naive", device="cuda", gpu_index=1)
    assert cuda.instance_spec().n_gpu_layers == -1
    assert cuda.instance_spec().env["CUDA_VISIBLE_DEVICES"] == "1"
    explicit = cuda.model_copy(update={"instance": InstanceSettings(n_gpu_layers=4)})
    assert explicit.instance_spec().n_gpu_layers == 4


def test_settings_round_trip_through_json(tmp_path: Path, fake_model: Path) -> None:
    settings = GatewaySettings(
        model_path=fake_model, model_name="m", policy="keep_warm",
        policy_params={"keep_warm_ttl_s": 2.5, "min_instances": 1},
        instance=InstanceSettings(n_ctx=64, command=("{python}", "x.py", "--port", "{port}")),
        gateway=QueueSettings(max_queue=3), events_csv=tmp_path / "events.csv",
    )
    path = settings.write(tmp_path / "s" / "gateway-settings.json")
    assert GatewaySettings.model_validate_json(path.read_text()) == settings
    loaded = load_settings(parse("--settings", str(path)))
    assert loaded == settings
    assert isinstance(loaded.policy_params["min_instances"], int)


def test_serve_flags_override_the_settings_file(tmp_path: Path, fake_model: Path) -> None:
    path = GatewaySettings(
        model_path=fake_model, policy="keep_warm", policy_params={"keep_warm_ttl_s": 9.0},
        instance=InstanceSettings(n_ctx=100, n_threads=2), gateway=QueueSettings(max_queue=4),
    ).write(tmp_path / "gateway-settings.json")
    config = build_config(parse("--settings", str(path), "--n-ctx", "200",
                                "--keep-warm-ttl-s", "3", "--port", "9"))
    assert config.spec.n_ctx == 200 and config.spec.n_threads == 2
    assert config.limits.max_queue == 4
    assert config.policy.name == "keep_warm" and config.policy.keep_warm_ttl_s == 3
    assert load_settings(parse("--settings", str(path), "--port", "9")).port == 9


def test_serve_without_flags_runs_with_the_models_defaults(fake_model: Path) -> None:
    settings = load_settings(parse("--model", str(fake_model), "--strategy", "naive"))
    assert settings == GatewaySettings(model_path=fake_model, policy="naive")
    assert settings.instance.n_ctx == 2048


def test_serve_help_shows_the_models_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, model, name in [("--n-ctx", InstanceSettings, "n_ctx"),
                                ("--max-queue", QueueSettings, "max_queue"),
                                ("--queue-timeout-s", QueueSettings, "queue_timeout_s"),
                                ("--port", GatewaySettings, "port")]:
        pattern = rf"{option} \S+ [^(]*\(default: {re.escape(str(field_default(model, name)))}\)"
        assert re.search(pattern, text), option


def test_settings_mistakes_are_user_errors(tmp_path: Path, fake_model: Path) -> None:
    with pytest.raises(UserError, match="--model is required"):
        load_settings(parse("--strategy", "naive"))
    with pytest.raises(UserError, match="file not found"):
        load_settings(parse("--settings", str(tmp_path / "none.json")))
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"model_path": str(fake_model), "policy": "naive",
                                "instance": {"n_ctxx": 5}}))
    with pytest.raises(UserError, match=r"instance\.n_ctxx"):
        load_settings(parse("--settings", str(typo)))
    with pytest.raises(UserError, match="n_ctx"):
        load_settings(parse("--model", str(fake_model), "--strategy", "naive", "--n-ctx", "2"))


WORKFLOW_SETTINGS = {
    "workload": "smoke", "strategy": "kw", "rep": 2, "order_index": 3,
    "policy": "keep_warm", "policy_params": {"keep_warm_ttl_s": 4},
    "model_name": "smollm2", "device": "cpu", "gpu_index": 0,
    "instance": {"n_threads": 2}, "gateway": {"max_queue": 8},
    "telemetry": {"rate_hz": 20}, "seed": 7, "lock_file": "results/.measurement.lock",
}


def test_run_settings_from_the_workflow(tmp_path: Path, fake_model: Path) -> None:
    run = RunSettings.from_workflow(WORKFLOW_SETTINGS, fake_model, tmp_path / "t.csv",
                                    tmp_path / "out", tmp_path / "logs")
    gw = run.gateway
    assert gw.policy == "keep_warm" and gw.policy_params == {"keep_warm_ttl_s": 4}
    assert gw.model_alias == "smollm2" and gw.gpu_index is None  # cpu: no GPU
    assert gw.instance == InstanceSettings(n_threads=2)  # n_ctx: the model's default
    assert gw.gateway == QueueSettings(max_queue=8)
    assert run.telemetry == TelemetrySettings(rate_hz=20)
    assert (run.workload, run.strategy, run.rep, run.order_index, run.seed) == (
        "smoke", "kw", 2, 3, 7)
    assert run.lock_path == Path("results/.measurement.lock")
    assert run.config_sha256 == config_sha256(WORKFLOW_SETTINGS)
    cuda = RunSettings.from_workflow({**WORKFLOW_SETTINGS, "device": "cuda"}, fake_model,
                                     tmp_path / "t.csv", tmp_path / "out", tmp_path / "logs")
    assert cuda.gateway.gpu_index == 0


def test_the_gateway_a_run_starts_reads_the_runs_settings(tmp_path: Path,
                                                           fake_model: Path) -> None:
    run = RunSettings.from_workflow(WORKFLOW_SETTINGS, fake_model, tmp_path / "t.csv",
                                    tmp_path / "out", tmp_path / "logs")
    path = run.gateway.write(run.log_dir / "gateway-settings.json")
    command = serve_command(path, 8123)
    assert command[-5:] == ["--settings", str(path), "--port", "8123", "--exit-with-parent"]
    args = build_parser(only="serve").parse_args(command[3:])
    assert load_settings(args) == run.gateway.model_copy(update={"port": 8123})


def test_run_command_defaults_come_from_the_models() -> None:
    args = build_parser(only="run").parse_args(
        ["run", "--model", "m.gguf", "--trace", "t.csv", "--strategy", "naive", "--out-dir", "o"])
    assert args.n_ctx == field_default(InstanceSettings, "n_ctx") == 2048
    assert args.device == field_default(GatewaySettings, "device")
    assert args.rate_hz == field_default(TelemetrySettings, "rate_hz")
    assert args.baseline_s == field_default(TelemetrySettings, "baseline_s")



def test_the_history_reaches_the_gateways_policy(tmp_path: Path, fake_model: Path) -> None:
    # Gaps of 1.5 s, all in the 1 s bin [1, 2): the policy is representative before any
    # request (pre-warm 0.9 s, keep-until 2.2 s after an idle start).
    history = tuple(-30.0 + 1.5 * i for i in range(10))
    params = {"bin_width_s": 1.0, "range_s": 60.0, "min_samples": 5}
    settings = GatewaySettings(model_path=fake_model, policy="hybrid_histogram",
                               policy_params=params, history_s=history)
    path = settings.write(tmp_path / "gateway-settings.json")
    config = build_config(parse("--settings", str(path)))
    assert config.policy.windows_s() == pytest.approx((0.9, 2.2))
    assert settings.gateway_config().policy.windows_s() == pytest.approx((0.9, 2.2))
    # Without a history the same policy has learned nothing.
    plain = GatewaySettings(model_path=fake_model, policy="hybrid_histogram",
                            policy_params=params)
    assert plain.history_s == () and plain.make_policy().windows_s() is None


def test_run_settings_carry_the_history_path(tmp_path: Path, fake_model: Path) -> None:
    run = RunSettings.from_workflow(WORKFLOW_SETTINGS, fake_model, tmp_path / "t.csv",
                                    tmp_path / "out", tmp_path / "logs",
                                    history_path=tmp_path / "t.history.csv")
    assert run.history_path == tmp_path / "t.history.csv"
    assert RunSettings.from_workflow(WORKFLOW_SETTINGS, fake_model, tmp_path / "t.csv",
                                     tmp_path / "out", tmp_path / "logs").history_path is None
    args = build_parser(only="run").parse_args(
        ["run", "--model", "m.gguf", "--trace", "t.csv", "--strategy", "naive", "--out-dir", "o",
         "--history", "h.csv"])
    assert args.history == "h.csv"
    args = build_parser(only="run").parse_args(
        ["run", "--model", "m.gguf", "--trace", "t.csv", "--strategy", "naive", "--out-dir", "o"])
    assert args.history is None
