"""Projections: per-run energy (measured and estimated), the model and the sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from test_report_fixtures import COLD_START_S, MEM_MIB, POWER_W, SERVICE_S, make_results

from scalezero import projections as pj
from scalezero.energy import break_even_ttl_s
from scalezero.errors import UserError
from scalezero.report.config import (
    DEFAULT_CONSTANTS,
    REPORT_CONFIG_SCHEMA,
    report_settings,
)

DAY_S = 86400.0


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_results(tmp_path_factory.mktemp("gpu"), gpu=True)


@pytest.fixture(scope="module")
def cpu(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_results(tmp_path_factory.mktemp("cpu"), gpu=False)


def _write(results: dict, out: Path, config: dict | None = None) -> dict[str, Path]:
    return pj.write_projections(results["summary"]["summary"], results["summary"]["energy"],
                                results["run_dirs"], report_settings(config or {}),
                                pj.projection_paths(out, "demo"))


def _model(**overrides: float) -> dict:
    m = {"active_s_per_request": 0.5, "cold_start_s": 2.0, "cold_start_energy_j": 100.0,
         "keep_warm_ttl_s": 0.0, "always_on": False, "bare_idle_power_w": 20.0,
         "idle_loaded_power_w": 30.0, "active_power_w": 60.0}
    m.update(overrides)
    return m


# ------------------------------------------------------------------------- the arithmetic


def test_always_on_day() -> None:
    out = pj.project_strategy(_model(always_on=True, keep_warm_ttl_s=math.inf), 100.0, 24.0,
                              475.0, 1.0)
    busy = 100 * 24 * 0.5
    energy_j = busy * 60.0 + (DAY_S - busy) * 30.0
    assert out["cold_starts_per_day"] == 0 and out["cold_start_share"] == 0
    assert out["instance_h_per_day"] == 24.0 and out["cost_usd_per_day"] == 24.0
    assert out["energy_kwh_per_day"] == pytest.approx(energy_j / 3.6e6)
    assert out["energy_above_baseline_kwh_per_day"] == pytest.approx(
        (energy_j - DAY_S * 20.0) / 3.6e6)
    assert out["kg_co2e_per_year"] == pytest.approx(energy_j / 3.6e6 * 365 * 0.475)
    assert out["busy_share"] == pytest.approx(busy / DAY_S)
    assert out["cost_usd_per_month"] == pytest.approx(24.0 * 365 / 12)


def test_naive_and_keep_warm_day() -> None:
    rate = 10.0 / 3600.0
    naive = pj.project_strategy(_model(), 10.0, 24.0, 475.0, 1.0)
    assert naive["cold_start_share"] == pytest.approx(math.exp(-rate * 0.5))
    assert naive["idle_loaded_h_per_day"] == 0.0
    n_cold = 240 * math.exp(-rate * 0.5)
    busy, cold = 240 * 0.5, n_cold * 2.0
    energy_j = busy * 60 + n_cold * 100 + (DAY_S - busy - cold) * 20
    assert naive["energy_kwh_per_day"] == pytest.approx(energy_j / 3.6e6)
    assert naive["instance_h_per_day"] == pytest.approx((busy + cold) / 3600)

    warm = pj.project_strategy(_model(keep_warm_ttl_s=60.0), 10.0, 24.0, 475.0, 1.0)
    assert warm["cold_start_share"] == pytest.approx(math.exp(-rate * 60.5))
    assert warm["idle_loaded_h_per_day"] * 3600 == pytest.approx(
        DAY_S * (1 - math.exp(-rate * 60.0)))
    # At low traffic scale-to-zero holds the least instance time, always-on the most.
    always = pj.project_strategy(_model(always_on=True, keep_warm_ttl_s=math.inf), 10.0,
                                 24.0, 475.0, 1.0)
    assert naive["cost_usd_per_day"] < warm["cost_usd_per_day"] < always["cost_usd_per_day"]


def test_unknown_cold_start_propagates_nan() -> None:
    out = pj.project_strategy(_model(cold_start_s=math.nan, cold_start_energy_j=math.nan),
                              10.0, 24.0, 475.0, 1.0)
    assert math.isnan(out["energy_kwh_per_day"]) and math.isnan(out["instance_h_per_day"])
    # Always-on needs no cold start at all.
    always = pj.project_strategy(_model(always_on=True, keep_warm_ttl_s=math.inf,
                                        cold_start_s=math.nan,
                                        cold_start_energy_j=math.nan), 10.0, 24.0, 475.0, 1.0)
    assert math.isfinite(always["energy_kwh_per_day"])


def test_over_capacity_is_flagged() -> None:
    out = pj.project_strategy(_model(), 10_000.0, 24.0, 475.0, 1.0)
    assert out["load"] == pytest.approx(10_000 * 0.5 / 3600)
    assert out["load"] > 1


# ----------------------------------------------------------------------- measured runs


def test_measured_runs_and_model(gpu: dict, tmp_path: Path) -> None:
    paths = _write(gpu, tmp_path)
    runs = pd.read_csv(paths["runs"])
    assert list(runs.columns) == list(pj.RUN_COLUMNS)
    assert set(runs["basis"]) == {"measured"} and set(runs["method"]) == {"nvml_counter"}
    summary = pd.read_csv(gpu["summary"]["summary"])
    assert runs["energy_total_j"].tolist() == pytest.approx(
        summary["energy_total_j"].tolist())
    phases = pd.read_csv(paths["phases"])
    assert list(phases.columns) == list(pj.PHASE_COLUMNS) and len(phases) == 4 * 6

    model = pd.read_csv(paths["model"]).set_index("strategy")
    assert model.loc["always_on", "always_on"] and math.isinf(
        model.loc["always_on", "keep_warm_ttl_s"])
    assert model.loc["naive", "keep_warm_ttl_s"] == 0
    assert model.loc["keep_warm", "keep_warm_ttl_s"] == 8
    row = model.loc["keep_warm"]
    # Sampling at 5 Hz blurs phase edges a little; the state powers stay close.
    assert row["bare_idle_power_w"] == pytest.approx(POWER_W["bare"])
    assert row["idle_loaded_power_w"] == pytest.approx(POWER_W["idle"], rel=0.05)
    assert row["active_power_w"] == pytest.approx(POWER_W["active"], rel=0.05)
    assert row["cold_start_s"] == pytest.approx(COLD_START_S)
    assert row["cold_start_energy_j"] == pytest.approx(POWER_W["starting"] * COLD_START_S,
                                                       rel=0.05)
    assert row["active_s_per_request"] == pytest.approx(SERVICE_S, rel=0.05)
    assert row["break_even_ttl_s"] == pytest.approx(break_even_ttl_s(
        row["cold_start_above_baseline_j"], row["idle_loaded_power_w"],
        row["bare_idle_power_w"]))

    sweep = pd.read_csv(paths["sweep"])
    assert list(sweep.columns) == list(pj.SWEEP_COLUMNS)
    assert len(sweep) == 3 * 5
    constants = json.loads(paths["constants"].read_text())
    assert constants["constants"]["carbon_intensity_g_per_kwh"]["value"] == 475


def test_carbon_constant_changes_only_emissions(gpu: dict, tmp_path: Path) -> None:
    base = pd.read_csv(_write(gpu, tmp_path / "a")["sweep"])
    doubled = {"constants": {"carbon_intensity_g_per_kwh": {
        "value": 950, "unit": "gCO2e/kWh", "source": "test", "date": "2026"}}}
    other = pd.read_csv(_write(gpu, tmp_path / "b", doubled)["sweep"])
    assert other["kg_co2e_per_year"].tolist() == pytest.approx(
        (2 * base["kg_co2e_per_year"]).tolist())
    assert other["energy_kwh_per_year"].tolist() == base["energy_kwh_per_year"].tolist()


# ---------------------------------------------------------------------- estimated runs


def test_estimated_runs(cpu: dict, tmp_path: Path) -> None:
    paths = _write(cpu, tmp_path)
    runs = pd.read_csv(paths["runs"])
    assert set(runs["basis"]) == {"estimated"} and set(runs["method"]) == {"host_model"}
    c = DEFAULT_CONSTANTS
    floor_w = 4 * c["cpu_min_w_per_vcpu"]["value"]
    per_core_w = c["cpu_max_w_per_vcpu"]["value"] - c["cpu_min_w_per_vcpu"]["value"]
    assert runs["bare_idle_power_w"].tolist() == pytest.approx([floor_w] * len(runs))
    model = pd.read_csv(paths["model"]).iloc[0]
    # Active: one busy core plus the instance's 180 MiB of resident memory.
    ram_w = c["ram_w_per_gib"]["value"] * 180.0 / 1024.0
    assert model["active_power_w"] == pytest.approx(floor_w + per_core_w + ram_w, rel=0.1)
    assert model["idle_loaded_power_w"] == pytest.approx(floor_w + 0.01 * per_core_w + ram_w,
                                                         rel=0.05)
    assert math.isfinite(model["break_even_ttl_s"]) and model["break_even_ttl_s"] > 0
    assert MEM_MIB > 180.0  # GPU fixtures hold more memory than host ones


def test_estimate_needs_a_run_folder(cpu: dict, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no energy counter"):
        pj.write_projections(cpu["summary"]["summary"], cpu["summary"]["energy"], [],
                             report_settings({}), pj.projection_paths(tmp_path, "demo"))


# ------------------------------------------------------------------------------ config


def test_settings_defaults_and_overrides() -> None:
    s = report_settings({})
    assert s.traffic_rph == (1, 10, 100, 1000, 10000) and s.hours_per_day == 24
    assert s.value("carbon_intensity_g_per_kwh") == 475
    s = report_settings({"projections": {"traffic_rph": [5], "hours_per_day": 8},
                         "report": {"title": "T", "renderer": "pandoc"},
                         "constants": {"gpu_hour_price_usd": {
                             "value": 2.5, "unit": "USD/h", "source": "x", "date": "2026"}}})
    assert s.traffic_rph == (5.0,) and s.hours_per_day == 8 and s.title == "T"
    assert s.value("gpu_hour_price_usd") == 2.5 and s.constants["gpu_hour_price_usd"].source == "x"
    assert s.value("carbon_intensity_g_per_kwh") == 475  # untouched defaults stay


@pytest.mark.parametrize("bad", [
    {"constants": {"gpu_hour_price_usd": {"value": 1.0, "unit": "USD/h"}}},
    {"constants": {"gpu_hour_price_usd": {"value": "cheap", "unit": "USD/h", "source": "x",
                                          "date": "2026"}}},
    {"projections": {"traffic_rph": []}},
    {"projections": {"hours_per_day": 25}},
    {"report": {"renderer": "word"}},
    {"constants": {"cpu_max_w_per_vcpu": {"value": 0.1, "unit": "W", "source": "x",
                                          "date": "2026"}}},
])
def test_settings_rejects(bad: dict) -> None:
    with pytest.raises(UserError):
        report_settings(bad)


def test_schema_fragment_validates_defaults() -> None:
    import jsonschema

    defaults = {k: v["default"] for k, v in REPORT_CONFIG_SCHEMA["properties"].items()
                if "default" in v}
    jsonschema.validate(defaults, REPORT_CONFIG_SCHEMA)
    assert set(REPORT_CONFIG_SCHEMA["properties"]) == {"constants", "projections", "report"}
