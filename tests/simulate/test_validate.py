"""The validation table: targets, met and missed, the runs' inputs to the simulator."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from simulation_fixtures import always_on_run, naive_run

from scalezero.errors import UserError
from scalezero.serving.settings import QueueSettings
from scalezero.simulate.fit import read_run
from scalezero.simulate.profile import PlatformProfile
from scalezero.simulate.validate import (
    FIT_ALL,
    TARGETS,
    VALIDATION_COLUMNS,
    compare,
    missed,
    run_limits,
    run_policy,
    run_requests,
    simulate_run,
    validate_workload,
)


def _by_metric(rows: list[dict]) -> dict[str, dict]:
    return {r["metric"]: r for r in rows}


def test_targets_mark_met_and_missed() -> None:
    measured = {"cold_starts": 3, "instance_s": 100.0, "ttft_p50_ms": 200.0,
                "ttft_p99_ms": 1000.0, "e2e_p50_ms": 400.0, "energy_total_j": 5000.0,
                "energy_source": "nvml_counter"}
    simulated = {"cold_starts": 5, "instance_s": 104.9, "ttft_p50_ms": 225.0,
                 "ttft_p99_ms": 820.0, "e2e_p50_ms": None, "energy_total_j": 4500.0}
    rows = _by_metric(compare(measured, simulated))
    assert list(rows) == [t.metric for t in TARGETS]
    assert rows["cold_starts"]["met"] is False  # 2 off, target +-1
    assert rows["cold_starts"]["error"] == 2 and rows["cold_starts"]["target"] == "±1"
    assert rows["instance_s"]["met"] is True  # 4.9 % within 5 %
    assert rows["instance_s"]["error_pct"] == pytest.approx(4.9)
    assert rows["ttft_p50_ms"]["met"] is False  # 12.5 % beyond 10 %
    assert rows["ttft_p99_ms"]["met"] is True  # -18 % within 20 %
    assert rows["ttft_p99_ms"]["target"] == "±20 %"
    assert rows["e2e_p50_ms"]["met"] is None  # nothing simulated: unknown, not a miss
    assert rows["energy_total_j"]["met"] is True  # exactly -10 %
    assert compare({"cold_starts": 0}, {"cold_starts": 1})[0]["met"] is True
    zero = _by_metric(compare({"instance_s": 0.0}, {"instance_s": 0.0}))["instance_s"]
    assert zero["met"] is True and math.isnan(zero["error_pct"])


def test_energy_is_checked_only_against_a_counter() -> None:
    for source in ("none", None):
        rows = compare({"energy_total_j": 100.0, "energy_source": source},
                       {"energy_total_j": 100.0})
        assert "energy_total_j" not in {r["metric"] for r in rows}


def test_missed_lists_only_false() -> None:
    frame = pd.DataFrame({"metric": ["a", "b", "c"],
                          "met": pd.array([True, False, None], dtype="boolean")})
    assert list(missed(frame)["metric"]) == ["b"]


def test_a_run_becomes_requests_policy_and_limits(tmp_path: Path) -> None:
    run = read_run(naive_run(tmp_path))
    requests = run_requests(run)
    # Relative to the replay start (100 s), the server-counted prompts, max_tokens.
    assert [(r.request_id, r.t_sched_s, r.prompt_tokens, r.output_tokens)
            for r in requests] == [(0, 1.0, 10, 4), (1, 5.0, 10, 4), (2, 6.0, 30, 4)]
    assert run_policy(run.data.meta).name == "naive"
    with pytest.raises(UserError):
        run_policy({})
    assert run_limits({}) == QueueSettings().pool_limits()
    assert run_limits({}, {"max_queue": 3, "instance_concurrency": 2}).max_queue == 3
    recorded = run_limits({"gateway": {"queue_timeout_s": 9.0}}, {"max_queue": 3})
    assert recorded.queue_timeout_s == 9.0 and recorded.max_queue == 256


def test_leave_one_out_table(tmp_path: Path) -> None:
    pytest.importorskip("scalezero.simulate.engine")
    dirs = [naive_run(tmp_path), always_on_run(tmp_path)]
    table = validate_workload(dirs, "hand")
    assert list(table.columns) == list(VALIDATION_COLUMNS)
    assert set(table["strategy"]) == {"naive", "always_on"}
    assert set(table["fit"]) == {"the 1 other run (all strategies)"}
    # The naive run had an energy counter, the always-on run none.
    energy = table[table["metric"] == "energy_total_j"]
    assert list(energy["strategy"]) == ["naive"]
    met = table["met"].astype("boolean")
    in_target = [t.met(m, s) for t, m, s in zip(
        [next(x for x in TARGETS if x.metric == name) for name in table["metric"]],
        table["measured"], table["simulated"], strict=True)]
    assert [None if pd.isna(v) else bool(v) for v in met] == in_target
    single = validate_workload(dirs[:1], "hand")
    assert set(single["fit"]) == {FIT_ALL}


def test_a_run_whose_gateway_learned_a_history_is_simulated_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scalezero.simulate import engine

    run = read_run(naive_run(tmp_path))
    seen: list[tuple[float, ...]] = []
    real = engine.simulate

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(tuple(kwargs["history_s"]))  # type: ignore[call-overload]
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "simulate", spy)
    history = (-30.0, -20.0, -10.0)
    # run.json without a history record: the run's gateway learned nothing.
    simulate_run(run, PROFILE_FOR_HISTORY, history_s=history)
    run.data.meta["history"] = {"requests": 3, "span_s": 30.0}
    simulate_run(run, PROFILE_FOR_HISTORY, history_s=history)
    assert seen == [(), history]
    # A history file that no longer matches the run is an error, not a silent mismatch.
    with pytest.raises(UserError, match="history of 3 arrivals"):
        simulate_run(run, PROFILE_FOR_HISTORY, history_s=history[:2])


PROFILE_FOR_HISTORY = PlatformProfile(
    name="hand", model="m", device="cpu", basis="assumed",
    spawn_to_runtime_ready_s=0.5, runtime_ready_to_model_loaded_s=0.5,
    model_loaded_to_ready_s=0.5, ttft_base_s=0.1, tpot_s=0.01)
