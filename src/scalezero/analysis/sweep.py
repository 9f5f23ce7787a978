"""The size sweep's summary: per model, the measured cold-start phases beside the
lower bounds "bytes / read bandwidth" (see `scalezero.measure.sweep` for how the
bandwidth and page-cache residency are measured)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalezero.analysis.aggregate import summarize_run
from scalezero.models.gguf import gguf_info

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
    if share is None:
        return math.nan
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
