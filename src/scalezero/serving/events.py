"""Lifecycle events, written as they happen so a crash loses nothing."""

from __future__ import annotations

import csv
import dataclasses
import threading
import time
from pathlib import Path
from typing import IO

EVENT_COLUMNS = ("t_s", "instance_id", "event", "state", "pid", "reason", "detail")


@dataclasses.dataclass(frozen=True)
class Event:
    t_s: float
    instance_id: str
    event: str
    state: str
    pid: int | None = None
    reason: str = ""
    detail: str = ""

    def row(self) -> list[str]:
        return [
            f"{self.t_s:.6f}",
            self.instance_id,
            self.event,
            self.state,
            "" if self.pid is None else str(self.pid),
            self.reason,
            self.detail,
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
    ) -> Event:
        item = Event(
            t_s=time.monotonic() if t_s is None else t_s,
            instance_id=instance_id,
            event=event,
            state=state,
            pid=pid,
            reason=reason,
            detail=detail.replace("\n", " ")[:2000],
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
