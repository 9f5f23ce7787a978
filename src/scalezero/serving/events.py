"""Lifecycle vocabulary and the events log, written as events happen so a crash loses nothing.

The names here are data: they appear verbatim in events.csv and in the phase marker
lines child processes print on stdout. Standard library only, and cheap to import: the
instance and probe processes (and the test stand-in for an instance) import this module
before anything else.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import sys
import threading
import time
from pathlib import Path
from typing import IO, TextIO

EVENT_COLUMNS = ("t_s", "instance_id", "event", "state", "pid", "reason", "detail", "tier")

#: Tiers of the ``tier`` column: what a start began from. A ``spawn`` row carries the
#: process's start tier (weights in the host's page cache, or read from disk), a ``wake``
#: row ``runtime_warm`` (the process was up, only the model is reloaded).
TIER_HOST_CACHED = "host_cached"
TIER_DISK_COLD = "disk_cold"
TIER_RUNTIME_WARM = "runtime_warm"
#: A request's ``start_tier`` when its instance was ready when it arrived.
TIER_LOADED = "loaded"

#: First word of a phase marker line on a child's stdout: ``@scalezero <phase> <monotonic s>``.
MARKER = "@scalezero"


class Lifecycle(enum.StrEnum):
    """Event names of events.csv, in lifecycle order, and the phases children announce."""

    SPAWN = "spawn"  # process created (the cold start begins before fork/exec)
    RUNTIME_READY = "runtime_ready"  # interpreter and llama.cpp library loaded
    MODEL_LOADED = "model_loaded"  # weights loaded, context created
    LISTENING = "listening"  # HTTP socket bound (a marker only, never an event row)
    READY = "ready"  # the server answers HTTP
    FIRST_TOKEN = "first_token"  # first token of an instance's first request left it
    DRAIN = "drain"  # the policy (or shutdown) decided to stop: no new requests
    STOPPED = "stopped"
    START_FAILED = "start_failed"
    DIED = "died"  # exited unasked while ready (or runtime-warm)
    SLEEP = "sleep"  # idle TTL over: model unloaded, process kept (runtime-warm)
    WAKE = "wake"  # a runtime-warm instance reloads its model
    CONTEXT_LOADED = "context_loaded"  # the context-only probe holds its model (a marker)


class Reason(enum.StrEnum):
    """The ``reason`` column of events.csv: why an instance started or stopped."""

    ON_DEMAND = "on_demand"  # a request waited and no instance could serve it
    MIN_INSTANCES = "min_instances"  # the policy keeps a minimum up
    PREWARM = "prewarm"  # the policy asked for a start ahead of the next request
    IDLE_TTL = "idle_ttl"  # idle for the policy's TTL
    NO_INFLIGHT = "no_inflight"  # the policy stops an instance as soon as it is idle
    DRAINED = "drained"  # a draining instance finished its last request
    SHUTDOWN = "shutdown"  # the gateway is shutting down
    CRASH = "crash"  # the process exited unasked
    EVICTED = "evicted"  # stopped while idle to free memory for another deployment
    RUNTIME_WARM_TTL = "runtime_warm_ttl"  # runtime-warm for the policy's runtime-warm TTL


def marker_line(phase: str, t_s: float | None = None) -> str:
    """One marker line (newline included) for ``phase`` at monotonic time ``t_s`` (now)."""
    # Monotonic time is system-wide on Linux, so the reader can compare it with its own.
    return f"{MARKER} {phase} {time.monotonic() if t_s is None else t_s:.6f}\n"


def emit_marker(phase: str, stream: TextIO | None = None) -> None:
    """Announce ``phase`` on stdout (or ``stream``) now, flushed at once."""
    out = sys.stdout if stream is None else stream
    out.write(marker_line(phase))
    out.flush()


def parse_marker(line: str) -> tuple[Lifecycle, float] | None:
    """(phase, monotonic s) of a marker line; None for any other line, and for a phase
    this version does not know (so that an unknown name never reaches events.csv)."""
    parts = line.split()
    if len(parts) != 3 or parts[0] != MARKER:
        return None
    try:
        return Lifecycle(parts[1]), float(parts[2])
    except ValueError:
        return None


def write_event_header(path: Path) -> None:
    """An events.csv with the header only (a run whose gateway never wrote one)."""
    path.write_text(",".join(EVENT_COLUMNS) + "\n")


@dataclasses.dataclass(frozen=True)
class Event:
    t_s: float
    instance_id: str
    event: str
    state: str
    pid: int | None = None
    reason: str = ""
    detail: str = ""
    tier: str = ""

    def row(self) -> list[str]:
        return [
            f"{self.t_s:.6f}",
            self.instance_id,
            self.event,
            self.state,
            "" if self.pid is None else str(self.pid),
            self.reason,
            self.detail,
            self.tier,
        ]


class EventLog:
    """In-memory list of events, mirrored to a CSV file (flushed per event) when given one."""

    def __init__(self, path: Path | None = None) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._writer = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file)
            self._writer.writerow(EVENT_COLUMNS)
            self._file.flush()

    def record(
        self,
        instance_id: str,
        event: str,
        state: str,
        pid: int | None = None,
        reason: str = "",
        detail: str = "",
        t_s: float | None = None,
        tier: str = "",
    ) -> Event:
        item = Event(
            t_s=time.monotonic() if t_s is None else t_s,
            instance_id=instance_id,
            # Plain strings: the enums' values, not the enums, go into records.
            event=str(event),
            state=str(state),
            pid=pid,
            reason=str(reason),
            detail=detail.replace("\n", " ")[:2000],
            tier=tier,
        )
        with self._lock:
            self.events.append(item)
            if self._writer is not None and self._file is not None:
                self._writer.writerow(item.row())
                self._file.flush()
        return item

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
                self._writer = None
