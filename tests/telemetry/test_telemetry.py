"""The telemetry sampler without a GPU: NVML through the fake `pynvml` of fake_nvml.py, RAPL
through a fake powercap tree, instances as real child processes, and the `scalezero
telemetry` subcommand as a subprocess (stopped by SIGTERM, by its parent's death, or by
--duration-s)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import fake_nvml
import psutil
import pytest
from energy_monitor import EnergyMonitor

from scalezero.cli import main
from scalezero.errors import UserError
from scalezero.telemetry import (
    TELEMETRY_COLUMNS,
    InstanceTracker,
    Sampler,
    TelemetryUnavailable,
    device_info,
    open_source,
)
from scalezero.telemetry import base as telemetry_base
from scalezero.telemetry import nvml as telemetry_nvml
from scalezero.telemetry.base import ENERGY_SOURCES
from scalezero.telemetry.host import HostSource
from scalezero.telemetry.nvml import NvmlSource
from scalezero.telemetry.sampler import format_row

MIB = 1024 * 1024
TESTS_DIR = Path(__file__).resolve().parents[1] / "support"
SLEEPER = "import time; time.sleep(30)"
GPU0_UUID = "GPU-00000000-aaaa-0000-0000-000000000000"
GPU1_UUID = "GPU-11111111-bbbb-0000-0000-000000000000"
MIG1_UUID = "MIG-22222222-cccc-0000-0000-000000000000"

# A `pynvml` for sampler subprocesses: the fake, with per-process GPU memory from the env.
PYNVML_SHIM = '''"""pynvml for a sampler subprocess under test: tests/support/fake_nvml.py."""
import json
import os
import sys

import fake_nvml

for pid, mib in json.loads(os.environ.get("FAKE_NVML_PROCESSES", "{}")).items():
    fake_nvml.state.gpus[0].processes[int(pid)] = int(mib) * fake_nvml.MIB
# The fake's pids are the test's own, whatever the pid namespace.
sys.modules["scalezero.telemetry.nvml"]._pid_namespace_is_host = lambda: True
sys.modules[__name__] = fake_nvml
'''

# The sampler's parent: starts the command in argv, prints its pid, waits to be killed.
PARENT = """import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:])
print(child.pid, flush=True)
time.sleep(60)
"""

# Above PARENT: a child subreaper, so that the sampler is re-parented here when PARENT
# dies and its exit status can be collected (and no zombie is left to pid 1).
SUBREAPER = """import ctypes, os, subprocess, sys
PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
parent = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]],
                          stdout=subprocess.PIPE, text=True)
sampler_pid = int(parent.stdout.readline())
print(parent.pid, sampler_pid, flush=True)
parent.wait()
_, status = os.waitpid(sampler_pid, 0)
print(os.waitstatus_to_exitcode(status), flush=True)
"""


# -- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The fake NVML as `pynvml`, one GPU, no CUDA_VISIBLE_DEVICES, warnings re-armed.
    Every test must leave NVML shut down (each NvmlSource closed)."""
    fake_nvml.reset()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setattr(telemetry_base, "_warned", set())
    yield fake_nvml
    assert fake_nvml.state.init_count == 0, "an NvmlSource was left open"
    fake_nvml.reset()


def _two_gpus() -> fake_nvml.FakeState:
    return fake_nvml.reset(gpus=[
        fake_nvml.FakeGpu(uuid=GPU0_UUID, memory_total_mib=81559),
        fake_nvml.FakeGpu(uuid=GPU1_UUID, memory_total_mib=40960, mig_uuids=[MIG1_UUID]),
    ])


@pytest.fixture
def marker() -> str:
    """A command-line marker that only this test's instance processes carry."""
    return f"scalezero-telemetry-test-{uuid.uuid4().hex[:12]}"


