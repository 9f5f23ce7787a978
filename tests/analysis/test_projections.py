"""Projections: per-run energy (measured and estimated), the model and the sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from simulated_runs import COLD_START_S, POWER_W, SERVICE_S, TTL_S, make_results

from scalezero.analysis import energy as en
from scalezero.analysis import projections as pj
from scalezero.analysis.constants import projection_settings
from scalezero.errors import UserError
from scalezero.report.config import (
    REPORT_CONFIG_SCHEMA,
    report_settings,
)
from scalezero.system.layout import Layout

DAY_S = 86400.0


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_results(tmp_path_factory.mktemp("gpu"), gpu=True)


@pytest.fixture(scope="module")
def cpu(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_results(tmp_path_factory.mktemp("cpu"), gpu=False)


def _write(results: dict, out: Path, config: dict | None = None) -> dict[str, Path]:
    return pj.write_projections(results["summary"]["summary"], results["summary"]["energy"],
                                results["run_dirs"], projection_settings(config or {}),
                                Layout.projection_files_in(out, "demo"))


def _model(**overrides: float) -> dict:
    m = {"active_s_per_request": 0.5, "cold_start_s": 2.0, "cold_start_energy_j": 100.0,
         "idle_ttl_s": 0.0, "always_on": False, "bare_idle_power_w": 20.0,
         "idle_loaded_power_w": 30.0, "active_power_w": 60.0}
    m.update(overrides)
    return m


# ------------------------------------------------------------------------- the arithmetic


def test_always_on_day() -> None:
    out = pj.project_strategy(_model(always_on=True, idle_ttl_s=math.inf), 100.0, 24.0,
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

    warm = pj.project_strategy(_model(idle_ttl_s=60.0), 10.0, 24.0, 475.0, 1.0)
    assert warm["cold_start_share"] == pytest.approx(math.exp(-rate * 60.5))
    assert warm["idle_loaded_h_per_day"] * 3600 == pytest.approx(
        DAY_S * (1 - math.exp(-rate * 60.0)))
    # At low traffic scale-to-zero holds the least instance time, always-on the most.
    always = pj.project_strategy(_model(always_on=True, idle_ttl_s=math.inf), 10.0,
                                 24.0, 475.0, 1.0)
    assert naive["cost_usd_per_day"] < warm["cost_usd_per_day"] < always["cost_usd_per_day"]


def test_tiered_day_accounts_runtime_warm_time_and_wakes() -> None:
    # Loaded 60 s after each request, then runtime-warm 600 s at 24 W; a wake takes 1.5 s
    # and 60 J. 240 requests a day, 0.5 s each.
    rate = 10.0 / 3600.0
    tiered = _model(idle_ttl_s=60.0, runtime_warm_ttl_s=600.0, runtime_warm_power_w=24.0,
                    wake_s=1.5, wake_energy_j=60.0)
    out = pj.project_strategy(tiered, 10.0, 24.0, 475.0, 1.0)
    # An arrival less than 60.5 s after the previous finds it loaded, less than 660.5 s
    # runtime-warm (a wake), else stopped (a cold start).
    n_cold = 240 * math.exp(-rate * 660.5)
    n_wake = 240 * (math.exp(-rate * 60.5) - math.exp(-rate * 660.5))
    assert out["cold_start_share"] == pytest.approx(math.exp(-rate * 660.5))
    assert out["cold_starts_per_day"] == pytest.approx(n_cold)
    assert out["runtime_warm_wakes_per_day"] == pytest.approx(n_wake)
    busy, cold, wake = 240 * 0.5, n_cold * 2.0, n_wake * 1.5
    idle = DAY_S * (1 - math.exp(-rate * 60.0))
    warm = DAY_S * (math.exp(-rate * 60.0) - math.exp(-rate * 660.0))
    empty = DAY_S - busy - cold - wake - idle - warm
    assert out["cold_start_h_per_day"] * 3600 == pytest.approx(cold + wake)
    assert out["idle_loaded_h_per_day"] * 3600 == pytest.approx(idle)
    assert out["runtime_warm_h_per_day"] * 3600 == pytest.approx(warm)
    assert out["empty_h_per_day"] * 3600 == pytest.approx(empty)
    energy_j = busy * 60 + n_cold * 100 + n_wake * 60 + idle * 30 + warm * 24 + empty * 20
    assert out["energy_kwh_per_day"] == pytest.approx(energy_j / 3.6e6)
    assert out["instance_h_per_day"] * 3600 == pytest.approx(busy + cold + wake + idle + warm)
    # Without a runtime-warm tier it is keep-warm to the last bit, whatever the other
    # runtime-warm inputs say; runtime-warm forever never cold-starts after the first.
    keep_warm = pj.project_strategy(_model(idle_ttl_s=60.0), 10.0, 24.0, 475.0, 1.0)
    assert pj.project_strategy({**tiered, "runtime_warm_ttl_s": 0.0}, 10.0, 24.0, 475.0,
                               1.0) == keep_warm
    assert pj.project_strategy({**tiered, "runtime_warm_power_w": math.nan,
                                "runtime_warm_ttl_s": 0.0}, 10.0, 24.0, 475.0,
                               1.0) == keep_warm
    assert keep_warm["runtime_warm_wakes_per_day"] == 0.0
    forever = pj.project_strategy({**tiered, "runtime_warm_ttl_s": math.inf}, 10.0, 24.0,
                                  475.0, 1.0)
    assert forever["cold_starts_per_day"] == 0.0
    assert forever["empty_h_per_day"] == 0.0
    assert forever["instance_h_per_day"] == pytest.approx(24.0)


def _model_inputs(warm_phase_s: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One keep_warm and one tiered run, measured; the tiered one runtime-warm for
    `warm_phase_s` at 24 W; 26 W in the context-only baseline."""
    summary = pd.DataFrame({
        "workload": "w", "strategy": ["keep_warm", "tiered"], "rep": [1, 1],
        "policy": ["keep_warm", "tiered"], "policy_always_on": [False, False],
        "policy_idle_ttl_s": [60.0, 60.0], "policy_runtime_warm_ttl_s": [0.0, 600.0],
        "energy_source": "nvml_counter", "context_idle_power_w": [26.0, 26.0],
        "spawn_to_runtime_ready_mean_s": [0.5, 0.5]})
    runs = pd.DataFrame({
        "strategy": ["keep_warm", "tiered"], "rep": [1, 1], "basis": pj.BASIS_MEASURED,
        "method": "nvml_counter", "bare_idle_power_w": [20.0, 20.0],
        "cold_start_mean_s": [2.0, 2.0], "cold_starts": [1, 1],
        "cold_start_energy_mean_j": [100.0, 100.0],
        "cold_start_above_baseline_mean_j": [60.0, 60.0], "ok": [2, 2]})
    phases = pd.DataFrame({
        "strategy": ["keep_warm"] * 2 + ["tiered"] * 3, "rep": 1,
        "phase": ["idle_loaded", "active", "idle_loaded", "active", "runtime_warm"],
        "duration_s": [10.0, 1.0, 10.0, 1.0, warm_phase_s],
        "energy_j": [300.0, 60.0, 300.0, 60.0, 24.0 * warm_phase_s]})
    return summary, runs, phases


