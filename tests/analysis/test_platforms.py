"""The platform comparison: one row per platform from its workload summary."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from scalezero.analysis.platforms import PLATFORM_COLUMNS, compare_platforms
from scalezero.report.platforms import platforms_md


def _summary(path: Path, **columns: list) -> Path:
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_one_row_per_platform_with_means_and_ratios(tmp_path: Path) -> None:
    a = _summary(tmp_path / "a.csv", strategy=["naive", "keep_warm"], ok=[10, 30],
                 cold_starts=[4, 1], cold_start_mean_s=[2.0, 4.0],
                 spawn_to_runtime_ready_mean_s=[0.5, 0.7],
                 runtime_ready_to_model_loaded_mean_s=[1.0, 3.0],
                 model_loaded_to_ready_mean_s=[0.5, 0.3],
                 bare_idle_power_w=[50.0, 60.0], idle_loaded_power_w=[70.0, 80.0],
                 phase_active_energy_j=[100.0, 300.0], phase_active_s=[1.0, 1.0],
                 energy_total_j=[200.0, 600.0], break_even_ttl_s=[5.0, None])
    b = _summary(tmp_path / "b.csv", strategy=["naive"], ok=[10], cold_starts=[3],
                 cold_start_mean_s=[1.0])
    table = compare_platforms({"h100": a, "cpu": b},
                              {"h100": {"device": "cuda", "gpu_model": "h100",
                                        "partition": "gpu"}, "cpu": {"device": "cpu"}})
    assert list(table.columns) == list(PLATFORM_COLUMNS)
    assert list(table["platform"]) == ["h100", "cpu"]
    h100, cpu = table.iloc[0], table.iloc[1]
    assert (h100["runs"], h100["cold_starts"]) == (2, 5)
    assert h100["cold_start_mean_s"] == pytest.approx(3.0)
    assert h100["bare_idle_power_w"] == pytest.approx(55.0)
    assert h100["active_power_w"] == pytest.approx(200.0)  # 400 J over 2 s busy
    assert h100["energy_per_request_j"] == pytest.approx(20.0)  # 800 J / 40 requests
    assert h100["break_even_ttl_s"] == pytest.approx(5.0)
    assert h100["gpu_model"] == "h100" and h100["partition"] == "gpu"
    # A platform without energy counters or idle power: empty, not zero.
    assert math.isnan(cpu["energy_per_request_j"]) and math.isnan(cpu["active_power_w"])
    assert cpu["cold_start_mean_s"] == pytest.approx(1.0)

    csv = tmp_path / "platforms.csv"
    table.to_csv(csv, index=False)
    text = platforms_md(csv)
    assert text.startswith("## Platforms")
    assert "| h100 | cuda, h100, gpu |" in text and "| cpu | cpu |" in text
    assert platforms_md(None) == ""


def test_platform_columns_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text(encoding="utf-8")
    assert [c for c in PLATFORM_COLUMNS if f"`{c}`" not in doc] == []
