"""Energy over named windows, in-process: the tests' check that a telemetry source's
counter gives a number for a window (the package records telemetry.csv instead).

    with EnergyMonitor() as monitor:
        monitor.begin_window("replay")
        ...
        m = monitor.end_window("replay")   # m.energy_j, m.time_s, m.mean_power_w

Energy is the difference of two readings of the backend's cumulative counter (NVML's
total-energy counter, or RAPL): not an integral of power. Where there is no counter the
energy is None and `energy_source` is "none"; nothing is estimated.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from scalezero.telemetry.base import TelemetrySource, warn_once
from scalezero.telemetry.host import POWERCAP_ROOT
from scalezero.telemetry.source import open_source


@dataclass(frozen=True)
class Measurement:
    """One closed window."""

    name: str
    time_s: float  # window length (monotonic)
    energy_j: float | None  # None when the backend has no energy counter
    energy_source: str  # "nvml_counter", "rapl" or "none"
    mean_power_w: float | None  # energy_j / time_s
    start_s: float  # monotonic time of the opening reading
    end_s: float  # monotonic time of the closing reading
    device: str = ""  # the `device` of telemetry.csv: "gpu<N>" or "host"


class EnergyMonitor:
    """Named, possibly overlapping energy windows on one telemetry source. Thread-safe."""

    def __init__(
        self,
        source: TelemetrySource | None = None,
        *,
        prefer: str = "auto",
        gpu_index: int | None = None,
        powercap_root: Path | str = POWERCAP_ROOT,
    ) -> None:
        self._owns_source = source is None
        self.source = (
            source
            if source is not None
            else open_source(prefer, gpu_index, powercap_root=powercap_root)
        )
        self._open: dict[str, tuple[float, float | None]] = {}
        self._lock = threading.Lock()

    @property
    def energy_source(self) -> str:
        return self.source.energy_source

    def begin_window(self, name: str) -> None:
        with self._lock:
            if name in self._open:
                raise ValueError(f"window {name!r} is already open")
            self._open[name] = self.source.read_energy_mj()

    def end_window(self, name: str) -> Measurement:
        with self._lock:
            if name not in self._open:
                raise ValueError(f"window {name!r} was not opened")
            start_s, start_mj = self._open.pop(name)
            end_s, end_mj = self.source.read_energy_mj()
        time_s = end_s - start_s
        energy_j: float | None = None
        if start_mj is not None and end_mj is not None:
            if end_mj >= start_mj:
                energy_j = (end_mj - start_mj) / 1000.0
            else:  # NVML's counter restarts when the driver reloads
                warn_once(f"counter-reset-{name}", f"energy counter went back in {name!r}")
        return Measurement(
            name=name,
            time_s=time_s,
            energy_j=energy_j,
            energy_source=self.source.energy_source if energy_j is not None else "none",
            mean_power_w=energy_j / time_s if energy_j is not None and time_s > 0 else None,
            start_s=start_s,
            end_s=end_s,
            device=self.source.device,
        )

    def open_windows(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def close(self) -> None:
        if self._owns_source:
            self.source.close()

    def __enter__(self) -> EnergyMonitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
