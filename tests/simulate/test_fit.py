"""Fitting a platform profile from hand-built run folders with known numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from simulation_fixtures import (
    BASE_S,
    PER_TOKEN_S,
    TPOT_S,
    always_on_run,
    naive_run,
    tiered_run,
)

from scalezero.errors import UserError
from scalezero.simulate.fit import fit_profile, fit_warm_ttft
from scalezero.simulate.profile import PlatformProfile


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> PlatformProfile:
    root = tmp_path_factory.mktemp("runs")
    return fit_profile([naive_run(root), always_on_run(root)], instance_concurrency=2)


def test_cold_start_phases_and_stop_are_medians(profile: PlatformProfile) -> None:
    assert profile.spawn_to_runtime_ready_s == pytest.approx((0.5 + 0.2) / 2)
    assert profile.runtime_ready_to_model_loaded_s == pytest.approx(1.0)
    assert profile.model_loaded_to_ready_s == pytest.approx((0.5 + 0.8) / 2)
    assert profile.cold_start_s == pytest.approx(2.0)
    assert profile.stop_s == pytest.approx((0.25 + 0.5) / 2)
    assert sorted(profile.samples["stop_s"]) == pytest.approx([0.25, 0.5])


def test_warm_ttft_line_and_first_request_extra(profile: PlatformProfile) -> None:
    # Warm points (10, 0.3), (30, 0.5) after the queue wait, (50, 0.7): the line exactly.
    assert profile.ttft_base_s == pytest.approx(BASE_S)
    assert profile.ttft_s_per_prompt_token == pytest.approx(PER_TOKEN_S)
    assert sorted(profile.samples["warm_prompt_tokens"]) == [10, 30, 50]
    # First requests: 0.6 s (cold, after ready) and 0.4 s (pre-warmed instance).
    assert sorted(profile.samples["first_request_extra_s"]) == pytest.approx([0.4, 0.6])
    assert profile.first_request_extra_s == pytest.approx(0.5)
    assert profile.tpot_s == pytest.approx(TPOT_S)


def test_power_from_the_counter_runs_only(profile: PlatformProfile) -> None:
    assert profile.energy_source == "nvml_counter"
    assert profile.power_w["bare_idle"] == pytest.approx(50.0)
    assert profile.power_w["context_idle"] == pytest.approx(55.0)
    assert profile.power_w["cold_start"] == pytest.approx(80.0)
    assert profile.power_w["active"] == pytest.approx(60.0)
    assert profile.power_w["idle_loaded"] == pytest.approx(60.0)
    # No runtime-warm time in these runs: a sleeping instance is taken to draw the
    # context-only baseline's power, and the notes say so.
    assert profile.power_w["runtime_warm"] == profile.power_w["context_idle"]
    assert "runtime_warm_power_w" not in profile.samples
    assert "runtime_warm power is context_idle's" in profile.notes


def test_runtime_warm_power_from_measured_runtime_warm_phases(tmp_path: Path) -> None:
    profile = fit_profile([tiered_run(tmp_path)])
    # Runtime-warm from the sleep at 108 to the stop at 115 at 52 W, not the 55 W baseline.
    assert profile.power_w["runtime_warm"] == pytest.approx(52.0)
    assert profile.power_w["context_idle"] == pytest.approx(55.0)
    assert profile.samples["runtime_warm_power_w"] == pytest.approx((52.0,))
    assert profile.power_w["idle_loaded"] == pytest.approx(60.0)
    assert "context_idle's" not in profile.notes


def test_memory_identity_and_record(profile: PlatformProfile, tmp_path: Path) -> None:
    assert profile.instance_mem_mib == pytest.approx(250.0)  # median of 300 and 200
    assert profile.basis == "measured"
    assert profile.model == "tiny" and profile.device == "gpu"
    assert profile.instance_concurrency == 2
    assert [Path(s).parent.name for s in profile.sources] == ["naive", "always_on"]
    profile.write(tmp_path / "p.json")
    assert PlatformProfile.read(tmp_path / "p.json") == profile


def test_no_counter_anywhere_estimates_or_leaves_power_unknown(tmp_path: Path) -> None:
    run = always_on_run(tmp_path)
    estimated = fit_profile([run])
    # The host telemetry has no power samples: the host power model, labelled so.
    assert estimated.energy_source == "host_model"
    assert "estimated" in estimated.notes
    (run / "telemetry.csv").unlink()
    unknown = fit_profile([run])
    assert unknown.energy_source == "none" and dict(unknown.power_w) == {}
    assert unknown.instance_mem_mib is None


def test_line_fit_clips_negative_coefficients() -> None:
    assert fit_warm_ttft([10, 20, 30], [0.3, 0.2, 0.1]) == (pytest.approx(0.2), 0.0)
    base, slope = fit_warm_ttft([10, 20], [0.05, 0.25])  # intercept would be -0.15
    assert base == 0.0 and slope == pytest.approx((10 * 0.05 + 20 * 0.25) / 500)
    assert fit_warm_ttft([8, 8, 8], [0.1, 0.3, 0.2]) == (pytest.approx(0.2), 0.0)
    assert fit_warm_ttft([], []) == (0.0, 0.0)
    assert not math.isnan(fit_warm_ttft([1, 2], [float("nan"), 0.5])[0])


def test_no_runs_is_an_error() -> None:
    with pytest.raises(UserError):
        fit_profile([])


def test_the_wake_time_is_fitted_from_wake_to_ready(tmp_path: Path) -> None:
    run = naive_run(tmp_path)
    events = pd.read_csv(run / "events.csv", keep_default_na=False)
    end_s = float(events["t_s"].max())
    extra = pd.DataFrame([
        {"t_s": end_s + 1.0, "instance_id": "w1", "event": "spawn", "state": "starting",
         "reason": "on_demand", "tier": "host_cached"},
        {"t_s": end_s + 2.0, "instance_id": "w1", "event": "ready", "state": "ready"},
        {"t_s": end_s + 3.0, "instance_id": "w1", "event": "sleep", "state": "sleeping",
         "reason": "idle_ttl"},
        {"t_s": end_s + 4.0, "instance_id": "w1", "event": "wake", "state": "waking",
         "reason": "on_demand", "tier": "runtime_warm"},
        {"t_s": end_s + 4.3, "instance_id": "w1", "event": "ready", "state": "ready"},
        {"t_s": end_s + 5.0, "instance_id": "w1", "event": "sleep", "state": "sleeping",
         "reason": "idle_ttl"},
        {"t_s": end_s + 6.0, "instance_id": "w1", "event": "wake", "state": "waking",
         "reason": "on_demand", "tier": "runtime_warm"},
        {"t_s": end_s + 6.5, "instance_id": "w1", "event": "ready", "state": "ready"},
    ])
    pd.concat([events, extra], ignore_index=True).to_csv(run / "events.csv", index=False)
    fitted = fit_profile([run])
    assert sorted(fitted.samples["runtime_warm_wake_s"]) == pytest.approx([0.3, 0.5])
    assert fitted.runtime_warm_wake_s == pytest.approx(0.4)
    assert fitted.wake_s == pytest.approx(0.4)
    assert "2 runtime-warm wakes" in fitted.notes


def test_without_wakes_the_wake_time_falls_back_to_the_load(profile: PlatformProfile) -> None:
    assert profile.runtime_warm_wake_s is None
    assert "runtime_warm_wake_s" not in profile.samples
    # Cold start (2.0 s) less its runtime phase (0.35 s).
    assert profile.wake_s == pytest.approx(1.0 + (0.5 + 0.8) / 2)
    assert PlatformProfile.from_record(profile.record()).wake_s == pytest.approx(profile.wake_s)
