"""Host backend: used when NVML is not available (no GPU, no driver, a laptop CPU run).

Memory and CPU come from psutil. Energy comes from Intel RAPL (the Linux powercap
interface, also used for AMD packages) when its counters are readable, and is otherwise
absent (`energy_source=none`): nothing here estimates energy from CPU load.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from scalezero.telemetry.base import MIB, empty_row, warn_once
from scalezero.telemetry.procs import InstanceTracker

POWERCAP_ROOT = Path("/sys/class/powercap")
# Top-level zones only ("intel-rapl:0", not the core/uncore/dram subzones "intel-rapl:0:0"),
# which would count the same energy twice.
_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")


@dataclass
class _RaplZone:
    name: str
    energy_path: Path
    max_range_uj: int
    last_uj: int


def _read_int(path: Path) -> int:
    with open(path, "rb") as fh:
        return int(fh.read().strip())


class RaplReader:
    """Cumulative energy of the CPU package zones, with counter wrap-around undone.

    Each zone's `energy_uj` counts up to `max_energy_range_uj` and starts again from 0.
    A wrap is recognised when a reading is below the previous one, so the counter must be
    read at least once per wrap period (tens of minutes at full load; the sampler reads
    it 10 times a second, an EnergyMonitor window longer than that would undercount).
    """

    def __init__(self, zones: list[_RaplZone]) -> None:
        self.zones = zones
        self._total_uj = sum(z.last_uj for z in zones)

    @classmethod
    def open(cls, root: Path | str = POWERCAP_ROOT) -> RaplReader | None:
        """The package zones under `root`, or None when there are none or none is readable
        (since 2020 kernels make energy_uj readable by root only)."""
        root = Path(root)
        try:
            entries = sorted(p for p in root.iterdir() if _TOP_ZONE.match(p.name))
        except OSError:
            return None
        zones: list[_RaplZone] = []
        for zone_dir in entries:
            try:
                name = (zone_dir / "name").read_text().strip()
            except OSError:
                continue
            # "psys" (whole platform, on some laptops) overlaps the packages: not summed.
            if not name.startswith("package"):
                continue
            try:
                energy_path = zone_dir / "energy_uj"
                zones.append(
                    _RaplZone(
                        name=name,
                        energy_path=energy_path,
                        max_range_uj=_read_int(zone_dir / "max_energy_range_uj"),
                        last_uj=_read_int(energy_path),
                    )
                )
            except (OSError, ValueError):
                continue
        return cls(zones) if zones else None

    def read_mj(self) -> float | None:
        """Energy since an arbitrary origin, in mJ; None if a zone cannot be read."""
        # Read every zone before updating any: a failed read must not drop the energy
        # the zones read before it have counted since their previous reading.
        readings: list[int] = []
        for zone in self.zones:
            try:
                readings.append(_read_int(zone.energy_path))
            except (OSError, ValueError):
                warn_once(f"rapl-{zone.name}", f"RAPL zone {zone.name} became unreadable")
                return None
        total_uj = self._total_uj
        for zone, now_uj in zip(self.zones, readings, strict=True):
            delta_uj = now_uj - zone.last_uj
            if delta_uj < 0:  # the counter wrapped past max_energy_range_uj
                delta_uj += zone.max_range_uj
            total_uj += delta_uj
            zone.last_uj = now_uj
        self._total_uj = total_uj
        return total_uj / 1000.0


class SystemCpu:
    """System-wide CPU utilisation between successive calls (100 = all cores busy).

    Keeps its own reference point, unlike psutil.cpu_percent(interval=None) whose state
    is shared by every caller in the process.
    """

    # /proc/stat counts in clock ticks (10 ms): a shorter interval is mostly rounding.
    MIN_INTERVAL_S = 0.02

    def __init__(self) -> None:
        self._last = self._busy_total()
        self._last_mono_s = time.monotonic()

    @staticmethod
    def _busy_total() -> tuple[float, float]:
        t = psutil.cpu_times()
        total = sum(t)
        # Linux already counts guest time inside user/nice.
        total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
        idle = t.idle + getattr(t, "iowait", 0.0)
        return total - idle, total

    def percent(self) -> float | None:
        """Utilisation since the previous answer; None if too little time has passed
        (the reference point is then kept, so the next call covers the whole span)."""
        now_s = time.monotonic()
        if now_s - self._last_mono_s < self.MIN_INTERVAL_S:
            return None
        busy, total = self._busy_total()
        d_busy, d_total = busy - self._last[0], total - self._last[1]
        if d_total <= 0:
            return None
        self._last, self._last_mono_s = (busy, total), now_s
        return max(0.0, min(100.0, 100.0 * d_busy / d_total))


class HostSource:
    """Telemetry of the host: RAM, CPU, instance RSS, RAPL energy when readable."""

    backend = "host"
    device = "host"

    def __init__(self, powercap_root: Path | str = POWERCAP_ROOT) -> None:
        self._rapl = RaplReader.open(powercap_root)
        self.nvml_unavailable = "host backend requested"  # set by open_source under "auto"
        self._last_energy: tuple[float, float] | None = None  # (t_s, mJ) of the last read
        self._cpu = SystemCpu()

    @property
    def energy_source(self) -> str:
        return "rapl" if self._rapl is not None else "none"

    @property
    def rapl_zones(self) -> list[str]:
        return [z.name for z in self._rapl.zones] if self._rapl is not None else []

    def read_energy_mj(self) -> tuple[float, float | None]:
        if self._rapl is None:
            return time.monotonic(), None
        before = time.monotonic()
        energy_mj = self._rapl.read_mj()
        # Midpoint of the read brackets the counter's own update time best.
        return (before + time.monotonic()) / 2.0, energy_mj

    def sample(self, instances: InstanceTracker | None = None) -> dict[str, object]:
        row = empty_row()
        t_s, energy_mj = self.read_energy_mj()
        row["t_s"] = t_s
        row["device"] = self.device
        if energy_mj is not None:
            row["energy_source"] = "rapl"
            row["energy_mj"] = energy_mj
            if self._last_energy is not None and t_s > self._last_energy[0]:
                row["power_w"] = (energy_mj - self._last_energy[1]) / 1000.0 / (
                    t_s - self._last_energy[0]
                )
                row["power_source"] = "rapl_derived"
            self._last_energy = (t_s, energy_mj)
        else:
            row["energy_source"] = "none"
            self._last_energy = None
        if row["power_w"] is None:
            row["power_source"] = "none"
        vm = psutil.virtual_memory()
        # "In use" = total - available: psutil's `used` leaves out some reclaimable memory
        # differently per platform, `available` is what the kernel says can be handed out.
        row["mem_used_mib"] = (vm.total - vm.available) / MIB
        row["mem_total_mib"] = vm.total / MIB
        cpu_pct = self._cpu.percent()
        row["util_pct"] = cpu_pct
        row["host_cpu_pct"] = cpu_pct
        if instances is not None:
            snap = instances.scan()
            row["instance_mem_mib"] = snap.rss_mib
            row["instance_rss_mib"] = snap.rss_mib
            row["instance_cpu_pct"] = snap.cpu_pct
            row["n_instances"] = snap.n_instances
        return row

    def close(self) -> None:
        self._rapl = None


def host_info() -> dict[str, object]:
    """Static facts about the host for run.json."""
    cpu_model = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "logical_cpus": psutil.cpu_count(logical=True),
        "physical_cpus": psutil.cpu_count(logical=False),
        "ram_total_mib": round(psutil.virtual_memory().total / MIB, 1),
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
    }
