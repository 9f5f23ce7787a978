"""The tier and engine benches' arithmetic on hand-made numbers: percentiles, throughput,
the goal checks, the CSVs, an absent engine, and the report section built from them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from scalezero.cli import build_parser
from scalezero.errors import UserError
from scalezero.measure.tiers import (
    ENGINE_COLUMNS,
    TIER_COLUMNS,
    EngineChoice,
    absent_rows,
    engine_row,
    percentile,
    read_csv,
    summarize,
    throughput_goal,
    write_csv,
    write_summary,
)
from scalezero.report.tiers import NOT_MEASURED, tiers_md

MIB = 1024 * 1024


def tier(engine: str, name: str, wake_s: float, start_tier: str = "", **extra: Any
         ) -> dict[str, Any]:
    row = dict.fromkeys(TIER_COLUMNS, "")
    row.update(engine=engine, tier=name, repeat="1", status="ok", wake_s=str(wake_s),
               start_tier=start_tier, rss_mib="100", energy_source="none")
    row.update({k: str(v) for k, v in extra.items()})
    return row


def engine(name: str, clients: int, tok_s: float, status: str = "ok") -> dict[str, Any]:
    row = dict.fromkeys(ENGINE_COLUMNS, "")
    row.update(engine=name, clients=str(clients), status=status, requests="8", path="direct",
               slots="1", ttft_p50_ms="10", ttft_p99_ms="20",
               throughput_tok_s=str(tok_s) if status == "ok" else "")
    return row


BANDWIDTH = {"file_bytes": 200 * MIB, "cold_read_mib_s": 100.0,
             "page_cache_read_mib_s": 1000.0, "cold_read_method": "fadvise_dontneed"}


def test_percentile_is_linear_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_engine_row_throughput_is_tokens_over_wall_time() -> None:
    row = engine_row("llama_server", 4, 4, [0.1, 0.2, 0.3, 0.4], tokens=120, wall_s=3.0,
                     max_tokens=30)
    assert row["throughput_tok_s"] == 40.0
    assert row["ttft_p50_ms"] == pytest.approx(250.0)
    assert row["requests"] == 4 and row["path"] == "direct" and row["slots"] == 4


def test_goal_checks_from_hand_made_numbers() -> None:
    rows = [
        tier("llama_cpp_python", "host_cached", 2.0, "host_cached"),
        tier("llama_cpp_python", "host_cached", 4.0, "host_cached"),
        tier("llama_cpp_python", "disk_cold", 3.8, "disk_cold"),
        tier("llama_cpp_python", "disk_cold", 5.8, "disk_cold"),
        # Asked to be disk-cold, measured host-cached: not counted for either.
        tier("llama_cpp_python", "disk_cold", 0.1, "host_cached"),
        tier("llama_cpp_python", "runtime_warm", 1.0),
        tier("llama_cpp_python", "runtime_warm", 2.0),
        tier("llama_server", "host_cached", 1.0, "host_cached"),
        tier("llama_server", "disk_cold", 3.0, "disk_cold"),
        tier("llama_server", "runtime_warm", 0.6),
    ]
    engines = [engine("llama_cpp_python", 1, 10.0), engine("llama_server", 1, 12.0),
               engine("llama_cpp_python", 8, 10.0), engine("llama_server", 8, 25.0)]
    summary = summarize(rows, engines, BANDWIDTH)
    # 200 MiB / 100 MiB/s - 200 MiB / 1000 MiB/s = 2 - 0.2 = 1.8 s.
    python = summary["disk_cold_prediction"]["llama_cpp_python"]
    assert python["predicted_difference_s"] == pytest.approx(1.8)
    assert python["measured_difference_s"] == pytest.approx(4.8 - 3.0)
    assert python["relative_error"] == pytest.approx(0.0, abs=1e-12) and python["met"] is True
    assert python["host_cached_range_s"] == pytest.approx(2.0)
    native = summary["disk_cold_prediction"]["llama_server"]
    assert native["measured_difference_s"] == pytest.approx(2.0)
    assert native["relative_error"] == pytest.approx(2.0 / 1.8 - 1)
    assert native["met"] is True  # 11 % off, within 20 %
    wake = summary["runtime_warm_wake"]
    assert wake["llama_cpp_python"]["share"] == pytest.approx(1.5 / 3.0)
    assert wake["llama_cpp_python"]["met"] is True  # exactly 50 %
    assert wake["llama_server"]["share"] == pytest.approx(0.6) and not wake["llama_server"]["met"]
    throughput = summary["native_throughput"]
    assert throughput["clients"] == 8 and throughput["ratio"] == pytest.approx(2.5)
    assert throughput["met"] is True


def test_a_prediction_off_by_more_than_a_fifth_is_not_met() -> None:
    rows = [tier("e", "host_cached", 1.0, "host_cached"), tier("e", "disk_cold", 3.2,
                                                                 "disk_cold"),
            tier("e", "runtime_warm", 0.2)]
    check = summarize(rows, [], BANDWIDTH)["disk_cold_prediction"]["e"]
    assert check["relative_error"] == pytest.approx(2.2 / 1.8 - 1) and check["met"] is False


def test_no_start_from_storage_leaves_the_prediction_unchecked() -> None:
    rows = [tier("e", "host_cached", 1.0, "host_cached"),
            tier("e", "disk_cold", 1.0, "host_cached"), tier("e", "runtime_warm", 0.2)]
    check = summarize(rows, [], BANDWIDTH)["disk_cold_prediction"]["e"]
    assert check["met"] is None and "storage" in check["reason"]


def test_an_absent_engine_is_recorded_and_leaves_its_checks_open() -> None:
    choice = EngineChoice("llama_server", None, "not built: switched off")
    rows = absent_rows(choice, TIER_COLUMNS, [{"tier": "host_cached", "repeat": None}])
    assert rows[0]["status"] == "absent" and rows[0]["reason"] == "not built: switched off"
    summary = summarize(rows, absent_rows(choice, ENGINE_COLUMNS, [{"clients": 8}]),
                        BANDWIDTH)
    assert summary["runtime_warm_wake"]["llama_server"] == {
        "met": None, "reason": "not built: switched off"}
    assert throughput_goal(absent_rows(choice, ENGINE_COLUMNS, [{"clients": 8}])) == {
        "met": None, "reason": "not built: switched off"}


def test_csv_and_summary_round_trip_and_the_report_section(tmp_path: Path) -> None:
    rows = [tier("llama_cpp_python", "host_cached", 2.0, "host_cached"),
            tier("llama_cpp_python", "disk_cold", 3.8, "disk_cold"),
            tier("llama_cpp_python", "runtime_warm", 0.5),
            tier("llama_cpp_python", "loaded", 0.0, rss_mib=199.5)]
    rows += absent_rows(EngineChoice("llama_server", None, "not built: switched off"),
                        TIER_COLUMNS, [{"tier": "loaded", "repeat": None}])
    engines = [engine("llama_cpp_python", 8, 10.0)]
    engines += absent_rows(EngineChoice("llama_server", None, "not built: switched off"),
                           ENGINE_COLUMNS, [{"clients": 8}])
    tiers_csv = write_csv(tmp_path / "tiers.csv", TIER_COLUMNS, rows)
    engines_csv = write_csv(tmp_path / "engines.csv", ENGINE_COLUMNS, engines)
    bandwidth = tmp_path / "read_bandwidth.json"
    bandwidth.write_text(json.dumps(BANDWIDTH))
    assert [r["tier"] for r in read_csv(tiers_csv)] == [r["tier"] for r in rows]
    out = write_summary(tiers_csv, engines_csv, bandwidth, tmp_path / "summary.json")
    summary = json.loads(out.read_text())
    assert summary["runtime_warm_wake"]["llama_cpp_python"]["share"] == pytest.approx(0.25)
    text = tiers_md({"tiers": tiers_csv, "engines": engines_csv, "summary": out})
    assert "| llama_cpp_python | loaded | 1 | 0 | n/a | 200 | n/a | n/a | none |" in text
    assert "| llama_cpp_python | runtime-warm | 1 | 0.5 |" in text
    assert "absent: not built: switched off" in text
    assert "0.5 s against 2 s for a host-cached start, 25 % of it (goal: at most 50 %): met" in text
    assert "1.8 s measured against 1.8 s predicted" in text
    assert "Native throughput: not checked (not built: switched off)" in text
    assert tiers_md(None) == NOT_MEASURED


def test_the_summary_without_the_engine_bench_leaves_its_check_open(tmp_path: Path) -> None:
    rows = [tier("llama_cpp_python", "host_cached", 2.0, "host_cached"),
            tier("llama_cpp_python", "runtime_warm", 0.5)]
    tiers_csv = write_csv(tmp_path / "tiers.csv", TIER_COLUMNS, rows)
    bandwidth = tmp_path / "read_bandwidth.json"
    bandwidth.write_text(json.dumps(BANDWIDTH))
    out = write_summary(tiers_csv, tmp_path / "engines.csv", bandwidth,
                        tmp_path / "summary.json")
    summary = json.loads(out.read_text())
    assert summary["native_throughput"]["met"] is None
    assert summary["runtime_warm_wake"]["llama_cpp_python"]["met"] is True
    with pytest.raises(UserError, match="run `scalezero bench tiers` first"):
        write_summary(tmp_path / "missing.csv", tmp_path / "engines.csv", bandwidth,
                      tmp_path / "again.json")


def test_the_bench_subcommands_parse() -> None:
    args = build_parser(only="bench").parse_args(
        ["bench", "engines", "--clients", "1", "4", "--requests-per-client", "2"])
    assert args.clients == [1, 4] and args.requests_per_client == 2
    args = build_parser(only="bench").parse_args(["bench", "tiers", "--repeats", "1"])
    assert args.repeats == 1 and args.engines == ["llama_cpp_python", "llama_server"]