def test_model_takes_the_runtime_warm_tier_from_the_summary_and_phases() -> None:
    frame = pj.projection_model(*_model_inputs(100.0))
    assert list(frame.columns) == list(pj.MODEL_COLUMNS)
    model = frame.set_index("strategy")
    assert model.at["keep_warm", "runtime_warm_ttl_s"] == 0.0
    assert model.at["tiered", "runtime_warm_ttl_s"] == 600.0
    assert model.at["tiered", "runtime_warm_power_w"] == pytest.approx(24.0)
    # A wake: the cold start less its runtime phase, at the cold start's 50 W.
    assert model.at["tiered", "wake_s"] == pytest.approx(1.5)
    assert model.at["tiered", "wake_energy_j"] == pytest.approx(75.0)
    # No measured runtime-warm time: the context-only baseline's power.
    fallback = pj.projection_model(*_model_inputs(0.0)).set_index("strategy")
    assert fallback.at["tiered", "runtime_warm_power_w"] == pytest.approx(26.0)


def test_unknown_cold_start_propagates_nan() -> None:
    out = pj.project_strategy(_model(cold_start_s=math.nan, cold_start_energy_j=math.nan),
                              10.0, 24.0, 475.0, 1.0)
    assert math.isnan(out["energy_kwh_per_day"]) and math.isnan(out["instance_h_per_day"])
    # Always-on needs no cold start at all.
    always = pj.project_strategy(_model(always_on=True, idle_ttl_s=math.inf,
                                        cold_start_s=math.nan,
                                        cold_start_energy_j=math.nan), 10.0, 24.0, 475.0, 1.0)
    assert math.isfinite(always["energy_kwh_per_day"])


