"""Size sweep: page-cache residency of a model file, the summary row and the report text."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from report_value_fixtures import make_run

from scalezero.analysis.sweep import SWEEP_COLUMNS, summarize_sweep
from scalezero.report.build import size_sweep_md
from scalezero.system.pagecache import page_cache_residency

MIB = 1024 * 1024


def _sparse(path: Path, size_bytes: int) -> Path:
    """A file of holes: nothing of it has ever been read, so nothing is cached."""
    with open(path, "wb") as fh:
        fh.truncate(size_bytes)
    return path


def test_residency_counts_the_pages_read(tmp_path: Path) -> None:
    path = _sparse(tmp_path / "model.gguf", 8 * MIB)
    before = page_cache_residency(path)
    assert before["method"] == "mincore" and before["pages"] == 8 * MIB // os.sysconf(
        "SC_PAGE_SIZE")
    assert before["resident_share"] == 0.0
    # Read the first quarter with read-ahead off: exactly that quarter is cached.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        assert len(os.pread(fd, 2 * MIB, 0)) == 2 * MIB
    finally:
        os.close(fd)
    assert page_cache_residency(path)["resident_share"] == 0.25
    path.read_bytes()
    after = page_cache_residency(path)
    # All of it, give or take a page or two: the kernel may reclaim a clean page at any
    # moment (seen once in a full run: 2047 of 2048). The exact quarter above pins the count.
    assert after["pages"] - 2 <= after["resident_pages"] <= after["pages"]
    assert after["resident_share"] == after["resident_pages"] / after["pages"]


def test_residency_of_an_empty_file_is_unknown(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    out = page_cache_residency(empty)
    assert out["method"] == "none" and math.isnan(out["resident_share"])


def test_summary_row_carries_the_residency(tmp_path: Path) -> None:
    from scalezero.models.synthetic import write_synthetic_model

    model = tmp_path / "tiny.gguf"
    write_synthetic_model(model, "tiny", dtype="f16")
    run_dir = make_run(tmp_path / "runs", "naive")
    bandwidth = tmp_path / "bw.json"
    bandwidth.write_text(json.dumps({"page_cache_read_mib_s": 1000.0,
                                     "cold_read_mib_s": 100.0,
                                     "cold_read_method": "fadvise_dontneed"}))
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"before": {"resident_share": 0.5, "method": "mincore"},
                                 "after": {"resident_share": 1.0, "method": "mincore"}}))
    (row,) = summarize_sweep(["tiny"], [run_dir], [bandwidth], [model], [cache])
    assert set(row) == set(SWEEP_COLUMNS)
    assert row["page_cache_before_pct"] == 50.0 and row["page_cache_after_pct"] == 100.0
    assert row["page_cache_method"] == "mincore"
    size_mib = model.stat().st_size / MIB
    assert row["load_lower_bound_cold_s"] == pytest.approx(size_mib / 100.0)
    # Without a residency record the row says it is unknown.
    (row,) = summarize_sweep(["tiny"], [run_dir], [bandwidth], [model])
    assert math.isnan(row["page_cache_before_pct"]) and row["page_cache_method"] == "none"


def _sweep_csv(path: Path, before_pct: float, after_pct: float) -> Path:
    rows = []
    for name, mib, cold_s in (("small", 10, 1.0), ("large", 500, 3.0)):
        rows.append({"model": name, "file_bytes": mib * MIB, "parameters": mib * 1e6,
                     "cold_start_mean_s": cold_s, "runtime_ready_to_model_loaded_mean_s":
                     cold_s / 2, "load_lower_bound_cold_s": mib / 200.0,
                     "load_lower_bound_page_cache_s": mib / 5000.0, "tpot_p50_ms": 12.0,
                     "cold_read_method": "fadvise_dontneed",
                     "page_cache_before_pct": before_pct if name == "large" else 100.0,
                     "page_cache_after_pct": after_pct})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("before", "after", "says"), [
    (100.0, 100.0, "100 % of its file was in the page cache (measured with mincore, 100 % "
                   "when it ended), so its loads read the file from memory, not storage"),
    (0.0, 100.0, "0 % of its file was in the page cache (measured with mincore, 100 % when "
                 "it ended), so its first load read the file from storage."),
    (40.0, 90.0, "40 % of its file was in the page cache (measured with mincore, 90 % when "
                 "it ended), so its first load read the file partly from memory, partly "
                 "from storage."),
    (float("nan"), float("nan"), "Whether large's file was in the page cache when its run "
                                 "loaded it was not measured"),
])
def test_report_says_what_was_measured_about_the_page_cache(
        tmp_path: Path, before: float, after: float, says: str) -> None:
    text = size_sweep_md(_sweep_csv(tmp_path / "s.csv", before, after), 3, "f.png")
    flat = " ".join(text.split())
    assert says in flat, flat
    assert "are page-cache loads" not in flat  # the old, unmeasured claim
    table = [line for line in text.splitlines() if line.startswith("| large ")]
    assert table and table[0].split("|")[8].strip() == ("n/a" if math.isnan(before)
                                                        else f"{before:.0f}")
