"""The engine against the gateway's own pool: same input, same answers.

``engine.simulate`` re-implements the pool's rules for speed; ``simulate_with_pool`` runs
the real ``serving.pool.Pool`` on a virtual clock. Every registered policy is replayed
through both on random request sequences (continuous random times, so no two things
happen at once by chance; short and long gaps; small queues and short timeouts, so 429
and 504 occur; one and two instances; a histogram policy with small bins, so it
pre-warms; figures left at 0 in the profile), and the two must agree on every request's
outcome (status, cold, instance, grant, first and last token times to 1e-6 s) and on
every lifecycle event (instance, event, reason, time). Times on a coarse grid check
requests that arrive at the same instant. A policy object driven by either must also be
asked the same questions, with the same times, in the same order.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalezero.serving.pool import PoolLimits
from scalezero.serving.strategies import Policy, make_policy, policies, registered
from scalezero.serving.strategies.keep_warm import KeepWarm
from scalezero.simulate.engine import SimRequest, SimResult, simulate
from scalezero.simulate.profile import PlatformProfile
from scalezero.simulate.virtual_pool import simulate_with_pool

TOL_S = 1e-6

#: Parameters that make each policy do something within a run of a few minutes.
POLICY_PARAMS: dict[str, list[dict[str, Any]]] = {
    "always_on": [{}],
    "naive": [{}],
    "keep_warm": [{"keep_warm_ttl_s": 0.7}, {"keep_warm_ttl_s": 9.3}],
    # Runtime-warm after a short loaded time, long enough that lulls end in wakes and
    # long pauses in runtime_warm_ttl stops; or loaded not at all.
    "tiered": [{"loaded_ttl_s": 0.7, "runtime_warm_s": 12.1},
               {"loaded_ttl_s": 2.3, "runtime_warm_s": 4.9},
               {"loaded_ttl_s": 0.0, "runtime_warm_s": 20.3}],
    "hybrid_histogram": [
        # Small bins and few samples: the histogram becomes representative after a few
        # idle periods and pre-warms (a head beyond the first bin) or keeps alive.
        {"bin_width_s": 2.0, "range_s": 60.0, "min_samples": 3, "cv_threshold": 1.0,
         "fallback_ttl_s": 3.1, "head_percentile": 5.0, "tail_percentile": 99.0},
        {"bin_width_s": 5.0, "range_s": 120.0, "min_samples": 2, "cv_threshold": 0.5,
         "fallback_ttl_s": 0.0, "margin_pct": 20.0},
    ],
}


@dataclasses.dataclass(frozen=True)
class Case:
    policy_name: str
    params: dict[str, Any]
    profile: PlatformProfile
    limits: PoolLimits
    requests: tuple[SimRequest, ...]
    until_s: float | None = None
    #: Idle times the policy learned before the replay (policies that learn them).
    learned_idle_s: tuple[float, ...] = ()

    def policy(self) -> Policy:
        policy = make_policy(self.policy_name, self.params)
        learn = getattr(policy, "record_idle_s", None)
        for idle_s in self.learned_idle_s if learn is not None else ():
            learn(idle_s)
        return policy

    def __str__(self) -> str:
        return (f"{self.policy_name} {self.params} {self.limits} until {self.until_s} "
                f"{len(self.requests)} requests: {[round(r.t_sched_s, 4) for r in self.requests]}")


def random_profile(rng: random.Random, concurrency: int) -> PlatformProfile:
    def maybe_zero(value: float) -> float:
        # A profile leaves a figure it lacks at 0: things then happen at the same instant.
        return 0.0 if rng.random() < 0.1 else value

    return PlatformProfile(
        name="random", model="m", device="d", basis="assumed",
        spawn_to_runtime_ready_s=maybe_zero(rng.uniform(0.1, 0.6)),
        runtime_ready_to_model_loaded_s=rng.uniform(0.2, 2.0),
        model_loaded_to_ready_s=maybe_zero(rng.uniform(0.05, 0.4)),
        first_request_extra_s=maybe_zero(rng.uniform(0.0, 0.3)),
        stop_s=maybe_zero(rng.uniform(0.05, 0.5)),
        ttft_base_s=maybe_zero(rng.uniform(0.02, 0.1)),
        ttft_s_per_prompt_token=rng.uniform(1e-4, 1e-3),
        tpot_s=maybe_zero(rng.uniform(0.005, 0.03)),
        instance_concurrency=concurrency,
    )


def random_requests(rng: random.Random, n: int) -> list[SimRequest]:
    """Arrivals in bursts (short gaps), lulls (seconds) and long pauses (past TTLs); or
    short bursts at a near-regular period (idle times a histogram learns)."""
    t_s = rng.uniform(0.0, 2.0)
    period_s = rng.uniform(8.0, 20.0) if rng.random() < 0.3 else None
    out = []
    for request_id in range(n):
        out.append(SimRequest(request_id, t_s, rng.randint(5, 400), rng.randint(1, 60)))
        kind = rng.random()
        if kind < 0.55:
            t_s += rng.expovariate(1 / 0.3)
        elif period_s is not None:
            t_s += period_s + rng.uniform(-0.5, 0.5)
        elif kind < 0.85:
            t_s += rng.expovariate(1 / 4.0)
        else:
            t_s += rng.uniform(10.0, 40.0)
    return out


def random_case(seed: int, policy_name: str) -> Case:
    rng = random.Random(f"{policy_name}-{seed}")
    params = dict(rng.choice(POLICY_PARAMS.get(policy_name, [{}])))
    min_instances = make_policy(policy_name, params).min_instances
    if rng.random() < 0.2:
        # A floor kept up (one more for always_on): the warm-up starts them one by one,
        # and only instances above it scale down.
        min_instances += 1
        params["min_instances"] = min_instances
    params["max_instances"] = max(min_instances, rng.choice([1, 2]))
    concurrency = rng.choice([1, 1, 2])
    profile = random_profile(rng, concurrency)
    limits = PoolLimits(
        max_queue=rng.randint(1, 5),
        cold_start_timeout_s=rng.uniform(0.6, 2.5) * profile.cold_start_s,
        queue_timeout_s=rng.uniform(0.3, 3.0),
        instance_concurrency=concurrency,
        failure_check_s=1.0,
    )
    requests = random_requests(rng, rng.randint(1, 40))
    # The end of the window: the last answer, or later (the pool runs on, then shuts down),
    # or before it (the window ends, the requests still finish).
    until_s = rng.choice([None, None, requests[-1].t_sched_s + rng.uniform(-5.0, 60.0)])
    rng.shuffle(requests)  # given in any order, served in time order
    # A policy that learned a pattern before (a histogram that pre-warms from the start).
    period_s = rng.uniform(5.0, 30.0)
    learned = tuple(period_s + rng.uniform(-1.0, 1.0)
                    for _ in range(rng.choice([0, 0, 5, 20])))
    # A wake time of its own, or the profile's fallback (drawn apart, so that the other
    # draws stay what they were).
    wake_rng = random.Random(f"wake-{policy_name}-{seed}")
    wake_s = wake_rng.choice([None, 0.0, wake_rng.uniform(0.05, 0.8)])
    profile = dataclasses.replace(profile, runtime_warm_wake_s=wake_s)
    return Case(policy_name, params, profile, limits, tuple(requests), until_s, learned)


# ------------------------------------------------------------------ comparison
REQUEST_TIMES = ("t_grant_s", "t_first_s", "t_end_s")


def request_outcomes(result: SimResult) -> list[dict[str, Any]]:
    frame = result.requests.sort_values("request_id")
    rows = []
    for row in frame.to_dict("records"):
        rows.append({
            "request_id": int(row["request_id"]),
            "status": int(row["status"]),
            "cold": bool(row["cold"]),
            "instance_id": "" if pd.isna(row["instance_id"]) else str(row["instance_id"]),
            **{col: float(row[col]) for col in REQUEST_TIMES},
        })
    return rows


def lifecycle(result: SimResult) -> list[tuple[float, str, str, str]]:
    frame = result.events
    rows = [(float(r.t_s), str(r.instance_id), str(r.event),
             "" if pd.isna(r.reason) else str(r.reason)) for r in frame.itertuples()]
    # Events at the same instant may be logged in either order.
    return sorted(rows, key=lambda e: (round(e[0], 6), e[1], e[2]))


def same_time(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= TOL_S


def differences(engine: SimResult, pool: SimResult) -> list[str]:
    """What differs between the engine's answer and the pool's, one line per thing."""
    found: list[str] = []
    by_id = {r["request_id"]: r for r in request_outcomes(pool)}
    for mine in request_outcomes(engine):
        theirs = by_id.pop(mine["request_id"], None)
        if theirs is None:
            found.append(f"request {mine['request_id']}: only the engine has it")
            continue
        for key in ("status", "cold", "instance_id"):
            if mine[key] != theirs[key]:
                found.append(f"request {mine['request_id']}: {key} engine {mine[key]!r} "
                             f"pool {theirs[key]!r}")
        for key in REQUEST_TIMES:
            if not same_time(mine[key], theirs[key]):
                found.append(f"request {mine['request_id']}: {key} engine {mine[key]:.6f} "
                             f"pool {theirs[key]:.6f}")
    found += [f"request {rid}: only the pool has it" for rid in by_id]
    engine_events, pool_events = lifecycle(engine), lifecycle(pool)
    for index, (mine, theirs) in enumerate(zip(engine_events, pool_events, strict=False)):
        if mine[1:] != theirs[1:] or not same_time(mine[0], theirs[0]):
            found.append(f"event {index}: engine {mine} pool {theirs}")
            break  # the rest follows from the first difference
    if len(engine_events) != len(pool_events):
        found.append(f"events: engine {len(engine_events)}, pool {len(pool_events)}")
    return found


def check(case: Case) -> None:
    engine = simulate(case.requests, case.policy(), case.profile, case.limits,
                      until_s=case.until_s)
    pool = simulate_with_pool(case.requests, case.policy(), case.profile, case.limits,
                              until_s=case.until_s)
    found = differences(engine, pool)
    if engine.window != pytest.approx(pool.window, abs=TOL_S):
        found.append(f"window: engine {engine.window} pool {pool.window}")
    assert not found, f"{case}\n" + "\n".join(found[:20])


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("policy_name", policies())
@pytest.mark.parametrize("seed", range(40))
def test_engine_and_pool_agree_on_seeded_sequences(policy_name: str, seed: int) -> None:
    check(random_case(seed, policy_name))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), policy_name=st.sampled_from(policies()))
def test_engine_and_pool_agree_on_random_sequences(seed: int, policy_name: str) -> None:
    check(random_case(seed, policy_name))


@pytest.mark.parametrize("policy_name", policies())
@pytest.mark.parametrize("seed", range(25))
def test_engine_and_pool_agree_when_arrivals_coincide(policy_name: str, seed: int) -> None:
    """Times on a coarse grid, so that requests arrive at the same instant (as in recorded
    traces, whose times are whole microseconds): both take them in the given order."""
    case = random_case(seed, policy_name)
    snapped = tuple(dataclasses.replace(r, t_sched_s=round(r.t_sched_s) + 0.25)
                    for r in case.requests)
    check(dataclasses.replace(case, requests=snapped))


@pytest.mark.parametrize("policy_name", ["always_on", "keep_warm", "hybrid_histogram"])
def test_a_request_at_zero_finds_the_warmed_up_instance_warm(policy_name: str) -> None:
    """The runner starts the replay after the initial instances are ready, so a request
    sent at t = 0 (recorded traces rebased to their first request start there) is not
    cold: the pool's ``ready_at >= arrived_at`` is false live (the gateway tests check the
    answer's x-scalezero-cold header after an always-on warm-up)."""
    case = dataclasses.replace(random_case(0, policy_name),
                               params={"min_instances": 1, "max_instances": 1})
    case = dataclasses.replace(case, requests=(SimRequest(0, 0.0, 50, 5),
                                               SimRequest(1, 30.0, 50, 5)))
    pool = simulate_with_pool(case.requests, case.policy(), case.profile, case.limits)
    assert list(pool.requests["cold"]) == [False, False]
    check(case)


