"""Telemetry beside each measured run: GPU energy, power and memory through NVML, or the
host's CPU, memory and RAPL energy without a GPU. See docs/data.md (telemetry.csv)."""

from scalezero.telemetry.base import (
    TELEMETRY_COLUMNS,
    TelemetrySource,
    TelemetryUnavailable,
)
from scalezero.telemetry.procs import DEFAULT_INSTANCE_MATCH, InstanceSnapshot, InstanceTracker
from scalezero.telemetry.sampler import DEFAULT_RATE_HZ, Sampler, SamplerStats
from scalezero.telemetry.source import device_info, open_source

__all__ = [
    "DEFAULT_INSTANCE_MATCH",
    "DEFAULT_RATE_HZ",
    "TELEMETRY_COLUMNS",
    "InstanceSnapshot",
    "InstanceTracker",
    "Sampler",
    "SamplerStats",
    "TelemetrySource",
    "TelemetryUnavailable",
    "device_info",
    "open_source",
]