def test_over_capacity_is_flagged() -> None:
    out = pj.project_strategy(_model(), 10_000.0, 24.0, 475.0, 1.0)
    assert out["load"] == pytest.approx(10_000 * 0.5 / 3600)
    assert out["load"] > 1
    # Busy all day (240,000 requests x 0.5 s is more than a day): no time is left to
    # start, idle or be empty; the day is all active power.
    assert out["active_h_per_day"] == 24.0 and out["cold_start_h_per_day"] == 0.0
    assert out["idle_loaded_h_per_day"] == 0.0 and out["empty_h_per_day"] == 0.0
    assert out["instance_h_per_day"] == 24.0
    # Cold starts are still counted (and their energy paid), though they take no time.
    n_cold = 240_000 * math.exp(-10_000 / 3600 * 0.5)
    assert out["cold_starts_per_day"] == pytest.approx(n_cold)
    assert out["energy_kwh_per_day"] == pytest.approx((DAY_S * 60 + n_cold * 100) / 3.6e6)
    # Nearly busy: the cold starts fill what is left of the day, no more.
    near = pj.project_strategy(_model(), 7000.0, 24.0, 475.0, 1.0)
    busy = 7000 * 24 * 0.5
    assert near["cold_start_h_per_day"] * 3600 == pytest.approx(DAY_S - busy)
    assert near["empty_h_per_day"] == 0.0
    always = pj.project_strategy(_model(always_on=True, idle_ttl_s=math.inf), 10_000.0,
                                 24.0, 475.0, 1.0)
    assert always["cold_start_h_per_day"] == 0.0 and always["active_h_per_day"] == 24.0