def test_the_sequences_reach_every_outcome() -> None:
    """The random cases do reach what they are meant to test (else agreement says little)."""
    statuses: set[int] = set()
    reasons: set[str] = set()
    for policy_name in policies():
        for seed in range(40):
            case = random_case(seed, policy_name)
            result = simulate_with_pool(case.requests, case.policy(), case.profile, case.limits)
            statuses |= set(result.requests["status"].astype(int))
            reasons |= set(result.events["reason"])
    assert {200, 429, 504} <= statuses
    assert {"on_demand", "min_instances", "prewarm", "idle_ttl", "no_inflight",
            "runtime_warm_ttl"} <= reasons


def test_the_tiered_sequences_sleep_and_wake() -> None:
    """tiered's cases really take the runtime-warm tier: sleeps, wakes (on demand and for
    the minimum), runtime-warm stops, in both."""
    counts = {"sleep": 0, "wake": 0, "runtime_warm_ttl": 0}
    wake_reasons: set[str] = set()
    for seed in range(40):
        case = random_case(seed, "tiered")
        for result in (simulate(case.requests, case.policy(), case.profile, case.limits),
                       simulate_with_pool(case.requests, case.policy(), case.profile,
                                          case.limits)):
            events = result.events
            counts["sleep"] += int((events["event"] == "sleep").sum())
            counts["wake"] += int((events["event"] == "wake").sum())
            counts["runtime_warm_ttl"] += int((events["reason"] == "runtime_warm_ttl").sum())
            wakes = events[events["event"] == "wake"]
            wake_reasons |= set(wakes["reason"])
            assert set(wakes["tier"]) <= {"runtime_warm"}
            assert set(events.loc[events["event"] == "spawn", "tier"]) <= {"host_cached"}
    assert counts["sleep"] >= 40 and counts["wake"] >= 20 and counts["runtime_warm_ttl"] >= 10, \
        counts
    assert "on_demand" in wake_reasons


