"""Cold start against model size: the size sweep's trace, read bandwidth and summary.

A cold start cannot be faster than reading the weights. The sweep measures, for each
model in `size_sweep.models`, the cold-start phases of a few naive (always cold)
requests and, in the same workflow run, how fast this host reads that file: from the
page cache, and after asking the kernel to drop the file's cached pages
(`posix_fadvise(POSIX_FADV_DONTNEED)`), which approximates a cold disk (a hypervisor's
own cache may still serve it; the result says which method was used). The summary puts
both lower bounds ("bytes / bandwidth") beside the measured phases.

Whether a load read the file from storage or from memory depends on what the page cache
held at the time, so the sweep's run records it rather than assuming it: the share of
the file's pages resident in the page cache when the run begins (before its first cold
start; nothing else reads the file in between) and when it ends, asked with mincore(2)
on a read-only mapping, which maps the file without reading it.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalezero.system.pagecache import drop_cached_pages

READ_BLOCK_BYTES = 16 * 1024 * 1024
MIB = 1024 * 1024

#: Columns of results/sweep/size_sweep.csv, with their meaning.
SWEEP_COLUMNS: dict[str, str] = {
    "model": "models: entry name",
    "file_bytes": "GGUF file size, bytes",
    "parameters": "tensor elements in the file",
    "file_type": "GGUF file type (e.g. MOSTLY_Q8_0, MOSTLY_F16)",
    "cold_starts": "completed cold starts measured",
    "cold_start_mean_s": "spawn to ready, mean over cold starts, s",
    "spawn_to_runtime_ready_mean_s": "process spawn to interpreter and llama.cpp loaded, s",
    "runtime_ready_to_model_loaded_mean_s": "weights loaded and context created, s",
    "model_loaded_to_ready_mean_s": "server answering HTTP after load, s",
    "ready_to_first_token_mean_s": "first token of the first request after ready, s",
    "warm_ttft_p50_ms": "median TTFT of warm requests (empty if none), ms",
    "tpot_p50_ms": "median time per output token, ms",
    "page_cache_read_mib_s": "read bandwidth of this file from the page cache, MiB/s",
    "cold_read_mib_s": "read bandwidth after dropping the file's cached pages, MiB/s",
    "cold_read_method": "how the cold read was made (fadvise_dontneed, or none)",
    "load_lower_bound_page_cache_s": "file_bytes / page_cache_read_mib_s, s",
    "load_lower_bound_cold_s": "file_bytes / cold_read_mib_s, s",
    "page_cache_before_pct": "share of the file in the page cache when the sweep run "
                             "began, before its first cold start, %",
    "page_cache_after_pct": "share of the file in the page cache when the sweep run "
                            "ended, %",
    "page_cache_method": "how residency was read (mincore, or none: unknown)",
    "device": "cpu or cuda",
}


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


def summarize_sweep(
    models: Sequence[str],
    run_dirs: Sequence[Path],
    bandwidth_files: Sequence[Path],
    model_files: Sequence[Path],
    page_cache_files: Sequence[Path | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per model (SWEEP_COLUMNS), in the order given. `page_cache_files` are the
    residency records of the sweep runs (`{"before": ..., "after": ...}`, each a
    `page_cache_residency` result); without one, residency is unknown (empty)."""
    from scalezero.analysis.aggregate import summarize_run
    from scalezero.models.fetch import gguf_info

    rows = []
    residency_files = list(page_cache_files or [None] * len(models))
    for name, run_dir, bw_file, model_file, cache_file in zip(
            models, run_dirs, bandwidth_files, model_files, residency_files, strict=True):
        summary = summarize_run(Path(run_dir)).row
        bandwidth = json.loads(Path(bw_file).read_text(encoding="utf-8"))
        residency = (json.loads(Path(cache_file).read_text(encoding="utf-8"))
                     if cache_file is not None else {})
        info = gguf_info(Path(model_file))
        size = info["file_bytes"]
        row = {
            "model": name,
            "file_bytes": size,
            "parameters": info["parameters"],
            "file_type": info["file_type"],
            "cold_starts": summary.get("cold_starts"),
            "cold_start_mean_s": summary.get("cold_start_mean_s"),
            "spawn_to_runtime_ready_mean_s": summary.get("spawn_to_runtime_ready_mean_s"),
            "runtime_ready_to_model_loaded_mean_s":
                summary.get("runtime_ready_to_model_loaded_mean_s"),
            "model_loaded_to_ready_mean_s": summary.get("model_loaded_to_ready_mean_s"),
            "ready_to_first_token_mean_s": summary.get("ready_to_first_token_mean_s"),
            "warm_ttft_p50_ms": summary.get("ttft_warm_p50_ms"),
            "tpot_p50_ms": summary.get("tpot_p50_ms"),
            "page_cache_read_mib_s": bandwidth["page_cache_read_mib_s"],
            "cold_read_mib_s": bandwidth["cold_read_mib_s"],
            "cold_read_method": bandwidth["cold_read_method"],
            "load_lower_bound_page_cache_s": _bound(size, bandwidth["page_cache_read_mib_s"]),
            "load_lower_bound_cold_s": _bound(size, bandwidth["cold_read_mib_s"]),
            "page_cache_before_pct": _pct(residency.get("before")),
            "page_cache_after_pct": _pct(residency.get("after")),
            "page_cache_method": (residency.get("before") or {}).get("method", "none"),
            "device": summary.get("device"),
        }
        rows.append(row)
    return rows