def _kill(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait(timeout=10)


@pytest.fixture
def instances(marker: str) -> Iterator[list[subprocess.Popen]]:
    """Two sleeping child processes with the marker in argv (stand-ins for servers)."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-c", SLEEPER, marker]))
        yield procs
    finally:
        _kill(procs)


def _zone(root: Path, dirname: str, name: str, energy_uj: int,
          max_uj: int = 262_143_328_850) -> Path:
    zone = root / dirname
    zone.mkdir(parents=True)
    (zone / "name").write_text(f"{name}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    """A /sys/class/powercap look-alike: two packages (counted), a core subzone, a psys
    zone and an MMIO duplicate of package-0 (all three would count energy twice)."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)  # the control type, not a zone
    _zone(root, "intel-rapl:0", "package-0", 1_000_000, max_uj=10_000_000)
    _zone(root, "intel-rapl:0:0", "core", 400_000)
    _zone(root, "intel-rapl:1", "package-1", 2_000_000)
    _zone(root, "intel-rapl:2", "psys", 9_000_000)
    _zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    return root


def _set_uj(root: Path, dirname: str, energy_uj: int) -> None:
    (root / dirname / "energy_uj").write_text(f"{energy_uj}\n")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [dict(zip(header, cells, strict=True)) for cells in reader]
    return header, rows


def _count_rows(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def _wait_rows(path: Path, n: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _count_rows(path) >= n:
            return True
        time.sleep(0.02)
    return False


def _times(rows: list[dict[str, str]]) -> list[float]:
    return [float(r["t_s"]) for r in rows]


def _assert_clock(t: list[float], lo: float, hi: float) -> None:
    """Sample times are time.monotonic() readings taken between lo and hi, increasing.
    (1e-6 s of slack: the CSV rounds t_s to microseconds.)"""
    assert t, "no rows"
    assert all(b > a for a, b in pairwise(t)), t
    assert lo - 1e-6 <= t[0] and t[-1] <= hi + 1e-6, (lo, t[0], t[-1], hi)


def _assert_period(t: list[float], period_s: float) -> None:
    """Consecutive samples are one period apart (median; a busy CI box delays a few)."""
    gaps = [b - a for a, b in pairwise(t)]
    assert gaps
    assert 0.75 * period_s <= statistics.median(gaps) <= 1.3 * period_s, gaps


def _cli_env(pynvml_dir: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    paths = [str(pynvml_dir), str(TESTS_DIR)] if pynvml_dir is not None else []
    paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def _telemetry_cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "scalezero.cli", "telemetry", "--out", str(out), *args]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- NVML ------------------------------------------------------------------------------


def test_nvml_sample_reads_every_gpu_column(nvml: ModuleType) -> None:
    source = open_source("auto")
    try:
        assert isinstance(source, NvmlSource)
        assert (source.backend, source.device, source.energy_source) == (
            "nvml", "gpu0", "nvml_counter")
        before = time.monotonic()
        row = source.sample()
        after = time.monotonic()
    finally:
        source.close()
    gpu = nvml.state.gpus[0]
    assert tuple(row) == TELEMETRY_COLUMNS
    assert before <= row["t_s"] <= after
    assert row["device"] == "gpu0"
    assert row["energy_source"] == "nvml_counter"
    counter_mj = gpu.energy_origin_mj + gpu.counter_power_w * (row["t_s"] - gpu.t_origin_s) * 1e3
    assert row["energy_mj"] == pytest.approx(counter_mj, abs=1.0 + 50.0 * (after - before) * 1e3)
    assert (row["power_w"], row["power_source"]) == (pytest.approx(123.0), "nvml_instant")
    # v2: "used" without the driver's reserved memory (v1 would say 1500)
    assert row["mem_used_mib"] == 1000
    assert row["mem_total_mib"] == 81559
    assert (row["util_pct"], row["mem_util_pct"]) == (37.0, 12.0)
    assert row["pstate"] == 2
    assert row["sm_clock_mhz"] == 1410.0
    for column in ("instance_mem_mib", "instance_rss_mib", "instance_cpu_pct", "n_instances"):
        assert row[column] is None  # no tracker given
    calls = nvml.state.calls
    assert calls["nvmlDeviceGetMemoryInfo_v2"] == 1 and calls["nvmlDeviceGetMemoryInfo"] == 0
    assert calls["nvmlDeviceGetFieldValues"] == 1 and calls["nvmlDeviceGetPowerUsage"] == 0


@pytest.mark.parametrize("missing", ["field value", "field values call"])
def test_power_falls_back_to_the_average_and_says_so(nvml: ModuleType, missing: str) -> None:
    gpu = nvml.state.gpus[0]
    if missing == "field value":
        gpu.instant_power = False  # the call works, NVML_FI_DEV_POWER_INSTANT is not there
    else:
        gpu.unsupported.add("nvmlDeviceGetFieldValues")
    source = NvmlSource(nvml=nvml)
    try:
        rows = [source.sample() for _ in range(3)]
    finally:
        source.close()
    for row in rows:
        assert (row["power_w"], row["power_source"]) == (pytest.approx(123.0), "nvml_average")
    assert nvml.state.calls["nvmlDeviceGetFieldValues"] == 1  # not asked again
    assert nvml.state.calls["nvmlDeviceGetPowerUsage"] == 3


def test_no_power_reading_gives_empty_power_and_keeps_the_energy(nvml: ModuleType) -> None:
    nvml.state.gpus[0].unsupported.update(
        {"nvmlDeviceGetFieldValues", "nvmlDeviceGetPowerUsage"})
    source = NvmlSource(nvml=nvml)
    try:
        row = source.sample()
    finally:
        source.close()
    assert (row["power_w"], row["power_source"]) == (None, "none")
    assert row["energy_source"] == "nvml_counter" and row["energy_mj"] > 0


@pytest.mark.parametrize("missing", ["driver", "bindings"])
def test_memory_falls_back_to_v1(nvml: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                 missing: str) -> None:
    if missing == "driver":
        nvml.state.gpus[0].memory_v2 = False
    else:  # nvidia-ml-py too old to define nvmlMemory_v2
        monkeypatch.delattr(nvml, "nvmlMemory_v2")
    source = NvmlSource(nvml=nvml)
    try:
        rows = [source.sample() for _ in range(3)]
    finally:
        source.close()
    assert [r["mem_used_mib"] for r in rows] == [1500, 1500, 1500]  # v1: used + reserved
    assert all(r["mem_total_mib"] == 81559 for r in rows)
    assert nvml.state.calls["nvmlDeviceGetMemoryInfo_v2"] == (1 if missing == "driver" else 0)
    assert nvml.state.calls["nvmlDeviceGetMemoryInfo"] == 3


def test_no_energy_counter_is_reported_not_estimated(nvml: ModuleType) -> None:
    nvml.state.gpus[0].unsupported.add("nvmlDeviceGetTotalEnergyConsumption")
    source = NvmlSource(nvml=nvml)
    try:
        assert source.energy_source == "none"
        row = source.sample()
        monitor = EnergyMonitor(source)
        monitor.begin_window("w")
        time.sleep(0.02)
        m = monitor.end_window("w")
        assert source.info()["energy_source"] == "none"
    finally:
        source.close()
    # power is there, but energy is not made up from it
    assert row["power_w"] == pytest.approx(123.0)
    assert (row["energy_source"], row["energy_mj"]) == ("none", None)
    assert (m.energy_j, m.energy_source, m.mean_power_w) == (None, "none", None)
    assert nvml.state.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1  # probed once


def test_energy_windows_use_the_counter_not_the_power_samples(nvml: ModuleType) -> None:
    # the counter grows at 50 W while the power queries say 123 W
    source = NvmlSource(nvml=nvml)
    try:
        with EnergyMonitor(source) as monitor:
            t0 = time.monotonic()
            monitor.begin_window("outer")
            time.sleep(0.15)
            monitor.begin_window("inner")  # windows may overlap
            time.sleep(0.15)
            inner = monitor.end_window("inner")
            time.sleep(0.05)
            outer = monitor.end_window("outer")
            t1 = time.monotonic()
            with pytest.raises(ValueError, match="not opened"):
                monitor.end_window("inner")
            assert monitor.open_windows() == []
    finally:
        source.close()
    for m in (inner, outer):
        assert m.energy_source == "nvml_counter" and m.device == "gpu0"
        assert t0 <= m.start_s < m.end_s <= t1
        assert m.time_s == pytest.approx(m.end_s - m.start_s)
        assert m.energy_j == pytest.approx(50.0 * m.time_s, rel=0.1)
        assert m.mean_power_w == pytest.approx(50.0, rel=0.1)
    assert outer.start_s < inner.start_s and inner.end_s < outer.end_s
    assert outer.energy_j > inner.energy_j


def test_an_energy_counter_that_goes_back_gives_no_energy(nvml: ModuleType) -> None:
    source = NvmlSource(nvml=nvml)
    try:
        monitor = EnergyMonitor(source)
        monitor.begin_window("w")
        nvml.state.gpus[0].energy_origin_mj -= 4_000_000  # the driver reloaded
        m = monitor.end_window("w")
    finally:
        source.close()
    assert (m.energy_j, m.energy_source, m.mean_power_w) == (None, "none", None)


@pytest.mark.parametrize(
    ("gpu_index", "env", "expected", "selected_by"),
    [
        (None, {}, 0, "default"),
        (None, {"CUDA_VISIBLE_DEVICES": ""}, 0, "default"),
        (1, {}, 1, "argument"),
        (0, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, 0, "argument"),
        (None, {"CUDA_VISIBLE_DEVICES": "1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, 1,
         "CUDA_VISIBLE_DEVICES"),
        (None, {"CUDA_VISIBLE_DEVICES": f"{GPU1_UUID},{GPU0_UUID}"}, 1, "CUDA_VISIBLE_DEVICES"),
        (None, {"CUDA_VISIBLE_DEVICES": "11111111-bbbb"}, 1, "CUDA_VISIBLE_DEVICES"),
        (None, {"CUDA_VISIBLE_DEVICES": MIG1_UUID}, 1, "CUDA_VISIBLE_DEVICES"),
    ],
)
def test_gpu_comes_from_the_argument_or_cuda_visible_devices(
    nvml: ModuleType, gpu_index: int | None, env: dict[str, str], expected: int,
    selected_by: str,
) -> None:
    _two_gpus()
    source = NvmlSource(gpu_index, nvml=nvml, env=env)
    try:
        row = source.sample()
        assert (source.gpu_index, source.device, source.selected_by) == (
            expected, f"gpu{expected}", selected_by)
    finally:
        source.close()
    assert row["device"] == f"gpu{expected}"
    assert row["mem_total_mib"] == (81559, 40960)[expected]  # read from that GPU


def test_a_cuda_index_without_pci_bus_order_is_warned_about(
    nvml: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    _two_gpus()
    source = NvmlSource(nvml=nvml, env={"CUDA_VISIBLE_DEVICES": "1"})
    source.close()
    assert source.gpu_index == 1
    assert "CUDA_DEVICE_ORDER" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("gpu_index", "env", "reason"),
    [(5, {}, "cannot open the requested GPU"),
     (None, {"CUDA_VISIBLE_DEVICES": "GPU-99999999"},
      r"no GPU with UUID GPU-99999999 \(from CUDA_VISIBLE_DEVICES\)")],
)
def test_a_missing_gpu_is_a_user_error_and_shuts_nvml_down(
    nvml: ModuleType, gpu_index: int | None, env: dict[str, str], reason: str
) -> None:
    _two_gpus()
    with pytest.raises(UserError, match=reason):
        NvmlSource(gpu_index, nvml=nvml, env=env)
    assert nvml.state.init_count == 0
    with pytest.raises(UserError, match=reason):  # not a silent fall-back to the host
        open_source("auto", gpu_index, env=env)
    assert nvml.state.init_count == 0


@pytest.mark.parametrize("comparable", [True, False])
def test_instance_gpu_memory_sums_only_the_instance_pids(
    nvml: ModuleType, monkeypatch: pytest.MonkeyPatch, comparable: bool
) -> None:
    monkeypatch.setattr(telemetry_nvml, "_pid_namespace_is_host", lambda: comparable)
    nvml.state.gpus[0].processes = {111: 300 * MIB, 222: 200 * MIB, 333: 4096 * MIB}
    source = NvmlSource(nvml=nvml)
    try:
        mem = source.instance_gpu_mem_mib(frozenset({111, 222, 444}))
        nvml.state.gpus[0].processes[222] = None  # the driver cannot tell
        unknown = source.instance_gpu_mem_mib(frozenset({111, 222}))
        unrelated_unknown = source.instance_gpu_mem_mib(frozenset({111, 333}))
    finally:
        source.close()
    if comparable:
        assert mem == 500.0
        assert unknown is None
        assert unrelated_unknown == 300.0 + 4096.0
    else:  # another pid namespace: NVML's pids are not ours
        assert (mem, unknown, unrelated_unknown) == (None, None, None)


def test_without_nvml_auto_falls_back_to_the_host_and_says_why(
    nvml: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml.reset(init_error=nvml.NVMLError_LibraryNotFound)
    source = open_source("auto", powercap_root=tmp_path / "absent")
    assert isinstance(source, HostSource)
    assert "NVML is not available" in source.nvml_unavailable
    source.close()
    with pytest.raises(TelemetryUnavailable, match="NVML is not available"):
        open_source("nvml")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed
    with pytest.raises(TelemetryUnavailable, match="not installed"):
        open_source("nvml")
    source = open_source("auto", powercap_root=tmp_path / "absent")
    assert source.backend == "host" and "not installed" in source.nvml_unavailable
    source.close()
    with pytest.raises(ValueError, match="backend"):
        open_source("cuda")


def test_device_info_with_nvml(nvml: ModuleType) -> None:
    _two_gpus()
    info = device_info(env={"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert info["backend"] == "nvml" and info["device"] == "gpu1"
    assert (info["gpu_index"], info["gpu_selected_by"]) == (1, "CUDA_VISIBLE_DEVICES")
    assert info["cuda_visible_devices"] == "1"  # the value the GPU was chosen by
    assert info["uuid"] == GPU1_UUID and info["device_count"] == 2
    assert info["name"] == "Fake GPU 80GB" and info["compute_capability"] == "9.0"
    assert info["driver_version"] == "550.54.15" and info["cuda_driver_version"] == "12.4"
    assert info["memory_total_mib"] == 40960
    assert info["power_limit_w"] == 300.0 and info["persistence_mode"] is True
    assert (info["energy_source"], info["power_source"]) == ("nvml_counter", "nvml_instant")
    assert info["unsupported_queries"] == []
    assert info["host"]["logical_cpus"] == psutil.cpu_count(logical=True)


def test_device_info_without_nvml(nvml: ModuleType, powercap: Path, tmp_path: Path) -> None:
    nvml.reset(init_error=nvml.NVMLError_LibraryNotFound)
    info = device_info(powercap_root=powercap)
    assert (info["backend"], info["nvml_available"]) == ("host", False)
    assert "NVML is not available" in info["nvml_error"]
    assert (info["energy_source"], info["power_source"]) == ("rapl", "rapl_derived")
    assert info["rapl_zones"] == ["package-0", "package-1"]
    bare = device_info(powercap_root=tmp_path / "absent")
    assert (bare["energy_source"], bare["power_source"]) == ("none", "none")
    assert "not measured" in bare["note"]
    assert "error" not in device_info(prefer="host", powercap_root=powercap)


# -- host: psutil and RAPL -------------------------------------------------------------


def test_host_energy_from_rapl_with_wraparound(powercap: Path) -> None:
    source = HostSource(powercap)
    try:
        assert source.energy_source == "rapl"
        assert source.rapl_zones == ["package-0", "package-1"]
        row1 = source.sample()
        _set_uj(powercap, "intel-rapl:0", 1_500_000)
        _set_uj(powercap, "intel-rapl:1", 2_250_000)
        for double in ("intel-rapl:0:0", "intel-rapl:2", "intel-rapl-mmio:0"):
            _set_uj(powercap, double, 99_000_000)  # must not be added
        row2 = source.sample()
        _set_uj(powercap, "intel-rapl:0", 9_900_000)  # max_energy_range_uj is 10_000_000
        row3 = source.sample()
        _set_uj(powercap, "intel-rapl:0", 100_000)  # wrapped: +200_000 uJ
        row4 = source.sample()
    finally:
        source.close()
    assert [r["energy_source"] for r in (row1, row2, row3, row4)] == ["rapl"] * 4
    assert [r["energy_mj"] for r in (row1, row2, row3, row4)] == [
        3000.0, 3750.0, 12150.0, 12350.0]
    assert (row1["power_w"], row1["power_source"]) == (None, "none")  # nothing to diff yet
    assert row2["power_source"] == "rapl_derived"
    assert row2["power_w"] == pytest.approx(0.75 / (row2["t_s"] - row1["t_s"]))
    assert row4["power_w"] == pytest.approx(0.2 / (row4["t_s"] - row3["t_s"]))


def test_host_sample_has_memory_and_cpu_and_no_gpu_columns(tmp_path: Path) -> None:
    source = HostSource(tmp_path / "absent")
    try:
        before = time.monotonic()
        row1 = source.sample()
        time.sleep(0.05)  # SystemCpu needs 20 ms between readings
        row2 = source.sample()
        after = time.monotonic()
    finally:
        source.close()
    total_mib = psutil.virtual_memory().total / MIB
    for row in (row1, row2):
        assert tuple(row) == TELEMETRY_COLUMNS
        assert row["device"] == "host"
        assert row["mem_total_mib"] == pytest.approx(total_mib)
        assert 0 < row["mem_used_mib"] < row["mem_total_mib"]
        assert row["util_pct"] == row["host_cpu_pct"]
        for column in ("mem_util_pct", "pstate", "sm_clock_mhz", "n_instances"):
            assert row[column] is None
    _assert_clock([row1["t_s"], row2["t_s"]], before, after)
    assert 0.0 <= row2["host_cpu_pct"] <= 100.0


@pytest.mark.parametrize("case", ["no powercap", "unreadable counter", "psys only"])
def test_no_rapl_means_no_energy(tmp_path: Path, case: str) -> None:
    root = tmp_path / "powercap"
    if case == "unreadable counter":
        zone = _zone(root, "intel-rapl:0", "package-0", 1_000)
        (zone / "energy_uj").unlink()
        (zone / "energy_uj").mkdir()  # open() fails even for root
    elif case == "psys only":
        _zone(root, "intel-rapl:0", "psys", 1_000)
    source = HostSource(root)
    try:
        assert (source.energy_source, source.rapl_zones) == ("none", [])
        rows = [source.sample(), source.sample()]
        monitor = EnergyMonitor(source)
        monitor.begin_window("w")
        m = monitor.end_window("w")
    finally:
        source.close()
    for row in rows:
        assert (row["energy_source"], row["energy_mj"]) == ("none", None)
        assert (row["power_source"], row["power_w"]) == ("none", None)
    assert (m.energy_j, m.energy_source) == (None, "none")


def test_a_rapl_zone_that_becomes_unreadable_loses_no_energy(powercap: Path) -> None:
    source = HostSource(powercap)
    energy_1 = powercap / "intel-rapl:1" / "energy_uj"
    try:
        row1 = source.sample()
        _set_uj(powercap, "intel-rapl:0", 1_500_000)  # package-0: +500 mJ
        energy_1.rename(energy_1.with_name("hidden"))
        row2 = source.sample()
        energy_1.with_name("hidden").rename(energy_1)
        row3 = source.sample()
    finally:
        source.close()
    assert row1["energy_mj"] == 3000.0
    assert (row2["energy_source"], row2["energy_mj"], row2["power_w"]) == ("none", None, None)
    # back: the cumulative counter includes what package-0 used meanwhile
    assert (row3["energy_source"], row3["energy_mj"]) == ("rapl", 3500.0)
    assert row3["power_source"] == "none"  # no power across the gap


# -- instances -------------------------------------------------------------------------


def test_instance_tracker_sums_the_matching_process_trees(marker: str) -> None:
    # an instance whose server runs in a child process (as a launcher script would)
    launcher = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SLEEPER!r}])"
    procs: list[subprocess.Popen] = []
    grandchildren: list[psutil.Process] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-c", SLEEPER, marker]))
        procs.append(subprocess.Popen([sys.executable, "-c", launcher, marker]))
        procs.append(subprocess.Popen([sys.executable, "-c", SLEEPER]))  # no marker
        deadline = time.monotonic() + 10
        while not grandchildren and time.monotonic() < deadline:
            grandchildren = psutil.Process(procs[1].pid).children()
            time.sleep(0.02)
        assert len(grandchildren) == 1
        server = grandchildren[0]

        tracker = InstanceTracker(os.getpid(), marker)
        first = tracker.scan()
        rss_mib = sum(psutil.Process(pid).memory_info().rss for pid in first.pids) / MIB
        time.sleep(0.05)
        second = tracker.scan()
        procs[0].kill()
        procs[0].wait()
        third = tracker.scan()
    finally:
        for proc in grandchildren:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        if grandchildren:  # the launcher reaps its server and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                procs[1].wait(timeout=10)
        _kill(procs)
    assert first.pids == {procs[0].pid, procs[1].pid, server.pid}
    assert first.n_instances == 2  # the server belongs to its instance, it is not another
    assert first.rss_mib == pytest.approx(rss_mib, rel=0.2) and first.rss_mib > 0
    assert first.cpu_pct is None  # CPU needs two scans
    assert second.pids == first.pids
    assert second.cpu_pct is not None and second.cpu_pct >= 0.0
    assert third.pids == {procs[1].pid, server.pid} and third.n_instances == 1
    assert 0 < third.rss_mib < first.rss_mib


def test_instance_match_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        InstanceTracker(os.getpid(), "")


# -- the sampler -----------------------------------------------------------------------


def test_sampler_writes_rows_at_the_rate_on_the_monotonic_clock(
    nvml: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, marker: str,
    instances: list[subprocess.Popen],
) -> None:
    monkeypatch.setattr(telemetry_nvml, "_pid_namespace_is_host", lambda: True)
    nvml.state.gpus[0].processes = {
        instances[0].pid: 300 * MIB, instances[1].pid: 200 * MIB, 1: 4096 * MIB}
    out = tmp_path / "run" / "telemetry.csv"  # the folder is created
    rate_hz, duration_s = 20.0, 1.0
    source = NvmlSource(nvml=nvml)
    try:
        t_lo = time.monotonic()
        stats = Sampler(source).run(out, rate_hz=rate_hz, root_pid=os.getpid(),
                                    instance_match=marker, duration_s=duration_s)
        t_hi = time.monotonic()
    finally:
        source.close()
    header, rows = _read_csv(out)
    assert header == list(TELEMETRY_COLUMNS)
    assert stats.rows == len(rows) and stats.failed_samples == 0
    assert rate_hz * duration_s / 2 <= len(rows) <= rate_hz * duration_s + 1
    assert stats.rows + stats.skipped_deadlines >= rate_hz * duration_s
    assert duration_s <= stats.wall_s <= t_hi - t_lo
    t = _times(rows)
    _assert_clock(t, t_lo, t_hi)
    assert t[0] - t_lo < 0.5 and t[-1] - t[0] < duration_s
    _assert_period(t, 1.0 / rate_hz)
    for row in rows:
        assert (row["device"], row["energy_source"], row["power_source"]) == (
            "gpu0", "nvml_counter", "nvml_instant")
        assert (row["n_instances"], row["instance_mem_mib"]) == ("2", "500.000")
        assert float(row["instance_rss_mib"]) > 0
        assert (row["pstate"], row["sm_clock_mhz"]) == ("2", "1410.0")
    assert rows[0]["instance_cpu_pct"] == ""  # CPU needs two scans
    assert all(float(r["instance_cpu_pct"]) >= 0 for r in rows[1:])
    energy = [float(r["energy_mj"]) for r in rows]
    mean_w = (energy[-1] - energy[0]) / 1000.0 / (t[-1] - t[0])
    assert mean_w == pytest.approx(50.0, rel=0.1)  # the counter's 50 W, not the 123 W reported


@pytest.mark.parametrize("how", ["stop_event", "should_stop"])
def test_a_stopped_sampler_ends_with_a_sample_at_the_stop(
    tmp_path: Path, marker: str, how: str
) -> None:
    out = tmp_path / "telemetry.csv"
    stop = threading.Event()
    stop_at: list[float] = []

    def should_stop() -> bool:
        return bool(stop_at) and time.monotonic() >= stop_at[0]

    source = HostSource(tmp_path / "absent")
    result: list = []
    kwargs = {"stop_event": stop} if how == "stop_event" else {"should_stop": should_stop}
    worker = threading.Thread(target=lambda: result.append(Sampler(source).run(
        out, rate_hz=20.0, root_pid=os.getpid(), instance_match=marker, **kwargs)))
    t_lo = time.monotonic()
    worker.start()
    try:
        assert _wait_rows(out, 3, timeout_s=10)
        t_stop = time.monotonic()
        stop_at.append(t_stop)
        if how == "stop_event":
            stop.set()
        worker.join(timeout=5)
        t_hi = time.monotonic()
        assert not worker.is_alive()
    finally:
        stop.set()
        stop_at.append(0.0)
        worker.join(timeout=5)
        source.close()
    _, rows = _read_csv(out)
    assert result[0].rows == len(rows) >= 4
    t = _times(rows)
    _assert_clock(t, t_lo, t_hi)
    assert t[-1] >= t_stop  # the last row is taken at the stop
    assert t_hi - t_stop < 1.0
    assert all(r["n_instances"] == "0" for r in rows)


class _FlakySource:
    """A source whose second sample fails, as a vanished process or driver hiccup would."""

    backend = "host"
    device = "stub"
    energy_source = "none"

    def __init__(self) -> None:
        self.calls = 0

    def read_energy_mj(self) -> tuple[float, float | None]:
        return time.monotonic(), None

    def sample(self, instances: InstanceTracker | None = None) -> dict[str, object]:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("driver hiccup")
        return {"t_s": time.monotonic(), "device": self.device, "energy_source": "none",
                "power_w": float("nan"), "n_instances": 0}

    def close(self) -> None:
        pass


def test_a_failed_sample_is_a_gap_not_the_end(tmp_path: Path, marker: str) -> None:
    source = _FlakySource()
    stats = Sampler(source).run(tmp_path / "t.csv", rate_hz=50.0, root_pid=os.getpid(),
                                instance_match=marker, duration_s=0.2)
    _, rows = _read_csv(tmp_path / "t.csv")
    assert source.calls >= 3
    assert stats.failed_samples == 1 and stats.rows == len(rows) == source.calls - 1
    assert all(r["device"] == "stub" and r["power_w"] == "" for r in rows)


def test_format_row_writes_empty_cells_for_missing_values() -> None:
    row = {"t_s": 12.3456789, "device": "gpu0", "energy_mj": None, "power_w": float("nan"),
           "n_instances": 2, "pstate": 0, "sm_clock_mhz": 1410.04, "util_pct": float("inf")}
    cells = dict(zip(TELEMETRY_COLUMNS, format_row(row), strict=True))
    assert cells["t_s"] == "12.345679" and cells["device"] == "gpu0"
    assert cells["energy_mj"] == cells["power_w"] == cells["util_pct"] == ""
    assert cells["mem_used_mib"] == ""  # not in the row at all
    assert (cells["n_instances"], cells["pstate"], cells["sm_clock_mhz"]) == ("2", "0", "1410.0")


@pytest.mark.parametrize(("rate_hz", "duration_s"), [(0.0, None), (5000.0, None), (10.0, 0.0)])
def test_sampler_refuses_bad_settings(tmp_path: Path, rate_hz: float,
                                      duration_s: float | None) -> None:
    with pytest.raises(ValueError):
        Sampler(_FlakySource()).run(tmp_path / "t.csv", rate_hz=rate_hz, duration_s=duration_s)
    assert not (tmp_path / "t.csv").exists()


# -- the `scalezero telemetry` subcommand ----------------------------------------------


def test_cli_samples_the_instances_until_sigterm(
    tmp_path: Path, marker: str, instances: list[subprocess.Popen]
) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pynvml.py").write_text(PYNVML_SHIM)
    out = tmp_path / "telemetry.csv"
    env = _cli_env(shim, FAKE_NVML_PROCESSES=json.dumps({str(p.pid): 256 for p in instances}))
    cmd = _telemetry_cmd(out, "--rate-hz", "20", "--root-pid", str(os.getpid()),
                         "--instance-match", marker)
    t_lo = time.monotonic()
    sampler = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert _wait_rows(out, 12, timeout_s=20)
        t_term = time.monotonic()
        sampler.send_signal(signal.SIGTERM)
        _, stderr = sampler.communicate(timeout=10)
        t_hi = time.monotonic()
    finally:
        _kill([sampler])
    assert sampler.returncode == 0, stderr
    assert _gone(sampler.pid)
    for child in psutil.Process().children(recursive=True):  # nothing it started is left
        with contextlib.suppress(psutil.NoSuchProcess):
            assert str(out) not in " ".join(child.cmdline())
    header, rows = _read_csv(out)
    assert header == list(TELEMETRY_COLUMNS)
    assert f"scalezero telemetry: {len(rows)} rows from gpu0" in stderr
    t = _times(rows)
    _assert_clock(t, t_lo, t_hi)
    assert t[-1] >= t_term  # a last sample at the stop
    _assert_period(t[:-1], 0.05)
    for row in rows:
        assert (row["device"], row["energy_source"], row["power_source"]) == (
            "gpu0", "nvml_counter", "nvml_instant")
        assert row["n_instances"] == "2"
        assert float(row["instance_rss_mib"]) > 0
        assert row["instance_mem_mib"] == "512.000"
        assert row["mem_used_mib"] == "1000.000"


def test_cli_exits_when_its_parent_dies(tmp_path: Path) -> None:
    out = tmp_path / "telemetry.csv"
    log = tmp_path / "sampler.log"
    cmd = _telemetry_cmd(out, "--rate-hz", "20", "--backend", "host", "--exit-with-parent")
    pids: list[int] = []
    with open(log, "w") as err:
        reaper = subprocess.Popen([sys.executable, "-c", SUBREAPER, PARENT, *cmd],
                                  env=_cli_env(), stdout=subprocess.PIPE, stderr=err,
                                  text=True)
    try:
        pids = [int(p) for p in reaper.stdout.readline().split()]
        assert len(pids) == 2, log.read_text()
        parent_pid, sampler_pid = pids
        assert psutil.Process(sampler_pid).ppid() == parent_pid
        assert _wait_rows(out, 4, timeout_s=20), log.read_text()
        t_kill = time.monotonic()
        os.kill(parent_pid, signal.SIGKILL)
        exit_line, _ = reaper.communicate(timeout=10)  # returns once the sampler has exited
        t_hi = time.monotonic()
    finally:
        if reaper.poll() is None:
            reaper.kill()
            reaper.wait()
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert reaper.returncode == 0, log.read_text()
    assert exit_line.strip() == "0", log.read_text()  # a clean exit, not killed by SIGTERM
    assert t_hi - t_kill < 5.0
    assert all(_gone(pid) for pid in pids)
    _, rows = _read_csv(out)
    assert f"scalezero telemetry: {len(rows)} rows from host" in log.read_text()
    assert float(rows[-1]["t_s"]) >= t_kill  # sampled up to the parent's death


def test_cli_stops_after_duration(tmp_path: Path) -> None:
    out = tmp_path / "telemetry.csv"
    t_lo = time.monotonic()
    done = subprocess.run(_telemetry_cmd(out, "--rate-hz", "10", "--duration-s", "0.8",
                                         "--backend", "host"),
                          env=_cli_env(), capture_output=True, text=True, timeout=30)
    t_hi = time.monotonic()
    assert done.returncode == 0, done.stderr
    header, rows = _read_csv(out)
    assert header == list(TELEMETRY_COLUMNS)
    assert 4 <= len(rows) <= 9
    t = _times(rows)
    _assert_clock(t, t_lo, t_hi)
    _assert_period(t, 0.1)
    for row in rows:
        assert row["device"] == "host" and row["energy_source"] in ENERGY_SOURCES
        # energy is there exactly when its source says so
        assert (row["energy_mj"] == "") == (row["energy_source"] == "none")


def test_cli_info_and_errors_in_process(
    nvml: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _two_gpus()
    assert main(["telemetry", "--info", "--gpu-index", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["backend"], info["gpu_index"], info["gpu_selected_by"]) == (
        "nvml", 1, "argument")
    assert info["memory_total_mib"] == 40960

    assert main(["telemetry"]) == 2
    assert "--out FILE is required" in capsys.readouterr().err
    out = tmp_path / "t.csv"
    assert main(["telemetry", "--out", str(out), "--rate-hz", "0"]) == 2
    assert "--rate-hz" in capsys.readouterr().err
    nvml.reset(init_error=nvml.NVMLError_LibraryNotFound)
    assert main(["telemetry", "--out", str(out), "--backend", "nvml"]) == 2
    assert "NVML is not available" in capsys.readouterr().err
    assert not out.exists()