@pytest.mark.parametrize("seed", range(15))
def test_tiered_without_runtime_warm_time_is_naive_and_keep_warm(seed: int) -> None:
    """tiered(0, 0) gives naive's outcomes and events, tiered(T, 0) keep_warm(T)'s, in the
    engine and in the pool."""
    for params, other, other_params in (
            ({"loaded_ttl_s": 0.0, "runtime_warm_s": 0.0}, "naive", {}),
            ({"loaded_ttl_s": 2.5, "runtime_warm_s": 0.0}, "keep_warm",
             {"keep_warm_ttl_s": 2.5})):
        case = random_case(seed, "keep_warm")
        limits = dict(min_instances=case.params.get("min_instances", 0),
                      max_instances=case.params["max_instances"])
        tiered = dataclasses.replace(case, policy_name="tiered", params={**params, **limits})
        plain = dataclasses.replace(case, policy_name=other, params={**other_params, **limits})
        for run in (simulate, simulate_with_pool):
            mine = run(tiered.requests, tiered.policy(), tiered.profile, tiered.limits,
                       until_s=tiered.until_s)
            theirs = run(plain.requests, plain.policy(), plain.profile, plain.limits,
                         until_s=plain.until_s)
            assert not differences(mine, theirs), f"{run.__name__} {tiered}"
            assert (mine.events["event"] == "sleep").sum() == 0


