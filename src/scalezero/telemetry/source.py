"""Choosing a telemetry backend, and the static device facts for run.json."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path

from scalezero.telemetry.base import BACKENDS, TelemetrySource, TelemetryUnavailable
from scalezero.telemetry.host import POWERCAP_ROOT, HostSource, host_info
from scalezero.telemetry.nvml import NvmlSource


def open_source(
    prefer: str = "auto",
    gpu_index: int | None = None,
    *,
    powercap_root: Path | str = POWERCAP_ROOT,
    env: Mapping[str, str] | None = None,
) -> TelemetrySource:
    """Open a backend: "nvml" (raises TelemetryUnavailable without NVML), "host", or
    "auto" (NVML when it initialises, else the host; `nvml_unavailable` on the returned
    host source says why)."""
    if prefer not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {prefer!r}")
    reason = "host backend requested"
    if prefer in ("auto", "nvml"):
        try:
            return NvmlSource(gpu_index, env=env)
        except TelemetryUnavailable as exc:
            if prefer == "nvml":
                raise
            reason = str(exc)
    source = HostSource(powercap_root)
    source.nvml_unavailable = reason
    return source


def _host_device_info(source: HostSource, reason: str) -> dict[str, object]:
    zones = source.rapl_zones
    if zones:
        note = "no NVML: energy is the CPU package energy from RAPL, not a GPU's"
    else:
        note = "no NVML and no readable RAPL counter: energy is not measured"
    return {
        "backend": "host",
        "device": "host",
        "nvml_available": False,
        "nvml_error": reason,
        "energy_source": source.energy_source,
        "power_source": "rapl_derived" if zones else "none",
        "rapl_zones": zones,
        "note": note,
    }


def device_info(
    gpu_index: int | None = None,
    prefer: str = "auto",
    *,
    powercap_root: Path | str = POWERCAP_ROOT,
    env: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Static facts for run.json: backend, GPU name, driver, CUDA, memory, power limit,
    persistence mode, NVML version, or the host's energy situation. Never raises: a
    failure is reported in the dict ("error")."""
    info: dict[str, object]
    try:
        source = open_source(prefer, gpu_index, powercap_root=powercap_root, env=env)
        try:
            if isinstance(source, NvmlSource):
                info = source.info()
            elif isinstance(source, HostSource):
                info = _host_device_info(source, source.nvml_unavailable)
            else:  # a backend added later without an info() of its own
                info = {"backend": source.backend, "device": source.device}
        finally:
            source.close()
    except Exception as exc:
        info = {
            "backend": None,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=3),
        }
    try:
        info["host"] = host_info()
    except Exception as exc:
        info["host"] = {"error": f"{type(exc).__name__}: {exc}"}
    return info
