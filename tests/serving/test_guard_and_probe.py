"""scalezero.serving.guard (a command that dies with its parent) and scalezero.serving.context_probe
(the process that holds a device context with a tiny model: the context-only level)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from scalezero.models.synthetic import ensure_probe_model
from scalezero.serving.context_probe import LOADED_MARKER

PY = sys.executable


def _gone(pid: int, timeout_s: float) -> bool:
    """Whether `pid` ends (or is left a zombie for its new parent to reap) in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _assert_child_dies_with_parent(parent: str, parent_timeout_s: float, message: str) -> None:
    """Run `parent` (Python source that starts a child, prints its pid and exits without
    cleaning up) and check that the child ends within 10 s of its parent."""
    proc = subprocess.Popen([PY, "-c", parent], stdout=subprocess.PIPE, text=True)
    child_pid = int(proc.stdout.readline())
    try:
        assert proc.wait(timeout=parent_timeout_s) == 0
        assert _gone(child_pid, 10.0), message
    finally:
        _kill(child_pid)


# ---------------------------------------------------------------------------------- guard


def test_guard_runs_the_command_in_its_place(tmp_path: Path) -> None:
    out = subprocess.run(
        [PY, "-m", "scalezero.serving.guard", "--parent-pid", str(os.getpid()), "--", PY, "-c",
         "import os; print('pid', os.getpid(), 'parent', os.getppid())"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    # exec, not a child: the command has the guard's place, under this process.
    assert words[0] == "pid" and words[2:] == ["parent", str(os.getpid())]


def test_guard_refuses_when_the_parent_is_not_the_one_named(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    out = subprocess.run(
        [PY, "-m", "scalezero.serving.guard", "--parent-pid", str(os.getpid() + 999_999), "--",
         PY, "-c", f"open({str(marker)!r}, 'w')"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 3
    assert not marker.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--parent-pid", "1"], "usage: python -m scalezero.serving.guard --parent-pid PID -- COMMAND"),
    (["--parent-pid", "1", "--"], "scalezero.serving.guard: no command given"),
])
def test_guard_usage_errors(args: list[str], message: str) -> None:
    out = subprocess.run([PY, "-m", "scalezero.serving.guard", *args], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and message in out.stderr, out.stderr


def test_guarded_command_dies_with_its_parent() -> None:
    """A parent that starts a guarded `sleep` and then dies: the sleep is killed."""
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([{PY!r}, "-m", "scalezero.serving.guard", "--parent-pid",
                                  str(os.getpid()), "--", "sleep", "60"])
        print(child.pid, flush=True)
        time.sleep(1.0)  # the guard has set its death signal and exec'd by now
        os._exit(0)  # no cleanup: the parent just disappears
    """)
    _assert_child_dies_with_parent(parent, 30.0, "the guarded command outlived its parent")


# -------------------------------------------------------------------------- context probe


def test_probe_model_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "probe.gguf"
    assert ensure_probe_model(path) == path
    first = path.stat()
    assert first.st_size > 0 and path.read_bytes()[:4] == b"GGUF"
    ensure_probe_model(path)
    assert path.stat().st_mtime_ns == first.st_mtime_ns  # reused, not rewritten


@pytest.fixture(scope="module")
def probe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_probe_model(tmp_path_factory.mktemp("probe") / "tiny.gguf")


def _start_probe(model: Path, parent_pid: int) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "scalezero.serving.context_probe", "--model", str(model),
                             "--parent-pid", str(parent_pid)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_probe_loads_reports_and_stops_on_sigterm(probe_model: Path) -> None:
    before = time.monotonic()
    proc = _start_probe(probe_model, os.getpid())
    try:
        line = proc.stdout.readline().split()
        # The marker and the monotonic time of the load (same clock as this process).
        assert " ".join(line[:2]) == LOADED_MARKER, line
        assert before < float(line[2]) < time.monotonic()
        assert proc.poll() is None  # holds the context until told to stop
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_probe_refuses_a_wrong_parent(probe_model: Path) -> None:
    proc = _start_probe(probe_model, os.getpid() + 999_999)
    try:
        assert proc.wait(timeout=30) == 3
        assert proc.stdout.read() == ""  # it never loaded
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_probe_dies_with_its_parent(probe_model: Path) -> None:
    parent = textwrap.dedent(f"""
        import os, subprocess, sys
        child = subprocess.Popen([{PY!r}, "-m", "scalezero.serving.context_probe", "--model",
                                  {str(probe_model)!r}, "--parent-pid", str(os.getpid())],
                                 stdout=subprocess.PIPE, text=True)
        child.stdout.readline()  # loaded
        print(child.pid, flush=True)
        os._exit(0)
    """)
    _assert_child_dies_with_parent(parent, 60.0, "the probe outlived its parent")
