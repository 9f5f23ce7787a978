"""The gateway's pool on the virtual clock: hand-computed scenarios."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from scalezero.serving.pool import PoolLimits
from scalezero.serving.strategies import make_policy
from scalezero.simulate.engine import SimRequest
from scalezero.simulate.profile import PlatformProfile
from scalezero.simulate.virtual_pool import simulate_with_pool

PROFILE = PlatformProfile(
    name="hand", model="m", device="d", basis="assumed",
    spawn_to_runtime_ready_s=1.0, runtime_ready_to_model_loaded_s=2.0,
    model_loaded_to_ready_s=0.5, first_request_extra_s=0.25, stop_s=0.3,
    ttft_base_s=0.1, ttft_s_per_prompt_token=0.001, tpot_s=0.01,
)
COLD_S = 3.5
#: Warm TTFT of a 100-token prompt, and the decode of 10 output tokens.
TTFT_S = 0.2
DECODE_S = 0.09


def limits(max_queue: int = 8, timeout_s: float = 100.0) -> PoolLimits:
    return PoolLimits(max_queue=max_queue, cold_start_timeout_s=timeout_s,
                      queue_timeout_s=timeout_s, instance_concurrency=1, failure_check_s=1.0)


def requests(*times_s: float) -> list[SimRequest]:
    return [SimRequest(i, t, 100, 10) for i, t in enumerate(times_s)]


def lifecycle(events: pd.DataFrame) -> list[tuple[str, str, str, float]]:
    return [(r.instance_id, r.event, r.reason, round(r.t_s, 6)) for r in events.itertuples()]


def test_a_burst_at_zero_under_naive_makes_one_cold_start() -> None:
    result = simulate_with_pool(requests(0.0, 0.001, 0.002), make_policy("naive"), PROFILE,
                                limits())
    reqs = result.requests
    assert list(reqs["status"]) == [200, 200, 200]
    assert list(reqs["instance_id"]) == ["i1"] * 3
    assert list(reqs["cold"]) == [True] * 3  # all arrived before the instance was ready
    assert list(reqs["first_of_instance"]) == [True, False, False]
    end0 = COLD_S + TTFT_S + 0.25 + DECODE_S
    end1 = end0 + TTFT_S + DECODE_S
    end2 = end1 + TTFT_S + DECODE_S
    assert list(reqs["t_grant_s"]) == pytest.approx([COLD_S, end0, end1])
    assert list(reqs["t_end_s"]) == pytest.approx([end0, end1, end2])
    assert reqs["queue_wait_s"].iloc[0] == pytest.approx(COLD_S)
    assert lifecycle(result.events) == [
        ("i1", "spawn", "on_demand", 0.0),
        ("i1", "runtime_ready", "", 1.0),
        ("i1", "model_loaded", "", 3.0),
        ("i1", "ready", "", COLD_S),
        ("i1", "first_token", "", round(COLD_S + TTFT_S + 0.25, 6)),
        ("i1", "drain", "no_inflight", round(end2, 6)),
        ("i1", "stopped", "no_inflight", round(end2 + 0.3, 6)),
    ]
    assert result.window == (0.0, pytest.approx(end2))  # the replay ends with the last answer


def test_a_gap_longer_than_the_ttl_makes_a_second_cold_start() -> None:
    policy = make_policy("keep_warm", {"keep_warm_ttl_s": 20.0})
    result = simulate_with_pool(requests(0.0, 10.0, 60.0), policy, PROFILE, limits())
    reqs = result.requests
    assert list(reqs["instance_id"]) == ["i1", "i1", "i2"]
    assert list(reqs["cold"]) == [True, False, True]
    assert reqs["t_grant_s"].iloc[1] == 10.0
    end1 = 10.0 + TTFT_S + DECODE_S
    spawns = result.events[result.events["event"] == "spawn"]
    assert list(spawns["t_s"]) == pytest.approx([0.0, 60.0])
    drains = result.events[result.events["event"] == "drain"]
    # The second instance is up when the replay ends: the gateway's shutdown stops it.
    assert list(drains["reason"]) == ["idle_ttl", "shutdown"]
    assert drains["t_s"].iloc[0] == pytest.approx(end1 + 20.0)
    assert drains["t_s"].iloc[1] == pytest.approx(result.requests["t_end_s"].iloc[2])


def test_a_full_queue_gives_429_and_a_long_wait_504() -> None:
    result = simulate_with_pool(requests(0.0, 0.1, 0.2), make_policy("naive"), PROFILE,
                                limits(max_queue=2, timeout_s=1000.0))
    assert list(result.requests["status"]) == [200, 200, 429]
    assert result.requests["t_end_s"].iloc[2] == pytest.approx(0.2)
    assert math.isnan(result.requests["t_grant_s"].iloc[2])
    slow = simulate_with_pool(requests(0.0, 0.1), make_policy("naive"), PROFILE,
                              limits(timeout_s=2.0))
    assert list(slow.requests["status"]) == [504, 504]
    assert list(slow.requests["t_end_s"]) == pytest.approx([2.0, 2.1])


def test_always_on_warms_up_before_the_replay() -> None:
    result = simulate_with_pool(requests(1.0), make_policy("always_on"), PROFILE, limits())
    assert lifecycle(result.events)[:4] == [
        ("i1", "spawn", "min_instances", -COLD_S),
        ("i1", "runtime_ready", "", -2.5),
        ("i1", "model_loaded", "", -0.5),
        ("i1", "ready", "", 0.0),
    ]
    reqs = result.requests
    assert not reqs["cold"].iloc[0]
    assert reqs["t_grant_s"].iloc[0] == 1.0
    assert reqs["t_end_s"].iloc[0] == pytest.approx(1.0 + TTFT_S + 0.25 + DECODE_S)


def test_until_runs_the_pool_on_until_then_shuts_it_down() -> None:
    policy = make_policy("keep_warm", {"keep_warm_ttl_s": 100.0})
    result = simulate_with_pool(requests(0.0), policy, PROFILE, limits(), until_s=30.0)
    assert lifecycle(result.events)[-2:] == [("i1", "drain", "shutdown", 30.0),
                                             ("i1", "stopped", "shutdown", 30.3)]
    assert result.window == (0.0, 30.0)
    short = simulate_with_pool(requests(0.0), policy, PROFILE, limits(), until_s=1.0)
    assert short.window == (0.0, 1.0)
    assert short.events["t_s"].iloc[-2] == pytest.approx(short.requests["t_end_s"].iloc[0])


def test_a_start_cut_short_by_the_shutdown_reports_no_further_phase() -> None:
    # The request times out before the instance is ready; the gateway then stops.
    result = simulate_with_pool(requests(0.0), make_policy("naive"), PROFILE,
                                limits(timeout_s=2.0))
    assert list(result.requests["status"]) == [504]
    assert lifecycle(result.events) == [
        ("i1", "spawn", "on_demand", 0.0),
        ("i1", "runtime_ready", "", 1.0),
        ("i1", "drain", "shutdown", 2.0),
        ("i1", "stopped", "shutdown", 2.3),
    ]
