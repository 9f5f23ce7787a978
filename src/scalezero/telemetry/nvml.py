"""NVML backend: one NVIDIA GPU read through the nvidia-ml-py bindings (`import pynvml`).

Energy is the driver's cumulative counter (nvmlDeviceGetTotalEnergyConsumption, mJ,
Volta and newer); energy over a window is a difference of two counter readings, never
an integral of power samples, because on recent parts the power sensor sees only part
of each interval. Power is kept for timelines: NVML_FI_DEV_POWER_INSTANT where the GPU
answers it, else nvmlDeviceGetPowerUsage, which is a ~1 s average on Ampere and newer and
is labelled as such. Every optional query that the GPU or driver does not support gives
an empty cell and is not asked again.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from scalezero.errors import UserError
from scalezero.telemetry.base import MIB, TelemetryUnavailable, empty_row, warn_once
from scalezero.telemetry.host import SystemCpu
from scalezero.telemetry.procs import InstanceTracker

# Constants with the values of the NVML headers, for bindings too old to define them.
_FI_DEV_POWER_INSTANT = 186
_CLOCK_SM = 1
_PSTATE_UNKNOWN = 32
_SUCCESS = 0
_ERROR_NOT_SUPPORTED = 3
_FEATURE_ENABLED = 1

# NVML value types (nvmlValueType_t) -> the member of the nvmlValue_t union that holds it.
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal",
                  6: "usVal"}


def load_pynvml() -> ModuleType:
    """The `pynvml` module (nvidia-ml-py); tests put a fake in sys.modules first."""
    try:
        import pynvml
    except ImportError as exc:
        raise TelemetryUnavailable(f"nvidia-ml-py (pynvml) is not installed: {exc}") from exc
    return pynvml


def _const(nv: ModuleType, name: str, default: int) -> int:
    return int(getattr(nv, name, default))


def _pid_namespace_is_host() -> bool:
    """NVML reports host pids; inside a nested pid namespace (most containers without
    --pid=host) our pids differ and per-process GPU memory cannot be matched."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return len(line.split()) == 2
    except OSError:
        pass
    return True


def cuda_driver_version_str(version: int | None) -> str | None:
    """NVML's integer CUDA driver version (e.g. 12040) as "12.4"."""
    if version is None:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def select_device(
    nv: ModuleType, gpu_index: int | None = None, env: Mapping[str, str] | None = None
) -> tuple[int, Any, str]:
    """(NVML index, handle, how it was chosen) for the GPU to watch.

    The argument wins; else the first entry of CUDA_VISIBLE_DEVICES (an index, or a
    GPU-/MIG- UUID or unique UUID prefix as CUDA accepts); else 0.
    """
    env = os.environ if env is None else env
    if gpu_index is not None:
        return gpu_index, nv.nvmlDeviceGetHandleByIndex(gpu_index), "argument"
    visible = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    first = visible.split(",")[0].strip() if visible else ""
    if re.fullmatch(r"\d+", first):
        index = int(first)
        if env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID" and nv.nvmlDeviceGetCount() > 1:
            # CUDA numbers devices fastest first unless told otherwise; NVML by PCI bus.
            warn_once(
                "cuda-order",
                "CUDA_VISIBLE_DEVICES holds an index but CUDA_DEVICE_ORDER is not "
                "PCI_BUS_ID: CUDA's and NVML's numbering may differ on this multi-GPU host",
            )
        return index, nv.nvmlDeviceGetHandleByIndex(index), "CUDA_VISIBLE_DEVICES"
    if first and not first.startswith("-"):
        index, handle = _device_by_uuid(nv, first)
        return index, handle, "CUDA_VISIBLE_DEVICES"
    return 0, nv.nvmlDeviceGetHandleByIndex(0), "default"


def _device_by_uuid(nv: ModuleType, uuid: str) -> tuple[int, Any]:
    if uuid.startswith("MIG-"):
        # Energy and power exist for the whole GPU only, so watch the MIG slice's parent.
        mig = nv.nvmlDeviceGetHandleByUUID(uuid)
        parent = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
        return int(nv.nvmlDeviceGetIndex(parent)), parent
    wanted = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    for index in range(nv.nvmlDeviceGetCount()):
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        if str(nv.nvmlDeviceGetUUID(handle)).startswith(wanted):
            return index, handle
    raise UserError(f"no GPU with UUID {uuid} (from CUDA_VISIBLE_DEVICES)")


