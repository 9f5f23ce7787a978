"""``scalezero bench tiers`` for real, at its smallest (one repeat), on the default model:
every tier of every engine there is measured (or recorded as absent), and the summary
states the checks from those numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scalezero.cli import main
from scalezero.measure.tiers import TIERS, read_csv, write_csv
from scalezero.system.engine_build import native_server

pytestmark = pytest.mark.slow


def test_bench_tiers_at_its_smallest(real_model: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiers"
    assert main(["bench", "tiers", "--model", str(real_model), "--repeats", "1",
                 "--n-threads", "2", "--out-dir", str(out)]) == 0
    progress = capsys.readouterr().err
    rows = read_csv(out / "tiers.csv")
    native_there = native_server().path is not None
    engines = {"llama_cpp_python": True, "llama_server": native_there}
    for engine, there in engines.items():
        mine = {r["tier"]: r for r in rows if r["engine"] == engine}
        assert set(mine) == set(TIERS), (engine, mine.keys())
        if not there:
            assert all(r["status"] == "absent" and r["reason"] for r in mine.values())
            continue
        assert all(r["status"] == "ok" for r in mine.values())
        assert f"bench tiers: {engine} runtime_warm #1" in progress
        # The bench dropped the file's pages itself, on a private copy: a real disk-cold start.
        assert mine["disk_cold"]["start_tier"] == "disk_cold"
        assert mine["host_cached"]["start_tier"] == "host_cached"
        assert float(mine["loaded"]["rss_mib"]) > float(mine["runtime_warm"]["rss_mib"]) > 0
        assert float(mine["host_cached"]["rss_mib"]) == 0.0
        for tier in ("runtime_warm", "host_cached", "disk_cold"):
            row = mine[tier]
            assert 0 < float(row["wake_s"]) <= float(row["first_token_s"])
        # No power source on a CPU host without RAPL: empty, never invented.
        for row in mine.values():
            assert (row["idle_power_w"] == "") == (row["energy_source"] == "none")
    bandwidth = json.loads((out / "read_bandwidth.json").read_text())
    assert bandwidth["file_bytes"] == real_model.stat().st_size
    write_csv(out / "engines.csv", ["engine", "clients", "status"], [])
    assert main(["bench", "summary", "--dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    python = summary["runtime_warm_wake"]["llama_cpp_python"]
    measured = {r["tier"]: float(r["wake_s"]) for r in rows
                if r["engine"] == "llama_cpp_python"}
    assert python["share"] == pytest.approx(measured["runtime_warm"] / measured["host_cached"],
                                            rel=1e-5)
    assert summary["native_throughput"]["met"] is None