def _pct(record: Mapping[str, Any] | None) -> float:
    share = (record or {}).get("resident_share")
    try:
        return 100.0 * float(share)
    except (TypeError, ValueError):
        return math.nan


def _bound(size_bytes: int, mib_s: float) -> float:
    if not mib_s or not math.isfinite(mib_s):
        return math.nan
    return size_bytes / MIB / mib_s


def write_sweep_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(list(rows), columns=list(SWEEP_COLUMNS))
    frame.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
    return path


def plot_size_sweep(sweep_csv: Path, out: Path) -> Path:
    """Cold-start phases against model bytes, beside the read-bandwidth lower bounds."""
    import pandas as pd

    from scalezero.report.figures import _plt, _save

    plt = _plt()

    df = pd.read_csv(sweep_csv).sort_values("file_bytes")
    mib = df["file_bytes"] / MIB
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    phases = [
        ("spawn_to_runtime_ready_mean_s", "spawn → runtime ready", "#9ecae1"),
        ("runtime_ready_to_model_loaded_mean_s", "weights loaded", "#3182bd"),
        ("model_loaded_to_ready_mean_s", "server ready", "#08519c"),
        ("ready_to_first_token_mean_s", "first token", "#fd8d3c"),
    ]
    x = range(len(df))
    bottom = [0.0] * len(df)
    for column, label, colour in phases:
        values = pd.to_numeric(df[column], errors="coerce").fillna(0.0).tolist()
        ax.bar(x, values, bottom=bottom, color=colour, label=label, width=0.6)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    # The bounds apply to the weights-loading phase: draw them where that phase would
    # end if it were only reading the file, i.e. on top of the spawn phase.
    load_start = pd.to_numeric(df["spawn_to_runtime_ready_mean_s"], errors="coerce").fillna(0.0)
    ax.plot(x, load_start + df["load_lower_bound_page_cache_s"], "k_", markersize=30, mew=2,
            label="load end if reading at page-cache bandwidth")
    if df["load_lower_bound_cold_s"].notna().any():
        ax.plot(x, load_start + df["load_lower_bound_cold_s"], "r_", markersize=30, mew=2,
                label="load end if reading at cold-read bandwidth")
    ax.set_xticks(list(x), [f"{m}\n{s:,.0f} MiB" for m, s in zip(df["model"], mib,
                                                                   strict=True)])
    ax.set_ylabel("mean time from spawn, s")
    ax.set_xlabel("model (file size)")
    ax.set_title("Cold start by phase against model size")
    # Below the axes: bars of any height stay readable.
    fig.legend(fontsize=8, loc="outside lower center", ncols=3, frameon=False, markerscale=0.5)
    return _save(fig, out)
