"""A stand-in for the `pynvml` module of nvidia-ml-py, for machines without a GPU.

It mirrors the parts of the real bindings that scalezero.telemetry uses: the function
names and signatures, the NVMLError class family (with NVMLError_NotSupported etc.), the
field-value records and the constants. The behaviour is a small model of a GPU:

- the energy counter grows at `counter_power_w` with time.monotonic(), so the energy of
  any interval is known exactly;
- the instant power it reports (`reported_power_w`) can be set to something else, to
  tell energy-from-counter apart from energy-from-power;
- `unsupported` names functions that raise NVMLError_NotSupported;
- `processes` maps pid -> GPU bytes for nvmlDeviceGetComputeRunningProcesses;
- `mig_uuids` are MIG slices of the GPU, found by nvmlDeviceGetHandleByUUID.

Use: `fake_nvml.reset(...)`, then put this module in sys.modules["pynvml"] (or pass it
as `nvml=`). `fake_nvml.state.calls` counts calls per function name.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

MIB = 1024 * 1024

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13

NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_CLOCK_SM = 1
NVML_PSTATE_UNKNOWN = 32
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186
nvmlMemory_v2 = 0x02000028


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return f"fake NVML error {self.value}"


# Class and argument names follow the real module, camelCase included.
class NVMLError_Uninitialized(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_UNINITIALIZED)


class NVMLError_InvalidArgument(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_INVALID_ARGUMENT)


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


class NVMLError_NotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_FOUND)


class NVMLError_LibraryNotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_LIBRARY_NOT_FOUND)


class NVMLError_FunctionNotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_FUNCTION_NOT_FOUND)


class NVMLLibraryMismatchError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: str
    name: str = "Fake GPU 80GB"
    counter_power_w: float = 50.0  # slope of the energy counter
    reported_power_w: float = 123.0  # what the power queries answer
    energy_origin_mj: int = 5_000_000
    memory_total_mib: int = 81559
    memory_used_mib: int = 1000  # v2 "used" (reserved memory not included)
    memory_reserved_mib: int = 500  # v1 "used" = used + reserved
    processes: dict[int, int] = field(default_factory=dict)  # pid -> bytes
    unsupported: set[str] = field(default_factory=set)  # function names
    instant_power: bool = True  # NVML_FI_DEV_POWER_INSTANT answered per field
    memory_v2: bool = True
    util_gpu: int = 37
    util_memory: int = 12
    pstate: int = 2
    sm_clock_mhz: int = 1410
    power_limit_mw: int = 300_000
    persistence: int = NVML_FEATURE_ENABLED
    mig_uuids: list[str] = field(default_factory=list)
    t_origin_s: float = field(default_factory=time.monotonic)


@dataclass
class FakeMigDevice:
    uuid: str
    parent: FakeGpu


@dataclass
class FakeState:
    gpus: list[FakeGpu]
    init_error: type[NVMLError] | None = None
    driver_version: str = "550.54.15"
    cuda_driver_version: int = 12040
    nvml_version: str = "12.550.54.15"
    init_count: int = 0
    calls: Counter[str] = field(default_factory=Counter)


state = FakeState(gpus=[FakeGpu(uuid="GPU-00000000-aaaa-0000-0000-000000000000")])


def reset(
    gpus: list[FakeGpu] | None = None, init_error: type[NVMLError] | None = None
) -> FakeState:
    """Fresh state: the given GPUs (default: one), optionally an nvmlInit that fails."""
    global state
    state = FakeState(
        gpus=gpus or [FakeGpu(uuid="GPU-00000000-aaaa-0000-0000-000000000000")],
        init_error=init_error,
    )
    return state


def _enter(name: str, handle: FakeGpu | None = None) -> None:
    state.calls[name] += 1
    if state.init_count <= 0:
        raise NVMLError_Uninitialized()
    if handle is not None and name in handle.unsupported:
        raise NVMLError_NotSupported()


# -- library -------------------------------------------------------------------------


def nvmlInit() -> None:
    state.calls["nvmlInit"] += 1
    if state.init_error is not None:
        raise state.init_error()
    state.init_count += 1


def nvmlShutdown() -> None:
    _enter("nvmlShutdown")
    state.init_count -= 1


def nvmlSystemGetDriverVersion() -> str:
    _enter("nvmlSystemGetDriverVersion")
    return state.driver_version


def nvmlSystemGetCudaDriverVersion() -> int:
    _enter("nvmlSystemGetCudaDriverVersion")
    return state.cuda_driver_version


def nvmlSystemGetNVMLVersion() -> str:
    _enter("nvmlSystemGetNVMLVersion")
    return state.nvml_version


# -- devices -------------------------------------------------------------------------


def nvmlDeviceGetCount() -> int:
    _enter("nvmlDeviceGetCount")
    return len(state.gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> FakeGpu:
    _enter("nvmlDeviceGetHandleByIndex")
    if not 0 <= index < len(state.gpus):
        raise NVMLError_InvalidArgument()
    return state.gpus[index]


def nvmlDeviceGetHandleByUUID(uuid: str) -> FakeGpu | FakeMigDevice:
    _enter("nvmlDeviceGetHandleByUUID")
    for gpu in state.gpus:
        if gpu.uuid == uuid:
            return gpu
        if uuid in gpu.mig_uuids:
            return FakeMigDevice(uuid=uuid, parent=gpu)
    raise NVMLError_NotFound()


def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle: FakeMigDevice) -> FakeGpu:
    _enter("nvmlDeviceGetDeviceHandleFromMigDeviceHandle")
    if not isinstance(handle, FakeMigDevice):
        raise NVMLError_InvalidArgument()
    return handle.parent


def nvmlDeviceGetIndex(handle: FakeGpu) -> int:
    _enter("nvmlDeviceGetIndex", handle)
    return state.gpus.index(handle)


def nvmlDeviceGetUUID(handle: FakeGpu) -> str:
    _enter("nvmlDeviceGetUUID", handle)
    return handle.uuid


def nvmlDeviceGetName(handle: FakeGpu) -> str:
    _enter("nvmlDeviceGetName", handle)
    return handle.name


def nvmlDeviceGetTotalEnergyConsumption(handle: FakeGpu) -> int:
    _enter("nvmlDeviceGetTotalEnergyConsumption", handle)
    elapsed_s = time.monotonic() - handle.t_origin_s
    return handle.energy_origin_mj + int(handle.counter_power_w * elapsed_s * 1000.0)


def nvmlDeviceGetPowerUsage(handle: FakeGpu) -> int:
    _enter("nvmlDeviceGetPowerUsage", handle)
    return int(handle.reported_power_w * 1000)


def nvmlDeviceGetFieldValues(handle: FakeGpu, fieldIds: list[int]) -> list[SimpleNamespace]:
    _enter("nvmlDeviceGetFieldValues", handle)
    out = []
    for field_id in fieldIds:
        supported = field_id == NVML_FI_DEV_POWER_INSTANT and handle.instant_power
        out.append(
            SimpleNamespace(
                fieldId=field_id,
                scopeId=0,
                timestamp=int(time.time() * 1e6),
                latencyUsec=0,
                valueType=NVML_VALUE_TYPE_UNSIGNED_INT,
                nvmlReturn=NVML_SUCCESS if supported else NVML_ERROR_NOT_SUPPORTED,
                value=SimpleNamespace(uiVal=int(handle.reported_power_w * 1000) if supported
                                      else 0),
            )
        )
    return out


def nvmlDeviceGetMemoryInfo(handle: FakeGpu, version: int | None = None) -> SimpleNamespace:
    _enter("nvmlDeviceGetMemoryInfo" if not version else "nvmlDeviceGetMemoryInfo_v2", handle)
    total = handle.memory_total_mib * MIB
    if version:
        if not handle.memory_v2:
            raise NVMLError_FunctionNotFound()
        used = handle.memory_used_mib * MIB
        reserved = handle.memory_reserved_mib * MIB
        return SimpleNamespace(version=version, total=total, reserved=reserved,
                               free=total - used - reserved, used=used)
    used = (handle.memory_used_mib + handle.memory_reserved_mib) * MIB
    return SimpleNamespace(total=total, free=total - used, used=used)


def nvmlDeviceGetComputeRunningProcesses(handle: FakeGpu) -> list[SimpleNamespace]:
    _enter("nvmlDeviceGetComputeRunningProcesses", handle)
    return [
        SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF,
                        computeInstanceId=0xFFFFFFFF)
        for pid, used in handle.processes.items()
    ]


def nvmlDeviceGetUtilizationRates(handle: FakeGpu) -> SimpleNamespace:
    _enter("nvmlDeviceGetUtilizationRates", handle)
    return SimpleNamespace(gpu=handle.util_gpu, memory=handle.util_memory)


def nvmlDeviceGetPerformanceState(handle: FakeGpu) -> int:
    _enter("nvmlDeviceGetPerformanceState", handle)
    return handle.pstate


def nvmlDeviceGetClockInfo(handle: FakeGpu, type: int) -> int:
    _enter("nvmlDeviceGetClockInfo", handle)
    if type != NVML_CLOCK_SM:
        raise NVMLError_InvalidArgument()
    return handle.sm_clock_mhz


def nvmlDeviceGetEnforcedPowerLimit(handle: FakeGpu) -> int:
    _enter("nvmlDeviceGetEnforcedPowerLimit", handle)
    return handle.power_limit_mw


def nvmlDeviceGetPowerManagementDefaultLimit(handle: FakeGpu) -> int:
    _enter("nvmlDeviceGetPowerManagementDefaultLimit", handle)
    return handle.power_limit_mw


def nvmlDeviceGetPersistenceMode(handle: FakeGpu) -> int:
    _enter("nvmlDeviceGetPersistenceMode", handle)
    return handle.persistence


def nvmlDeviceGetCudaComputeCapability(handle: FakeGpu) -> tuple[int, int]:
    _enter("nvmlDeviceGetCudaComputeCapability", handle)
    return (9, 0)