def test_project_sweeps_every_level_on_its_own() -> None:
    """project(): three strategies at 1, 100 and 1000 requests/h, each level worked out
    by hand (S = 0.5 s per request, C = 2 s and 100 J per cold start, 20/30/60 W bare,
    idle-loaded and active, keep-warm TTL 60 s, 1 USD per instance hour)."""
    model = pd.DataFrame([
        {"workload": "w", "strategy": s, "basis": "measured", **_model(**kw)}
        for s, kw in (("always_on", {"always_on": True, "idle_ttl_s": math.inf}),
                      ("naive", {}), ("keep_warm", {"idle_ttl_s": 60.0}))])
    settings = projection_settings({"projections": {"traffic_rph": [1000, 1, 100]},
                                "constants": {"gpu_hour_price_usd": {
                                    "value": 1.0, "unit": "USD/h", "source": "t",
                                    "date": "2026"}}})
    sweep = pj.project(model, settings).set_index(["strategy", "traffic_rph"])
    assert len(sweep) == 9

    def check(strategy: str, rph: float, share: float, cold_s: float, idle_s: float) -> None:
        row = sweep.loc[(strategy, rph)]
        n = 24 * rph
        busy = 0.5 * n
        empty = DAY_S - busy - cold_s - idle_s
        energy = busy * 60 + n * share * 100 + idle_s * 30 + empty * 20
        held_h = 24.0 if strategy == "always_on" else (busy + cold_s + idle_s) / 3600
        assert row["requests_per_day"] == pytest.approx(n)
        assert row["cold_start_share"] == pytest.approx(share, rel=1e-9, abs=1e-15)
        assert row["cold_starts_per_day"] == pytest.approx(n * share, rel=1e-9, abs=1e-12)
        assert row["idle_loaded_h_per_day"] * 3600 == pytest.approx(idle_s, rel=1e-9)
        assert row["empty_h_per_day"] * 3600 == pytest.approx(empty, rel=1e-9, abs=1e-6)
        assert row["instance_h_per_day"] == pytest.approx(held_h, rel=1e-9)
        assert row["cost_usd_per_day"] == pytest.approx(held_h, rel=1e-9)
        assert row["energy_kwh_per_day"] == pytest.approx(energy / 3.6e6, rel=1e-9)
        assert row["load"] == pytest.approx(busy / DAY_S)
        assert row["active_h_per_day"] * 3600 == pytest.approx(busy, rel=1e-9)
        assert row["cold_start_h_per_day"] * 3600 == pytest.approx(cold_s, rel=1e-9,
                                                                    abs=1e-12)
        above_kwh = (energy - DAY_S * 20) / 3.6e6  # above 20 W bare idle all day
        assert row["energy_above_baseline_kwh_per_day"] == pytest.approx(above_kwh, rel=1e-9)
        assert row["energy_above_baseline_kwh_per_year"] == pytest.approx(365 * above_kwh,
                                                                          rel=1e-9)
        assert row["kg_co2e_above_baseline_per_year"] == pytest.approx(
            365 * above_kwh * 475 / 1000, rel=1e-9)
        assert row["energy_per_request_wh"] == pytest.approx(energy / 3600 / n, rel=1e-9)
        assert (row["workload"], row["basis"]) == ("w", "measured")

    # 1 request/h: n = 24. Naive is cold unless the previous arrival came < 0.5 s before.
    check("always_on", 1, 0.0, 0.0, DAY_S - 12.0)
    check("naive", 1, math.exp(-0.5 / 3600), 24 * math.exp(-0.5 / 3600) * 2.0, 0.0)
    check("keep_warm", 1, math.exp(-60.5 / 3600),
          24 * math.exp(-60.5 / 3600) * 2.0, DAY_S * (1 - math.exp(-60 / 3600)))
    # 100 requests/h: n = 2400, busy 1200 s.
    check("always_on", 100, 0.0, 0.0, DAY_S - 1200.0)
    check("naive", 100, math.exp(-50 / 3600), 2400 * math.exp(-50 / 3600) * 2.0, 0.0)
    check("keep_warm", 100, math.exp(-6050 / 3600),
          2400 * math.exp(-6050 / 3600) * 2.0, DAY_S * (1 - math.exp(-6000 / 3600)))
    # 1000 requests/h: n = 24000, busy 12000 s. Keep-warm would idle almost all day
    # (1 - exp(-16.7)), more than busy time and cold starts leave: it idles the rest.
    cold_kw = 24000 * math.exp(-60500 / 3600) * 2.0
    check("always_on", 1000, 0.0, 0.0, DAY_S - 12000.0)
    check("naive", 1000, math.exp(-500 / 3600), 24000 * math.exp(-500 / 3600) * 2.0, 0.0)
    check("keep_warm", 1000, math.exp(-60500 / 3600), cold_kw, DAY_S - 12000.0 - cold_kw)
    assert DAY_S * (1 - math.exp(-60000 / 3600)) > DAY_S - 12000.0 - cold_kw


# ----------------------------------------------------------------------- measured runs