# ------------------------------------------------------------ the policy's questions
class _Asked:
    """Mixin: log every question the pool (or engine) asks the policy, with its answer."""

    asked: list[tuple[str, tuple[Any, ...], Any]]

    def _log(self, hook: str, args: tuple[Any, ...], answer: Any) -> Any:
        self.asked.append((hook, args, answer))
        return answer

    def initial_instances(self) -> int:
        return self._log("initial_instances", (), super().initial_instances())  # type: ignore[misc]

    def idle_ttl_s(self, now_s: float) -> float | None:
        return self._log("idle_ttl_s", (now_s,), super().idle_ttl_s(now_s))  # type: ignore[misc]

    def runtime_warm_ttl_s(self, now_s: float) -> float | None:
        return self._log("runtime_warm_ttl_s", (now_s,),
                         super().runtime_warm_ttl_s(now_s))  # type: ignore[misc]

    def prewarm_at_s(self, now_s: float) -> float | None:
        return self._log("prewarm_at_s", (now_s,),
                         super().prewarm_at_s(now_s))  # type: ignore[misc]

    def on_arrival(self, now_s: float) -> None:
        self._log("on_arrival", (now_s,), super().on_arrival(now_s))  # type: ignore[misc]

    def on_idle(self, now_s: float) -> None:
        self._log("on_idle", (now_s,), super().on_idle(now_s))  # type: ignore[misc]


