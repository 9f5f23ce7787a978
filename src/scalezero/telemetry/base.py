"""Shared pieces of the telemetry backends: the CSV columns and the source protocol."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from scalezero.telemetry.procs import InstanceTracker

# Order is the file format (docs/data.md, telemetry.csv); never reorder, only append.
TELEMETRY_COLUMNS: tuple[str, ...] = (
    "t_s",
    "device",
    "energy_source",
    "energy_mj",
    "power_w",
    "power_source",
    "mem_used_mib",
    "mem_total_mib",
    "instance_mem_mib",
    "instance_rss_mib",
    "instance_cpu_pct",
    "n_instances",
    "util_pct",
    "mem_util_pct",
    "pstate",
    "sm_clock_mhz",
    "host_cpu_pct",
)

ENERGY_SOURCES: tuple[str, ...] = ("nvml_counter", "rapl", "none")
POWER_SOURCES: tuple[str, ...] = ("nvml_instant", "nvml_average", "rapl_derived", "none")
BACKENDS: tuple[str, ...] = ("auto", "nvml", "host")

MIB = 1024 * 1024


class TelemetryUnavailable(RuntimeError):
    """The requested backend cannot be opened on this machine (e.g. no NVML library)."""


class TelemetrySource(Protocol):
    """One telemetry backend: a device (a GPU through NVML, or the host) read on demand."""

    backend: str  # "nvml" or "host"
    device: str  # the `device` column: "gpu<N>" or "host"

    @property
    def energy_source(self) -> str:
        """Where energy comes from when a read succeeds: "nvml_counter", "rapl" or "none"."""
        ...

    def read_energy_mj(self) -> tuple[float, float | None]:
        """(monotonic time of the read, cumulative energy in mJ or None when unavailable)."""
        ...

    def sample(self, instances: InstanceTracker | None = None) -> dict[str, object]:
        """One row keyed by TELEMETRY_COLUMNS; None marks a missing value (an empty cell)."""
        ...

    def close(self) -> None:
        """Release the backend (NVML handle, open files)."""
        ...


def empty_row() -> dict[str, object]:
    return dict.fromkeys(TELEMETRY_COLUMNS)


_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Report a degraded reading once per run on stderr instead of once per sample."""
    if key in _warned:
        return
    _warned.add(key)
    print(f"scalezero telemetry: warning: {message}", file=sys.stderr, flush=True)