def test_measured_runs_and_model(gpu: dict, tmp_path: Path) -> None:
    paths = _write(gpu, tmp_path)
    runs = pd.read_csv(paths["runs"])
    assert list(runs.columns) == list(pj.RUN_COLUMNS)
    assert set(runs["basis"]) == {"measured"} and set(runs["method"]) == {"nvml_counter"}
    # keep_warm, repeat 1, by hand: bursts at 0.1, 25.1 and 50.1 s of three requests
    # 1.5 s apart. Each burst: a 1.5 s start, three 0.6 s answers, then up until
    # TTL_S after the last answer (3.6 s + 8 s after the burst began): 11.6 s alive, of
    # which 11.6 - 1.5 - 1.8 = 8.3 s idle. The replay ends 1 s after the last answer
    # (54.7 s), so the third burst is cut to 4.6 s (1.3 s idle); bare idle elsewhere.
    w = POWER_W
    burst_j = 1.5 * w["starting"] + 1.8 * w["active"] + (11.6 - 3.3) * w["idle"]
    last_j = 1.5 * w["starting"] + 1.8 * w["active"] + (4.6 - 3.3) * w["idle"]
    bare_s = 54.7 - 2 * 11.6 - 4.6
    assert pytest.approx(11.6) == 3.6 + TTL_S
    expected_j = 2 * burst_j + last_j + bare_s * w["bare"]
    assert expected_j == pytest.approx(1601.5)
    kw1 = runs[(runs["strategy"] == "keep_warm") & (runs["rep"] == 1)].iloc[0]
    assert kw1["energy_total_j"] == pytest.approx(expected_j, rel=1e-9)
    assert kw1["energy_above_baseline_j"] == pytest.approx(expected_j - 54.7 * w["bare"],
                                                           rel=1e-9)
    assert kw1["energy_per_request_j"] == pytest.approx(expected_j / 9, rel=1e-9)
    phases = pd.read_csv(paths["phases"])
    # One row per run and phase: 6 runs.
    assert list(phases.columns) == list(pj.PHASE_COLUMNS) and len(phases) == len(en.PHASES) * 6

    model = pd.read_csv(paths["model"]).set_index("strategy")
    assert model.loc["always_on", "always_on"] and math.isinf(
        model.loc["always_on", "idle_ttl_s"])
    assert model.loc["naive", "idle_ttl_s"] == 0
    assert model.loc["keep_warm", "idle_ttl_s"] == 8
    row = model.loc["keep_warm"]
    # Sampling at 5 Hz blurs phase edges a little; the state powers stay close.
    assert row["bare_idle_power_w"] == pytest.approx(POWER_W["bare"])
    assert row["idle_loaded_power_w"] == pytest.approx(POWER_W["idle"], rel=0.05)
    assert row["active_power_w"] == pytest.approx(POWER_W["active"], rel=0.05)
    assert row["cold_start_s"] == pytest.approx(COLD_START_S)
    assert row["cold_start_energy_j"] == pytest.approx(POWER_W["starting"] * COLD_START_S,
                                                       rel=0.05)
    assert row["active_s_per_request"] == pytest.approx(SERVICE_S, rel=0.05)
    # Break-even TTL by hand: a start costs (45 - 20) W x 1.5 s above bare idle; idling
    # loaded costs 30 - 20 W: 3.75 s.
    above_j = (POWER_W["starting"] - POWER_W["bare"]) * COLD_START_S
    assert row["cold_start_above_baseline_j"] == pytest.approx(above_j, rel=0.05)
    assert row["break_even_ttl_s"] == pytest.approx(
        above_j / (POWER_W["idle"] - POWER_W["bare"]), rel=0.05)
    assert above_j / (POWER_W["idle"] - POWER_W["bare"]) == pytest.approx(3.75)

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


def _constant(name: str, value: float, unit: str) -> dict:
    return {name: {"value": value, "unit": unit, "source": "test", "date": "2026"}}