def _learn_history(self: Any, arrivals_s: Sequence[float]) -> None:
    self._log("learn_history", tuple(arrivals_s),
              super(type(self), self).learn_history(arrivals_s))


def asking(policy: Policy) -> Policy:
    """A copy of ``policy`` (same class, parameters and learned state) that logs in
    ``asked`` every question it is asked."""
    # learn_history only where the policy has it: the callers look for it.
    extra = {"learn_history": _learn_history} if hasattr(policy, "learn_history") else {}
    cls = type(f"Asked{type(policy).__name__}", (_Asked, type(policy)), extra)
    params = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy) if f.init}
    logged = cls(**params)
    state = {k: copy.deepcopy(v) for k, v in vars(policy).items() if k not in params}
    vars(logged).update(state)
    logged.asked = []
    return logged  # type: ignore[no-any-return]


def same_questions(a: list[tuple[str, tuple[Any, ...], Any]],
                   b: list[tuple[str, tuple[Any, ...], Any]]) -> list[str]:
    found = []
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        x_values = [*x[1], x[2]]
        y_values = [*y[1], y[2]]
        same = x[0] == y[0] and len(x_values) == len(y_values) and all(
            u == v or (isinstance(u, float) and isinstance(v, float) and same_time(u, v))
            for u, v in zip(x_values, y_values, strict=True))
        if not same:
            found.append(f"question {index}: engine {x} pool {y}")
            break
    if len(a) != len(b):
        found.append(f"questions: engine {len(a)}, pool {len(b)}")
    return found


@pytest.mark.parametrize("policy_name", policies())
@pytest.mark.parametrize("seed", range(15))
def test_a_policy_is_asked_the_same_questions_by_both(policy_name: str, seed: int) -> None:
    case = random_case(seed, policy_name)
    by_engine, by_pool = asking(case.policy()), asking(case.policy())
    simulate(case.requests, by_engine, case.profile, case.limits, until_s=case.until_s)
    simulate_with_pool(case.requests, by_pool, case.profile, case.limits, until_s=case.until_s)
    asked_engine = by_engine.asked  # type: ignore[attr-defined]
    asked_pool = by_pool.asked  # type: ignore[attr-defined]
    assert asked_pool, "the pool asked the policy nothing"
    found = same_questions(asked_engine, asked_pool)
    assert not found, f"{case}\n" + "\n".join(found)


@pytest.mark.parametrize("policy_name", policies())
@pytest.mark.parametrize("until_s", [None, 12.5])
def test_no_requests_warm_up_and_shut_down_alike(policy_name: str, until_s: float | None) -> None:
    case = dataclasses.replace(random_case(1, policy_name), requests=(), until_s=until_s)
    check(case)


@dataclasses.dataclass
class HistoryKeepWarm(KeepWarm):
    """keep_warm whose TTL is learned from the arrivals before the replay: the mean gap."""

    name = "test_history_keep_warm"

    def learn_history(self, arrivals_s: Sequence[float]) -> None:
        if len(arrivals_s) > 1:
            self.keep_warm_ttl_s = (max(arrivals_s) - min(arrivals_s)) / (len(arrivals_s) - 1)


@pytest.mark.parametrize("seed", range(10))
def test_a_history_reaches_the_policy_alike(seed: int) -> None:
    rng = random.Random(seed)
    history_s = sorted(rng.uniform(-600.0, -1.0) for _ in range(rng.randint(2, 30)))
    with registered(HistoryKeepWarm):
        case = random_case(seed, "test_history_keep_warm")
        by_engine, by_pool = asking(case.policy()), asking(case.policy())
        engine = simulate(case.requests, by_engine, case.profile, case.limits,
                          history_s=history_s, until_s=case.until_s)
        pool = simulate_with_pool(case.requests, by_pool, case.profile, case.limits,
                                  history_s=history_s, until_s=case.until_s)
    found = differences(engine, pool) + same_questions(
        by_engine.asked, by_pool.asked)  # type: ignore[attr-defined]
    assert by_pool.asked[0][0] == "learn_history"  # type: ignore[attr-defined]
    assert not found, f"{case}\n" + "\n".join(found)
