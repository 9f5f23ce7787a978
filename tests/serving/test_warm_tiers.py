"""Warm tiers, the engine side, without a real engine: llama-server's idle timer on its
command line, sleep() polling /props of a stand-in, wake() through /tokenize, and the
start tier measured (and the file's pages dropped) at spawn."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from gateway_fixtures import fake_command

from scalezero.serving import launcher
from scalezero.serving.launcher import (
    DISK_COLD_BELOW_SHARE,
    InstanceProcess,
    InstanceSleepError,
    InstanceSpec,
    InstanceStartError,
    start_tier_of,
    with_sleep_timer,
)
from scalezero.serving.settings import InstanceSettings
from scalezero.system.pagecache import resident_fraction


def native_spec(model: Path, *extra: str) -> InstanceSpec:
    settings = InstanceSettings(engine="llama_server", n_ctx=64, extra_args=extra,
                                ready_timeout_s=20.0, stop_grace_s=2.0)
    return settings.spec(model.resolve(), "m", device="cpu", gpu_index=None, log_dir=None)


def test_the_timer_goes_on_llama_servers_command_line_in_whole_seconds_at_least_one(
    fake_model: Path, server_binary: Path,
) -> None:
    spec = native_spec(fake_model)
    assert "--sleep-idle-seconds" not in spec.native_args(1234)
    for ttl_s, expected in ((2.3, "3"), (0.2, "1"), (0.0, "1"), (5.0, "5")):
        args = with_sleep_timer(spec, ttl_s).native_args(1234)
        at = args.index("--sleep-idle-seconds")
        assert args[at + 1] == expected, (ttl_s, args)
    assert with_sleep_timer(spec, None) is spec
    with pytest.raises(ValueError):
        with_sleep_timer(spec, -1.0)


def test_the_python_engine_keeps_no_timer(fake_model: Path) -> None:
    spec = InstanceSettings().spec(fake_model, "m", device="cpu", gpu_index=None, log_dir=None)
    assert with_sleep_timer(spec, 3.0) is spec
    assert "--sleep-idle-seconds" not in spec.build_command(1234, 1)


def test_cold_tier_reaches_the_spec(fake_model: Path) -> None:
    spec = InstanceSettings(cold_tier="disk_cold").spec(
        fake_model, "m", device="cpu", gpu_index=None, log_dir=None)
    assert spec.cold_tier == "disk_cold"
    default = InstanceSettings().spec(fake_model, "m", device="cpu", gpu_index=None,
                                      log_dir=None)
    assert default.cold_tier == "host_cached"


def test_start_tier_threshold() -> None:
    assert start_tier_of(0.0) == "disk_cold"
    assert start_tier_of(DISK_COLD_BELOW_SHARE - 0.01) == "disk_cold"
    assert start_tier_of(DISK_COLD_BELOW_SHARE) == "host_cached"
    assert start_tier_of(1.0) == "host_cached"
    assert start_tier_of(None) == "unknown"


def _custom_spec(model: Path, cold_tier: str) -> InstanceSpec:
    settings = InstanceSettings(command=fake_command(), health_path="/health",
                                ready_timeout_s=20.0, stop_grace_s=2.0)
    spec = settings.spec(model, "m", device="cpu", gpu_index=None, log_dir=None)
    return dataclasses.replace(spec, cold_tier=cold_tier)


@pytest.mark.parametrize("cold_tier", ["disk_cold", "host_cached"])
def test_spawn_drops_the_pages_only_for_disk_cold_and_records_what_it_measured(
    fake_model: Path, monkeypatch: pytest.MonkeyPatch, cold_tier: str,
) -> None:
    calls: list[tuple[str, Path]] = []
    shares = iter([0.2])

    def drop(path: Path) -> bool:
        calls.append(("drop", Path(path)))
        return True

    def share(path: Path) -> float:
        calls.append(("share", Path(path)))
        return next(shares)

    monkeypatch.setattr(launcher, "drop_cached_pages", drop)
    monkeypatch.setattr(launcher, "resident_fraction", share)
    instance = InstanceProcess("i", _custom_spec(fake_model, cold_tier))

    async def go() -> None:
        await instance.spawn(lambda phase, t_s: None)
        try:
            await instance.wait_ready()
        finally:
            await instance.stop()

    asyncio.run(go())
    expected = [("share", fake_model)]
    if cold_tier == "disk_cold":
        expected.insert(0, ("drop", fake_model))
    assert calls == expected
    # Measured, whatever was asked: 20 % resident is a start from storage.
    assert instance.start_tier == "disk_cold"
    assert instance.start_resident_share == 0.2
    assert not instance.supports_sleep  # a custom command cannot be asked


def test_a_file_whose_pages_are_dropped_starts_disk_cold_and_a_read_one_host_cached(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(4 << 20))
    tiers = {}
    for cold_tier in ("disk_cold", "host_cached"):
        if cold_tier == "host_cached":
            model.read_bytes()  # the previous start read it: now it is cached
        instance = InstanceProcess(cold_tier, _custom_spec(model, cold_tier))

        async def go(instance: InstanceProcess = instance) -> None:
            await instance.spawn(lambda phase, t_s: None)
            await instance.stop()

        asyncio.run(go())
        tiers[cold_tier] = (instance.start_tier, instance.start_resident_share)
    assert tiers["disk_cold"][0] == "disk_cold", tiers
    assert tiers["host_cached"] == ("host_cached", resident_fraction(model)), tiers


def test_sleep_polls_props_until_llama_server_sleeps_and_wake_reloads(
    fake_model: Path, server_binary: Path,
) -> None:
    spec = with_sleep_timer(native_spec(fake_model, "--load-delay-s", "0.4"), 1.0)
    instance = InstanceProcess("n", spec)
    assert instance.supports_sleep

    async def go() -> tuple[float, float, float]:
        await instance.spawn(lambda phase, t_s: None)
        try:
            ready_s = await instance.wait_ready()
            await instance.sleep()
            asleep_s = time.monotonic()
            woke_from_s = time.monotonic()
            awake_s = await instance.wake()
            return asleep_s - ready_s, woke_from_s, awake_s
        finally:
            await instance.stop()

    idle_s, woke_from_s, awake_s = asyncio.run(go())
    # The stand-in sleeps after its 1 s timer, not before; the wake waits for its reload.
    assert 0.9 <= idle_s < 1.0 + launcher.NATIVE_SLEEP_GRACE_S
    assert awake_s - woke_from_s >= 0.4


def test_sleep_raises_when_llama_server_never_sleeps(
    fake_model: Path, server_binary: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(launcher, "NATIVE_SLEEP_GRACE_S", 0.5)
    spec = with_sleep_timer(native_spec(fake_model, "--never-sleep"), 1.0)
    instance = InstanceProcess("n", spec)

    async def go() -> float:
        await instance.spawn(lambda phase, t_s: None)
        try:
            await instance.wait_ready()
            began_s = time.monotonic()
            with pytest.raises(InstanceSleepError, match="not sleeping"):
                await instance.sleep()
            return time.monotonic() - began_s
        finally:
            await instance.stop()

    waited_s = asyncio.run(go())
    assert 1.4 <= waited_s < 5.0  # the timer (1 s) and the grace (0.5 s), then no longer


def test_sleep_without_a_timer_and_wake_of_a_stopped_instance_fail(
    fake_model: Path, server_binary: Path,
) -> None:
    instance = InstanceProcess("n", native_spec(fake_model))

    async def go() -> None:
        await instance.spawn(lambda phase, t_s: None)
        try:
            await instance.wait_ready()
            with pytest.raises(InstanceSleepError, match="sleep-idle-seconds"):
                await instance.sleep()
        finally:
            await instance.stop()
        with pytest.raises(InstanceStartError, match="not running"):
            await instance.wake()

    asyncio.run(go())


def test_a_missing_model_file_leaves_the_start_tier_unknown_and_the_start_to_the_instance(
    tmp_path: Path,
) -> None:
    instance = InstanceProcess("i", _custom_spec(tmp_path / "missing.gguf", "disk_cold"))

    async def go() -> None:
        await instance.spawn(lambda phase, t_s: None)
        await instance.stop()

    asyncio.run(go())
    assert instance.start_tier == "unknown" and instance.start_resident_share is None