# Host-model constants chosen so that each term is large and distinct: 2 W per vCPU at
# idle (not 1, so that a product and a quotient differ), 10 W more per busy vCPU, and
# 64 W per GiB of resident memory.
HOST_MODEL = {"constants": {**_constant("cpu_min_w_per_vcpu", 2.0, "W/vCPU"),
                            **_constant("cpu_max_w_per_vcpu", 12.0, "W/vCPU"),
                            **_constant("ram_w_per_gib", 64.0, "W/GiB")}}


def test_estimated_runs(cpu: dict, tmp_path: Path) -> None:
    paths = _write(cpu, tmp_path, HOST_MODEL)
    runs = pd.read_csv(paths["runs"])
    assert set(runs["basis"]) == {"estimated"} and set(runs["method"]) == {"host_model"}
    floor_w = 4 * 2.0  # the fixture host has 4 vCPUs
    per_core_w = 12.0 - 2.0
    ram_w = 64.0 * 180.0 / 1024.0  # the instance's 180 MiB: 11.25 W
    assert runs["bare_idle_power_w"].tolist() == pytest.approx([floor_w] * len(runs))
    model = pd.read_csv(paths["model"]).iloc[0]
    # The fixture's instance uses 100 % of a core while active and 1 % while idle. The
    # 5 Hz samples blur phase edges (the estimate interpolates between samples), most
    # for the 0.6 s active phases: allow 5 % (1.5 W) there and 2 % idle. Each term is
    # larger than that: floor 8 W, a core 10 W, memory 11.25 W.
    assert model["active_power_w"] == pytest.approx(floor_w + per_core_w + ram_w, rel=0.05)
    assert model["idle_loaded_power_w"] == pytest.approx(floor_w + 0.01 * per_core_w + ram_w,
                                                         rel=0.02)
    # Above bare idle, a loaded idle instance costs its memory and 1 % of a core.
    assert model["idle_loaded_power_w"] - model["bare_idle_power_w"] == pytest.approx(
        ram_w + 0.1, rel=0.02)
    assert math.isfinite(model["break_even_ttl_s"]) and model["break_even_ttl_s"] > 0


def _telemetry(cpu_pct: list, mem_mib: list, n: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"t_s": [float(i) for i in range(len(cpu_pct))],
                         "power_w": float("nan"), "instance_cpu_pct": cpu_pct,
                         "instance_mem_mib": mem_mib, "n_instances": n})


def test_host_power_model_term_by_term() -> None:
    """Floor per vCPU + (max - min) per busy vCPU + memory power, each term alone."""
    settings = projection_settings(HOST_MODEL)
    meta = {"env": {"cpu_count": 4}}
    telemetry = _telemetry(cpu_pct=[0.0, 50.0, 0.0, 250.0, 100.0],
                           mem_mib=[0.0, 0.0, 2048.0, 0.0, 512.0], n=[0, 1, 1, 1, 1])
    watts, method = pj.estimated_power_w(telemetry, meta, settings)
    assert method == "host_model"
    assert watts.tolist() == pytest.approx([
        8.0,                       # floor only: 4 vCPUs x 2 W
        8.0 + 0.5 * 10.0,          # + half a busy core
        8.0 + 2.0 * 64.0,          # + 2 GiB of memory
        8.0 + 2.5 * 10.0,          # + two and a half busy cores
        8.0 + 10.0 + 0.5 * 64.0,   # + one core and half a GiB
    ], abs=1e-9)


