"""Finding the instance processes (llama.cpp servers) under a root process, cheaply.

The instances are the descendants of `root_pid` whose command line contains a marker
(default "scalezero.serving.instance"), together with their own descendants. The set changes
while a run goes on (scale to zero starts and stops instances), so it is rescanned at
every sample. A full psutil `children(recursive=True)` reads every /proc/<pid>/stat on
each call (milliseconds at 10 Hz); here the parent of a pid is read once, when the pid
first appears, and only the few processes under the root are looked at again.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from scalezero.telemetry.base import MIB, warn_once

DEFAULT_INSTANCE_MATCH = "scalezero.serving.instance"
_PROC = "/proc"


@dataclass(frozen=True)
class InstanceSnapshot:
    """The instance processes at one moment."""

    pids: frozenset[int]  # every process of every instance tree
    n_instances: int  # instance roots alive (processes whose cmdline holds the marker)
    rss_mib: float  # host RSS summed over `pids`
    cpu_pct: float | None  # CPU of `pids` since the previous scan (100 = one core); None at first


def _read_ppid_linux(pid: int) -> int | None:
    try:
        fd = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may contain spaces and ')', so parse after the last ')':
    # ") <state> <ppid> ...".
    end = data.rfind(b")")
    fields = data[end + 2 :].split(None, 2)
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


class _ParentTable:
    """pid -> parent pid for every process on the host, refreshed incrementally."""

    def __init__(self) -> None:
        self._ppid: dict[int, int] = {}
        self.linux = sys.platform.startswith("linux") and os.path.isdir(f"{_PROC}/self")

    def refresh(self) -> dict[int, int]:
        if not self.linux:
            self._ppid = {
                p.pid: p.info["ppid"] or 0 for p in psutil.process_iter(["ppid"])
            }
            return self._ppid
        present = {int(name) for name in os.listdir(_PROC) if name.isdigit()}
        for pid in self._ppid.keys() - present:
            del self._ppid[pid]
        for pid in present - self._ppid.keys():
            ppid = _read_ppid_linux(pid)
            if ppid is not None:
                self._ppid[pid] = ppid
        return self._ppid


@dataclass
class _Tracked:
    proc: psutil.Process
    cpu_s: float | None = None  # user+system CPU seconds at the previous scan


class InstanceTracker:
    """Rescans the instance process trees under `root_pid` and sums their RSS and CPU."""

    def __init__(
        self,
        root_pid: int,
        instance_match: str = DEFAULT_INSTANCE_MATCH,
        exclude_pids: Iterable[int] | None = None,
    ) -> None:
        if not instance_match:
            raise ValueError("instance_match must be a non-empty string")
        self.root_pid = root_pid
        self.instance_match = instance_match
        # The sampler itself is usually a child of the root and may carry the marker in
        # its own argv (--instance-match), so it never counts as an instance.
        self._exclude = set(exclude_pids) if exclude_pids is not None else {os.getpid()}
        self._parents = _ParentTable()
        # Sticky for a pid's lifetime (survives exec). Pids are keyed without a start
        # time: Linux hands out pids in sequence, so reuse within one scan interval
        # does not happen in practice.
        self._instance_roots: set[int] = set()
        self._tracked: dict[int, _Tracked] = {}
        self._prev_mono_s: float | None = None

    def _cmdline_matches(self, pid: int) -> bool:
        if self._parents.linux:
            try:
                with open(f"{_PROC}/{pid}/cmdline", "rb") as fh:
                    raw = fh.read()
            except OSError:
                return False
            return self.instance_match in raw.replace(b"\0", b" ").decode(errors="replace")
        try:
            return self.instance_match in " ".join(psutil.Process(pid).cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except psutil.AccessDenied:
            warn_once(f"cmdline-{pid}", f"cannot read the command line of pid {pid}")
            return False

    def _no_match_pids(self, ppid: dict[int, int]) -> set[int]:
        """The excluded pids' ancestors up to the root (e.g. a `sh -c` wrapper whose argv
        names the marker): walked through, never matched."""
        out: set[int] = set()
        for pid in self._exclude:
            seen = 0
            while pid in ppid and pid != self.root_pid and seen < 64:
                out.add(pid)
                pid = ppid[pid]
                seen += 1
        return out

    def _instance_tree_pids(self) -> set[int]:
        ppid = self._parents.refresh()
        self._instance_roots &= ppid.keys()
        children: dict[int, list[int]] = {}
        for pid, parent in ppid.items():
            children.setdefault(parent, []).append(pid)
        no_match = self._no_match_pids(ppid)
        members: set[int] = set()
        # Depth first from the root: a parent is classified before its children.
        stack: list[tuple[int, bool]] = [(c, False) for c in children.get(self.root_pid, ())]
        while stack:
            pid, inside = stack.pop()
            if pid in self._exclude:
                continue
            # Unmatched processes are checked again at every scan: a freshly forked
            # child shows its parent's cmdline until it calls exec.
            if (
                not inside
                and pid not in no_match
                and (pid in self._instance_roots or self._cmdline_matches(pid))
            ):
                self._instance_roots.add(pid)
                inside = True
            if inside:
                members.add(pid)
            stack.extend((c, inside) for c in children.get(pid, ()))
        return members

    def scan(self) -> InstanceSnapshot:
        members = self._instance_tree_pids()
        for pid in self._tracked.keys() - members:
            del self._tracked[pid]
        now_mono = time.monotonic()
        now_wall = time.time()
        first_scan = self._prev_mono_s is None
        interval_s = 0.0 if self._prev_mono_s is None else now_mono - self._prev_mono_s
        rss_b = 0
        cpu_used_s = 0.0
        alive: set[int] = set()
        for pid in members:
            tracked = self._tracked.get(pid)
            try:
                if tracked is None:
                    tracked = _Tracked(psutil.Process(pid))
                    self._tracked[pid] = tracked
                proc = tracked.proc
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue  # exited, not yet reaped: holds no memory, runs nothing
                    rss_b += proc.memory_info().rss
                    times = proc.cpu_times()
                    age_s = now_wall - proc.create_time()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                self._tracked.pop(pid, None)
                continue
            except psutil.AccessDenied:
                warn_once(f"proc-{pid}", f"cannot read memory/CPU of instance pid {pid}")
                continue
            alive.add(pid)
            cpu_s = times.user + times.system
            if tracked.cpu_s is not None:
                cpu_used_s += max(0.0, cpu_s - tracked.cpu_s)
            elif not first_scan and interval_s > 0:
                # New since the previous scan. A process born inside the interval spent
                # all its CPU time in it (exact); one that existed unseen (e.g. matched
                # only after its exec) is prorated over its lifetime.
                cpu_used_s += cpu_s * min(1.0, interval_s / age_s) if age_s > 0 else cpu_s
            tracked.cpu_s = cpu_s
        self._prev_mono_s = now_mono
        cpu_pct = None if first_scan or interval_s <= 0 else 100.0 * cpu_used_s / interval_s
        return InstanceSnapshot(
            pids=frozenset(alive),
            n_instances=len(self._instance_roots & alive),
            rss_mib=rss_b / MIB,
            cpu_pct=cpu_pct,
        )
