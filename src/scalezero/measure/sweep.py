"""Cold start against model size: the size sweep's trace and read bandwidth.

A cold start cannot be faster than reading the weights. The sweep measures, for each
model in `size_sweep.models`, the cold-start phases of a few naive (always cold)
requests and, in the same workflow run, how fast this host reads that file: from the
page cache, and after asking the kernel to drop the file's cached pages
(`posix_fadvise(POSIX_FADV_DONTNEED)`), which approximates a cold disk (a hypervisor's
own cache may still serve it; the result says which method was used). The summary
(`scalezero.analysis.sweep`) puts both lower bounds ("bytes / bandwidth") beside the
measured phases.

Whether a load read the file from storage or from memory depends on what the page cache
held at the time, so the sweep's run records it rather than assuming it: the share of
the file's pages resident in the page cache when the run begins (before its first cold
start; nothing else reads the file in between) and when it ends, asked with mincore(2)
on a read-only mapping, which maps the file without reading it.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalezero.system.pagecache import drop_cached_pages

READ_BLOCK_BYTES = 16 * 1024 * 1024
MIB = 1024 * 1024

def write_sweep_trace(path: Path, requests: int, spacing_s: float, max_tokens: int) -> Path:
    """Evenly spaced requests: with the naive policy each one that arrives after the
    previous answer is complete meets a stopped instance, i.e. a cold start."""
    if requests < 1 or spacing_s <= 0 or max_tokens < 1:
        raise ValueError("requests, spacing_s and max_tokens must be positive")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["request_id", "t_sched_s", "max_tokens", "prompt"])
        for i in range(requests):
            writer.writerow([i, f"{0.5 + i * spacing_s:.6f}", max_tokens,
                             "Write one sentence about the sea."])
    return path


def _read_all(path: Path) -> tuple[int, float]:
    total = 0
    start = time.perf_counter()
    with path.open("rb", buffering=0) as fh:
        while True:
            chunk = fh.read(READ_BLOCK_BYTES)
            if not chunk:
                break
            total += len(chunk)
    return total, time.perf_counter() - start


def measure_read_bandwidth(path: Path, repeats: int = 3) -> dict[str, Any]:
    """Read `path` after dropping its cached pages, then from the page cache.

    Returns MiB/s for both (medians over `repeats`), the bytes and the method used.
    """
    path = Path(path)
    cold, warm = [], []
    method = "fadvise_dontneed"
    for _ in range(repeats):
        if drop_cached_pages(path):
            size, seconds = _read_all(path)
            cold.append(size / MIB / seconds if seconds > 0 else math.nan)
        else:
            method = "none"
        size, seconds = _read_all(path)  # now (mostly) in the page cache
        size2, seconds2 = _read_all(path)
        warm.append(size2 / MIB / seconds2 if seconds2 > 0 else math.nan)
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "page_cache_read_mib_s": _median(warm),
        "cold_read_mib_s": _median(cold) if cold else math.nan,
        "cold_read_method": method,
        "repeats": repeats,
    }


def _median(values: Sequence[float]) -> float:
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