def test_host_power_model_gaps() -> None:
    settings = projection_settings(HOST_MODEL)
    meta = {"env": {"cpu_count": 3}}
    telemetry = _telemetry(cpu_pct=[float("nan"), 20.0, "n/a", 40.0],
                           mem_mib=[float("nan"), 1024.0, float("nan"), 3072.0],
                           n=[0, 1, 1, 1])
    watts, _ = pj.estimated_power_w(telemetry, meta, settings)
    # No instance (n = 0): nothing but the floor; a gap with an instance (or a value
    # that is not a number) is bridged linearly between its neighbours (30 %, 2 GiB).
    assert watts.tolist() == pytest.approx([
        6.0, 6.0 + 2.0 + 64.0, 6.0 + 3.0 + 128.0, 6.0 + 4.0 + 192.0], abs=1e-9)
    # Leading and trailing gaps with an instance take the nearest sample's value.
    edges = _telemetry(cpu_pct=[float("nan"), 50.0, float("nan")],
                       mem_mib=[float("nan"), 1024.0, float("nan")], n=[1, 1, 1])
    watts, _ = pj.estimated_power_w(edges, meta, settings)
    assert watts.tolist() == pytest.approx([6.0 + 5.0 + 64.0] * 3, abs=1e-9)
    # An instance that reported nothing at all adds nothing (it is not guessed).
    silent = _telemetry(cpu_pct=[float("nan")] * 2, mem_mib=[float("nan")] * 2, n=[1, 1])
    watts, _ = pj.estimated_power_w(silent, meta, settings)
    assert watts.tolist() == pytest.approx([6.0, 6.0], abs=1e-9)
    # Without the columns at all, the same.
    bare = pd.DataFrame({"t_s": [0.0, 1.0]})
    watts, method = pj.estimated_power_w(bare, meta, settings)
    assert method == "host_model" and watts.tolist() == pytest.approx([6.0, 6.0])


@pytest.mark.parametrize(("meta", "vcpus"), [
    ({"env": {"cpu_count": 5}, "telemetry": {"device_info": {"host": {"logical_cpus": 6}}}},
     5),
    ({"env": {"cpu_count": 1}, "telemetry": {"device_info": {"host": {"logical_cpus": 6}}}},
     1),
    # run.json's env first; the telemetry's host facts when env has none or nonsense.
    ({"telemetry": {"device_info": {"host": {"logical_cpus": 6}}}}, 6),
    ({"env": {"cpu_count": 0}, "telemetry": {"device_info": {"host": {"logical_cpus": 6}}}},
     6),
    ({"env": {"cpu_count": -2}, "telemetry": {"device_info": {"host": {"logical_cpus": 6}}}},
     6),
    ({"env": {"cpu_count": "many"}}, 1),
    ({}, 1),  # nothing said about the host: one vCPU
])
def test_host_power_model_vcpus(meta: dict, vcpus: int) -> None:
    telemetry = _telemetry(cpu_pct=[0.0, 0.0], mem_mib=[0.0, 0.0], n=[0, 0])
    watts, _ = pj.estimated_power_w(telemetry, meta, projection_settings(HOST_MODEL))
    assert watts.tolist() == pytest.approx([2.0 * vcpus] * 2)


def test_power_samples_are_used_where_there_are_two() -> None:
    settings = projection_settings(HOST_MODEL)
    nan = float("nan")
    telemetry = _telemetry(cpu_pct=[100.0] * 4, mem_mib=[1024.0] * 4, n=[1] * 4)
    # Gaps interpolated, the ends held from the nearest sample.
    sampled = telemetry.assign(power_w=[nan, 20.0, nan, 40.0])
    watts, method = pj.estimated_power_w(sampled, {}, settings)
    assert method == "power_samples" and watts.tolist() == pytest.approx([20, 20, 30, 40])
    # One sample is no timeline: the host model is used instead.
    single = telemetry.assign(power_w=[nan, 20.0, nan, nan])
    watts, method = pj.estimated_power_w(single, {}, settings)
    assert method == "host_model" and watts.tolist() == pytest.approx([2 + 10 + 64] * 4)