class NvmlSource:
    """Telemetry of one GPU through NVML, plus the host-side process and CPU columns."""

    backend = "nvml"

    def __init__(
        self,
        gpu_index: int | None = None,
        nvml: ModuleType | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        nv = nvml if nvml is not None else load_pynvml()
        try:
            nv.nvmlInit()
        except Exception as exc:  # NVMLError, or OSError from a broken library
            raise TelemetryUnavailable(f"NVML is not available: {exc}") from exc
        self._nv = nv
        self._env = os.environ if env is None else env
        try:
            self.gpu_index, self._handle, self.selected_by = select_device(nv, gpu_index, env)
        except nv.NVMLError as exc:
            nv.nvmlShutdown()
            # NVML works but the requested GPU is not there: a configuration mistake,
            # not a reason to fall back to the host silently.
            raise UserError(f"cannot open the requested GPU: {exc}") from exc
        except BaseException:
            nv.nvmlShutdown()
            raise
        self.device = f"gpu{self.gpu_index}"
        self._open = True
        # Errors that mean "this GPU/driver cannot answer this query": stop asking.
        self._unsupported_errors: tuple[type[BaseException], ...] = tuple(
            cls
            for cls in (
                getattr(nv, "NVMLError_NotSupported", None),
                getattr(nv, "NVMLError_FunctionNotFound", None),
                getattr(nv, "NVMLLibraryMismatchError", None),
            )
            if cls is not None
        )
        self._errors: tuple[type[BaseException], ...] = (nv.NVMLError, *self._unsupported_errors)
        self.unsupported: set[str] = set()
        self._power_instant = True  # until the GPU says otherwise
        self._memory_v2 = hasattr(nv, "nvmlMemory_v2")
        self._pids_comparable = _pid_namespace_is_host()
        self._cpu = SystemCpu()
        self._read_energy_raw()  # probe once, so energy_source is known before sampling

    # -- helpers ---------------------------------------------------------------------

    def _call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args) or None when NVML cannot answer; unsupported queries are not retried."""
        if name in self.unsupported:
            return None
        try:
            return fn(*args, **kwargs)
        except self._unsupported_errors:
            self.unsupported.add(name)
            return None
        except self._errors as exc:
            warn_once(f"nvml-{name}", f"NVML {name} failed on {self.device}: {exc}")
            return None

    def _read_energy_raw(self) -> int | None:
        return self._call(
            "total_energy", self._nv.nvmlDeviceGetTotalEnergyConsumption, self._handle
        )

    @property
    def energy_source(self) -> str:
        return "none" if "total_energy" in self.unsupported else "nvml_counter"

    def read_energy_mj(self) -> tuple[float, float | None]:
        before = time.monotonic()
        energy_mj = self._read_energy_raw()
        # The midpoint of the call stands for the moment the counter was read.
        t_s = (before + time.monotonic()) / 2.0
        return t_s, None if energy_mj is None else float(energy_mj)

    def read_power_w(self) -> tuple[float | None, str]:
        nv, handle = self._nv, self._handle
        if self._power_instant:
            field = _const(nv, "NVML_FI_DEV_POWER_INSTANT", _FI_DEV_POWER_INSTANT)
            values = self._call("power_instant", nv.nvmlDeviceGetFieldValues, handle, [field])
            if values is not None:
                value = values[0]
                status = int(value.nvmlReturn)
                if status == _const(nv, "NVML_SUCCESS", _SUCCESS):
                    member = _VALUE_MEMBERS.get(int(value.valueType), "uiVal")
                    return float(getattr(value.value, member)) / 1000.0, "nvml_instant"
                if status == _const(nv, "NVML_ERROR_NOT_SUPPORTED", _ERROR_NOT_SUPPORTED):
                    self.unsupported.add("power_instant")
            if "power_instant" in self.unsupported:
                self._power_instant = False
        milliwatts = self._call("power_usage", nv.nvmlDeviceGetPowerUsage, handle)
        if milliwatts is not None:
            return float(milliwatts) / 1000.0, "nvml_average"
        return None, "none"

    def read_memory(self) -> Any:
        """The memory struct (total/used/free bytes): v2 (used excludes the driver's
        reserved memory) where the driver has it, else v1."""
        nv, handle = self._nv, self._handle
        if self._memory_v2:
            mem = self._call(
                "memory_v2", nv.nvmlDeviceGetMemoryInfo, handle, version=nv.nvmlMemory_v2
            )
            if mem is not None:
                return mem
            if "memory_v2" in self.unsupported:
                self._memory_v2 = False
        return self._call("memory", nv.nvmlDeviceGetMemoryInfo, handle)

    def instance_gpu_mem_mib(self, pids: frozenset[int]) -> float | None:
        """GPU memory held by the given processes, from the driver's per-process list."""
        if not self._pids_comparable:
            warn_once(
                "pidns",
                "running in a separate pid namespace: NVML's process ids cannot be matched, "
                "instance_mem_mib stays empty",
            )
            return None
        procs = self._call(
            "compute_processes", self._nv.nvmlDeviceGetComputeRunningProcesses, self._handle
        )
        if procs is None:
            return None
        total_b = 0
        for proc in procs:
            if int(proc.pid) in pids:
                used = getattr(proc, "usedGpuMemory", None)
                if used is None:  # the driver cannot tell (e.g. Windows WDDM)
                    return None
                total_b += int(used)
        return total_b / MIB

    # -- the row ---------------------------------------------------------------------

    def sample(self, instances: InstanceTracker | None = None) -> dict[str, object]:
        nv, handle = self._nv, self._handle
        row = empty_row()
        t_s, energy_mj = self.read_energy_mj()
        row["t_s"] = t_s
        row["device"] = self.device
        row["energy_mj"] = energy_mj
        row["energy_source"] = "nvml_counter" if energy_mj is not None else "none"
        row["power_w"], row["power_source"] = self.read_power_w()
        mem = self.read_memory()
        if mem is not None:
            row["mem_used_mib"] = int(mem.used) / MIB
            row["mem_total_mib"] = int(mem.total) / MIB
        util = self._call("utilization", nv.nvmlDeviceGetUtilizationRates, handle)
        if util is not None:
            row["util_pct"] = float(util.gpu)
            row["mem_util_pct"] = float(util.memory)
        pstate = self._call("pstate", nv.nvmlDeviceGetPerformanceState, handle)
        if pstate is not None and int(pstate) != _const(nv, "NVML_PSTATE_UNKNOWN", _PSTATE_UNKNOWN):
            row["pstate"] = int(pstate)
        clock = self._call(
            "sm_clock", nv.nvmlDeviceGetClockInfo, handle, _const(nv, "NVML_CLOCK_SM", _CLOCK_SM)
        )
        if clock is not None:
            row["sm_clock_mhz"] = float(clock)
        if instances is not None:
            snap = instances.scan()
            row["instance_mem_mib"] = self.instance_gpu_mem_mib(snap.pids)
            row["instance_rss_mib"] = snap.rss_mib
            row["instance_cpu_pct"] = snap.cpu_pct
            row["n_instances"] = snap.n_instances
        row["host_cpu_pct"] = self._cpu.percent()
        return row

    # -- static facts ----------------------------------------------------------------

    def info(self) -> dict[str, object]:
        """Static facts about the GPU and driver for run.json."""
        nv, handle = self._nv, self._handle
        mem = self.read_memory()
        limit_mw = self._call("power_limit", nv.nvmlDeviceGetEnforcedPowerLimit, handle)
        default_mw = self._call(
            "power_default_limit", nv.nvmlDeviceGetPowerManagementDefaultLimit, handle
        )
        persistence = self._call("persistence_mode", nv.nvmlDeviceGetPersistenceMode, handle)
        capability = self._call(
            "compute_capability", nv.nvmlDeviceGetCudaComputeCapability, handle
        )
        _, power_source = self.read_power_w()
        return {
            "backend": self.backend,
            "device": self.device,
            "gpu_index": self.gpu_index,
            "gpu_selected_by": self.selected_by,
            "cuda_visible_devices": self._env.get("CUDA_VISIBLE_DEVICES"),
            "device_count": self._call("device_count", nv.nvmlDeviceGetCount),
            "name": self._call("name", nv.nvmlDeviceGetName, handle),
            "uuid": self._call("uuid", nv.nvmlDeviceGetUUID, handle),
            "compute_capability": (
                f"{capability[0]}.{capability[1]}" if capability is not None else None
            ),
            "driver_version": self._call("driver_version", nv.nvmlSystemGetDriverVersion),
            "cuda_driver_version": cuda_driver_version_str(
                self._call("cuda_driver_version", nv.nvmlSystemGetCudaDriverVersion)
            ),
            "nvml_version": self._call("nvml_version", nv.nvmlSystemGetNVMLVersion),
            "memory_total_mib": int(mem.total) / MIB if mem is not None else None,
            "power_limit_w": limit_mw / 1000.0 if limit_mw is not None else None,
            "power_default_limit_w": default_mw / 1000.0 if default_mw is not None else None,
            "persistence_mode": (
                None if persistence is None
                else int(persistence) == _const(nv, "NVML_FEATURE_ENABLED", _FEATURE_ENABLED)
            ),
            "energy_source": self.energy_source,
            "power_source": power_source,
            "unsupported_queries": sorted(self.unsupported),
        }

    def close(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(*self._errors):
                self._nv.nvmlShutdown()
