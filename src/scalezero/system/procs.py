"""Process hygiene: every server we start dies with us.

Children run in their own session (process group) so a whole tree can be signalled at
once, and ask the kernel to kill them when their parent dies (``PR_SET_PDEATHSIG``), with
a polling watchdog as a second line for the rare race where the parent died first.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent thread exits."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def start_parent_watchdog(
    parent_pid: int, on_orphan: Callable[[], None] | None = None, interval_s: float = 0.5
) -> threading.Thread:
    """Exit (or call ``on_orphan``) once ``parent_pid`` is no longer our parent."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                if on_orphan is not None:
                    on_orphan()
                else:
                    # Take our own process group down with us: an orphan measures nothing.
                    with contextlib.suppress(OSError):
                        os.killpg(os.getpgrp(), signal.SIGKILL)
                    os._exit(3)
                return
            time.sleep(interval_s)

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Both guards at once; exits immediately if the parent is already gone."""
    set_parent_death_signal(sig)
    if os.getppid() != parent_pid:
        os._exit(3)
    start_parent_watchdog(parent_pid)


def is_snakemake(cmdline: list[str]) -> bool:
    """Whether a command line runs Snakemake itself (`snakemake ...`, `python
    .../bin/snakemake ...`, `python -m snakemake ...`), not merely mentions it (the shell
    Snakemake runs a job script through names `.snakemake/scripts/...`)."""
    head = [os.path.basename(part) for part in cmdline[:2]]
    if "snakemake" in head:
        return True
    return any(a == "-m" and b == "snakemake" for a, b in itertools.pairwise(cmdline))


def workflow_ancestor() -> psutil.Process | None:
    """The nearest ancestor that is Snakemake (the one running this job, whatever shell
    stands between), or None."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for ancestor in psutil.Process().parents():
            with contextlib.suppress(psutil.Error):
                if is_snakemake(ancestor.cmdline()):
                    return ancestor
    return None


def watch_process(proc: psutil.Process, on_gone: Callable[[], None],
                  interval_s: float = 0.5) -> threading.Thread:
    """Call `on_gone` once `proc` has ended (pid and start time checked, so a reused pid
    does not count as alive). A SIGKILLed parent sends no signal to its children: only
    watching notices it."""

    def watch() -> None:
        while proc.is_running() and proc.status() != "zombie":
            time.sleep(interval_s)
        on_gone()

    def guarded() -> None:
        import psutil

        try:
            watch()
        except psutil.NoSuchProcess:
            on_gone()

    thread = threading.Thread(target=guarded, name="workflow-watchdog", daemon=True)
    thread.start()
    return thread


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller must cope with losing the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def terminate_group(proc: subprocess.Popen, grace_s: float = 5.0) -> int | None:
    """SIGTERM the child's process group, then SIGKILL whatever is left after ``grace_s``.

    ``proc`` must have been started with ``start_new_session=True``. Returns the exit code.
    """
    pgid = proc.pid
    if proc.poll() is None:
        signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # Grandchildren may outlive the leader: clear the whole group either way.
    signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    return proc.returncode


def package_env() -> dict[str, str]:
    """The environment for a child that runs `python -m scalezero...`.

    The workflow imports the package from the source tree without installing it, so a
    child interpreter finds it only if the tree is on PYTHONPATH.
    """
    import scalezero

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(scalezero.__file__)))
    env = dict(os.environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *parts])
    return env