def test_estimate_needs_a_run_folder(cpu: dict, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no energy counter"):
        pj.write_projections(cpu["summary"]["summary"], cpu["summary"]["energy"], [],
                             projection_settings({}), Layout.projection_files_in(tmp_path, "demo"))


# ------------------------------------------------------------------------------ config


def test_settings_defaults_and_overrides() -> None:
    s = report_settings({}).projection
    assert s.traffic_rph == (1, 10, 100, 1000, 10000) and s.hours_per_day == 24
    assert s.value("carbon_intensity_g_per_kwh") == 475
    r = report_settings({"projections": {"traffic_rph": [5], "hours_per_day": 8},
                         "report": {"title": "T", "renderer": "pandoc"},
                         "constants": {"gpu_hour_price_usd": {
                             "value": 2.5, "unit": "USD/h", "source": "x", "date": "2026"}}})
    s = r.projection
    assert s.traffic_rph == (5.0,) and s.hours_per_day == 8 and r.title == "T"
    assert s.value("gpu_hour_price_usd") == 2.5 and s.constants["gpu_hour_price_usd"].source == "x"
    assert s.value("carbon_intensity_g_per_kwh") == 475  # untouched defaults stay
    config = {"projections": {"traffic_rph": [5]}}
    assert projection_settings(config) == report_settings(config).projection


@pytest.mark.parametrize(("bad", "reason"), [
    ({"constants": {"gpu_hour_price_usd": {"value": 1.0, "unit": "USD/h"}}},
     "gpu_hour_price_usd: 'source' is a required property"),
    ({"constants": {"gpu_hour_price_usd": {"value": "cheap", "unit": "USD/h", "source": "x",
                                           "date": "2026"}}},
     "gpu_hour_price_usd.value: 'cheap' is not of type 'number'"),
    ({"projections": {"traffic_rph": []}}, "traffic_rph: .* non-empty"),
    ({"projections": {"hours_per_day": 25}}, "hours_per_day: 25 is greater than"),
    ({"report": {"renderer": "word"}}, "renderer: 'word' is not one of"),
    ({"constants": {"cpu_max_w_per_vcpu": {"value": 0.1, "unit": "W", "source": "x",
                                           "date": "2026"}}},
     "cpu_max_w_per_vcpu must be >= cpu_min_w_per_vcpu"),
])
def test_settings_rejects(bad: dict, reason: str) -> None:
    with pytest.raises(UserError, match=reason):
        report_settings(bad)


def test_schema_fragment_validates_defaults() -> None:
    import jsonschema

    defaults = {k: v["default"] for k, v in REPORT_CONFIG_SCHEMA["properties"].items()
                if "default" in v}
    jsonschema.validate(defaults, REPORT_CONFIG_SCHEMA)
    assert set(REPORT_CONFIG_SCHEMA["properties"]) == {"constants", "projections", "report"}


def test_projection_model_reads_the_policy_accounting() -> None:
    """The summary's policy_always_on / policy_idle_ttl_s decide, not parameter names."""
    summary = pd.DataFrame([
        {"workload": "w", "strategy": "custom", "policy": "not_registered",
         "policy_always_on": False, "policy_idle_ttl_s": 42.0, "keep_warm_ttl_s": 5.0},
        {"workload": "w", "strategy": "held", "policy": "keep_warm", "min_instances": 0,
         "policy_always_on": "True", "policy_idle_ttl_s": 3.0, "keep_warm_ttl_s": 3.0},
    ])
    runs = pd.DataFrame([{"strategy": "custom", "rep": 1, "basis": "measured",
                          "method": "nvml_counter", "bare_idle_power_w": 10.0,
                          "cold_starts": 0, "cold_start_mean_s": math.nan,
                          "cold_start_energy_mean_j": math.nan,
                          "cold_start_above_baseline_mean_j": math.nan, "ok": 1}])
    phases = pd.DataFrame([{"strategy": "custom", "rep": 1, "phase": "idle_loaded",
                            "duration_s": 10.0, "energy_j": 200.0}])
    model = pj.projection_model(summary, runs, phases).set_index("strategy")
    assert model.at["custom", "idle_ttl_s"] == 42.0 and not model.at["custom", "always_on"]
    assert model.at["held", "always_on"] and math.isinf(model.at["held", "idle_ttl_s"])

