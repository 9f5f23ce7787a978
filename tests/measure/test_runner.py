"""Measured runs never overlap: the lock, and the workflow giving each run every core."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from scalezero.measure.runner import measurement_lock

HOLD_LOCK = """
import sys, time
from pathlib import Path
from scalezero.measure.runner import measurement_lock
with measurement_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_run_waits_for_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "results" / ".measurement.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), "1.5"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with measurement_lock(lock):
            waited_s = time.monotonic() - start
        assert waited_s > 1.0, f"the lock was taken while held (waited {waited_s:.2f} s)"
    finally:
        holder.kill()
        holder.wait()


def test_no_lock_file_means_no_waiting(tmp_path: Path) -> None:
    start = time.monotonic()
    with measurement_lock(None):
        pass
    with measurement_lock(tmp_path / "lock"):
        pass
    assert time.monotonic() - start < 1.0


def test_requests_from_a_trace_file(tmp_path: Path) -> None:
    """A run replays the trace file's rows as written, prompts kept as text."""
    import pandas as pd

    from scalezero.measure.replay import ReplayRequest, requests_from_trace
    from scalezero.workload.trace import read_trace, write_trace

    path = tmp_path / "trace.csv"
    write_trace(pd.DataFrame({"request_id": [0, 1], "t_sched_s": [0.25, 1.5],
                              "max_tokens": [8, 12], "prompt": ["NA", "say, hi"]}), path)
    assert requests_from_trace(read_trace(path)) == [
        ReplayRequest(0, 0.25, "NA", 8), ReplayRequest(1, 1.5, "say, hi", 12)]
