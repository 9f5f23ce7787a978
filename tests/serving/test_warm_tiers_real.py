"""Runtime-warm for real: each engine on the default model gives up its model (its RSS
drops by at least half the model file), keeps its process, wakes and serves again.

llama-server is the one tools/setup-venv.sh builds with SCALEZERO_NATIVE_ENGINE=1 (or
SCALEZERO_LLAMA_SERVER); its test is skipped only when that build is switched off."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psutil
import pytest

from scalezero.measure.tiers import first_token_s, instance_match_of
from scalezero.serving.launcher import InstanceProcess, InstanceSpec, with_sleep_timer
from scalezero.serving.settings import InstanceSettings
from scalezero.system.engine_build import native_server
from scalezero.telemetry.procs import InstanceTracker

pytestmark = pytest.mark.slow


def _rss_mib(spec: InstanceSpec) -> float:
    return InstanceTracker(os.getpid(), instance_match=instance_match_of(spec)).scan().rss_mib


def _sleep_and_wake(spec: InstanceSpec, model: Path) -> None:
    instance = InstanceProcess("real", spec)
    file_mib = model.stat().st_size / (1024 * 1024)

    async def go() -> None:
        await instance.spawn(lambda phase, t_s: None)
        try:
            ready_s = await instance.wait_ready()
            await first_token_s(instance.base_url)  # every weight touched once
            loaded_mib = _rss_mib(spec)
            pid = instance.pid
            await instance.sleep()
            asleep_mib = _rss_mib(spec)
            assert instance.returncode is None and instance.pid == pid
            assert asleep_mib < loaded_mib - file_mib / 2, (loaded_mib, asleep_mib, file_mib)
            if not spec.native:
                await instance.sleep()  # idempotent: a second sleep is no error
            woke_from_s = asyncio.get_running_loop().time()
            awake_s = await instance.wake()
            assert awake_s > ready_s
            # Awake: a request is served, and the weights are back in memory.
            token_s = await first_token_s(instance.base_url)
            assert token_s >= awake_s >= woke_from_s
            assert _rss_mib(spec) > asleep_mib + file_mib / 2
            assert psutil.Process(pid).is_running()
        finally:
            await instance.stop()
        assert instance.returncode is not None

    asyncio.run(go())


def test_python_engine_sleeps_and_wakes(real_model: Path) -> None:
    spec = InstanceSettings(n_ctx=256, n_threads=2, ready_timeout_s=60.0,
                            stop_grace_s=3.0).spec(
        real_model.resolve(), "m", device="cpu", gpu_index=None, log_dir=None)
    _sleep_and_wake(spec, real_model)


def test_native_engine_sleeps_on_its_timer_and_wakes(real_model: Path) -> None:
    found = native_server()
    if found.switched_off:
        pytest.skip(f"llama-server {found.reason}")
    assert found.path is not None, f"llama-server {found.reason}"
    spec = InstanceSettings(engine="llama_server", n_ctx=256, n_threads=2,
                            ready_timeout_s=60.0, stop_grace_s=3.0).spec(
        real_model.resolve(), "m", device="cpu", gpu_index=None, log_dir=None)
    _sleep_and_wake(with_sleep_timer(spec, 1.0), real_model)
