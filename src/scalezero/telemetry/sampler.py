"""The sampler: reads a telemetry source at a fixed rate and appends rows to telemetry.csv.

Samples are scheduled on absolute deadlines t0 + k / rate, so the period does not drift
with the time a sample takes; when a sample overruns, the deadlines it missed are
skipped (counted, not made up). Each row is flushed as soon as it is written, so a
sampler that is killed loses nothing it has read.
"""

from __future__ import annotations

import csv
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scalezero.telemetry.base import TELEMETRY_COLUMNS, TelemetrySource, warn_once
from scalezero.telemetry.procs import DEFAULT_INSTANCE_MATCH, InstanceTracker

DEFAULT_RATE_HZ = 10.0
MAX_RATE_HZ = 1000.0
# Longest single wait, so that `should_stop` (the parent watchdog) is checked often
# even at low sampling rates.
_MAX_WAIT_S = 0.25

# Decimal places written per column; anything not listed is written as is.
_DECIMALS: dict[str, int] = {
    "t_s": 6,
    "energy_mj": 3,
    "power_w": 3,
    "mem_used_mib": 3,
    "mem_total_mib": 3,
    "instance_mem_mib": 3,
    "instance_rss_mib": 3,
    "instance_cpu_pct": 2,
    "util_pct": 2,
    "mem_util_pct": 2,
    "sm_clock_mhz": 1,
    "host_cpu_pct": 2,
}


def format_row(row: dict[str, object]) -> list[str]:
    """The CSV cells of one sample, in TELEMETRY_COLUMNS order; missing -> empty cell."""
    cells: list[str] = []
    for column in TELEMETRY_COLUMNS:
        value = row.get(column)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            cells.append("")
        elif isinstance(value, float) and column in _DECIMALS:
            cells.append(f"{value:.{_DECIMALS[column]}f}")
        else:
            cells.append(str(value))
    return cells


@dataclass(frozen=True)
class SamplerStats:
    """What a run did, for logs and for checking the sampler's own cost."""

    rows: int
    skipped_deadlines: int
    failed_samples: int
    wall_s: float
    cpu_s: float  # CPU time (user + system) of this process during the run

    @property
    def cpu_pct(self) -> float:
        """The sampler's own CPU use (100 = one core)."""
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class Sampler:
    """Writes telemetry.csv from one source until stopped."""

    def __init__(self, source: TelemetrySource) -> None:
        self.source = source

    def run(
        self,
        out_path: Path | str,
        rate_hz: float = DEFAULT_RATE_HZ,
        stop_event: threading.Event | None = None,
        root_pid: int | None = None,
        instance_match: str = DEFAULT_INSTANCE_MATCH,
        duration_s: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> SamplerStats:
        """Sample until `stop_event` is set, `should_stop()` is true, or `duration_s` has
        passed. The instances are the processes under `root_pid` (default: this
        process's parent) whose command line contains `instance_match`. A stop by event
        or `should_stop` takes one last sample, so the file ends at the stop time."""
        if not (0 < rate_hz <= MAX_RATE_HZ):
            raise ValueError(f"rate_hz must be in (0, {MAX_RATE_HZ:g}], not {rate_hz}")
        if duration_s is not None and duration_s <= 0:
            raise ValueError(f"duration_s must be positive, not {duration_s}")
        stop_event = stop_event if stop_event is not None else threading.Event()
        tracker = InstanceTracker(
            os.getppid() if root_pid is None else root_pid, instance_match
        )
        period_s = 1.0 / rate_hz
        rows = skipped = failed = 0
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        cpu0 = time.process_time()
        t0 = time.monotonic()
        end_s = math.inf if duration_s is None else t0 + duration_s

        def stopping() -> bool:
            return stop_event.is_set() or (should_stop is not None and should_stop())

        with open(out_path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(TELEMETRY_COLUMNS)
            fh.flush()

            def take_sample() -> None:
                nonlocal rows, failed
                try:
                    row = self.source.sample(tracker)
                except Exception as exc:
                    # One bad read (a process vanishing mid-read, a driver hiccup) must
                    # not end the measurement; the gap shows as a missing row.
                    failed += 1
                    warn_once(f"sample-{type(exc).__name__}", f"a sample failed: {exc!r}")
                    return
                writer.writerow(format_row(row))
                fh.flush()
                rows += 1

            k = 0
            stopped = False
            while True:
                take_sample()
                k += 1
                deadline = t0 + k * period_s
                now = time.monotonic()
                if now > deadline:  # overran: skip the deadlines already past
                    missed = math.floor((now - t0) / period_s) + 1 - k
                    k += missed
                    skipped += missed
                    deadline = t0 + k * period_s
                if deadline >= end_s:
                    stopped = self._wait_until(end_s, stop_event, stopping)
                    break
                if self._wait_until(deadline, stop_event, stopping):
                    stopped = True
                    break
            if stopped:
                take_sample()
        return SamplerStats(
            rows=rows,
            skipped_deadlines=skipped,
            failed_samples=failed,
            wall_s=time.monotonic() - t0,
            cpu_s=time.process_time() - cpu0,
        )

    @staticmethod
    def _wait_until(
        deadline_s: float, stop_event: threading.Event, stopping: Callable[[], bool]
    ) -> bool:
        """Sleep until the deadline; True if asked to stop first."""
        while True:
            if stopping():
                return True
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                return False
            stop_event.wait(min(remaining_s, _MAX_WAIT_S))
