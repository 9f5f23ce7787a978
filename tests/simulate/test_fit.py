"""Fitting a platform profile from hand-built run folders with known numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from run_fixtures import event_row, lifecycle, request_row, telemetry_frame, write_run

from scalezero.errors import UserError
from scalezero.simulate.fit import fit_profile, fit_warm_ttft
from scalezero.simulate.profile import PlatformProfile

WORKLOAD = "hand"
# Warm service TTFT of every request below: 0.2 s + 0.01 s per prompt token.
BASE_S, PER_TOKEN_S = 0.2, 0.01
TPOT_S = 0.05


def warm_s(tokens_in: int) -> float:
    return BASE_S + PER_TOKEN_S * tokens_in


def _request(rid: int, send: float, tokens_in: int, t_first: float, *, cold: bool = False,
             wait_ms: float = 0.0, n_out: int = 4) -> dict:
    row = request_row(rid, send, send, t_first, t_first + TPOT_S * (n_out - 1), n_out,
                      cold=cold)
    row.update(tokens_in=tokens_in, queue_wait_ms=wait_ms)
    return row


def _meta(strategy: str, policy: dict, replay: tuple[float, float], bare: tuple[float, float],
          context: tuple[float, float] | None) -> dict:
    return {
        "workload": WORKLOAD, "strategy": strategy, "rep": 1, "order_index": 0,
        "policy": policy, "device": "gpu",
        "model": {"name": "tiny", "path": "x.gguf", "sha256": "0", "bytes": 1},
        "windows": {"baseline_bare": list(bare),
                    "baseline_context": list(context) if context else None,
                    "replay": list(replay)},
        "telemetry": {"backend": "nvml", "rate_hz": 10},
    }


def naive_run(root: Path) -> Path:
    """Replay [100, 200); one on-demand start (phases 0.5, 1.0, 0.5 s), a cold request
    waiting for it, two warm ones (one of them after a queue wait), drain -> stopped
    0.25 s; an energy counter: 80 W starting, 60 W up, 50 W otherwise, 55 W in the
    context baseline."""
    events = lifecycle("i1", 101.0, runtime_ready_s=101.5, model_loaded_s=102.5,
                       ready_s=103.0, first_token_s=103.0 + warm_s(10) + 0.6, stopped_s=110.0)
    requests = [
        # cold: waited for the start; its first token 0.6 s beyond the warm prediction
        _request(0, 101.0, 10, 103.0 + warm_s(10) + 0.6, cold=True, wait_ms=2000.0),
        _request(1, 105.0, 10, 105.0 + warm_s(10)),
        # waited 0.1 s in the gateway: the service time is what is left
        _request(2, 106.0, 30, 106.0 + 0.1 + warm_s(30), wait_ms=100.0),
    ]
    telemetry = telemetry_frame(np.arange(85.0, 215.0, 0.1),
                                [(96.0, 98.0, 55.0), (101.0, 103.0, 80.0), (103.0, 110.0, 60.0)],
                                50.0, instance_mem_mib=300.0)
    return write_run(root / WORKLOAD / "naive" / "1",
                     meta=_meta("naive", {"name": "naive"}, (100.0, 200.0), (88.0, 95.0),
                                (96.0, 98.0)),
                     requests=requests, events=events, telemetry=telemetry, tokens=None)


def always_on_run(root: Path) -> Path:
    """Replay [0, 50); an instance warmed up before it (phases 0.2, 1.0, 0.8 s), whose
    first request (flagged warm) takes 0.4 s beyond the warm prediction; stopped at
    shutdown 0.5 s after its drain; no energy counter."""
    events = lifecycle("i1", -10.0, runtime_ready_s=-9.8, model_loaded_s=-8.8, ready_s=-8.0,
                       first_token_s=5.0 + warm_s(50) + 0.4, reason="min_instances")
    events += [event_row(60.0, "i1", "drain", "shutdown"),
               event_row(60.5, "i1", "stopped", "shutdown")]
    requests = [_request(0, 5.0, 50, 5.0 + warm_s(50) + 0.4),
                _request(1, 10.0, 50, 10.0 + warm_s(50))]
    telemetry = telemetry_frame(np.arange(-15.0, 55.0, 0.1), [], 50.0, source="none",
                                instance_mem_mib=200.0)
    return write_run(root / WORKLOAD / "always_on" / "1",
                     meta=_meta("always_on", {"name": "always_on"}, (0.0, 50.0),
                                (-14.0, -12.0), None),
                     requests=requests, events=events, telemetry=telemetry, tokens=None)


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
