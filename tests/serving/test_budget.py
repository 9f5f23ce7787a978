"""The memory budget: estimates, each eviction policy's choice, and admission control over
pools of fake instances (busy and starting instances are never evicted; a start that
cannot get memory ends in 503 after a bounded wait)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fake_pool_process import FakeProcess as SharedFakeProcess

from scalezero.models.gguf import gguf_info
from scalezero.serving.budget import (
    EVICTION_POLICIES,
    Candidate,
    CostAware,
    DeploymentStats,
    InsufficientMemory,
    LeastRecentlyUsed,
    LongestIdle,
    MemoryBudget,
    gguf_estimate_mib,
    make_eviction_policy,
)
from scalezero.serving.events import EventLog, Lifecycle, Reason
from scalezero.serving.launcher import InstanceSpec
from scalezero.serving.pool import Instance, InstanceState, Lease, Pool
from scalezero.serving.settings import InstanceSettings, QueueSettings
from scalezero.serving.strategies import make_policy

MIB = 1 << 20


class FakeProcess(SharedFakeProcess):
    """Starts at once unless ``auto`` is switched off; no pid unless given one."""

    auto = True
    numbered_pids = False


def make_pool(name: str, events: EventLog, policy: str = "keep_warm",
              processes: list[FakeProcess] | None = None, **params: Any) -> Pool:
    spec = InstanceSettings().spec(Path(f"/models/{name}.gguf"), name, device="cpu",
                                   gpu_index=None, log_dir=None)

    def factory(instance_id: str, spec: InstanceSpec) -> FakeProcess:
        process = FakeProcess(instance_id, spec)
        if processes is not None:
            processes.append(process)
        return process

    limits = QueueSettings(cold_start_timeout_s=30.0, queue_timeout_s=30.0).pool_limits()
    return Pool(name, spec, make_policy(policy, {"keep_warm_ttl_s": 3600.0, **params}
                                        if policy == "keep_warm" else params),
                limits, events, process_factory=factory)


def shared(budget_mib: float, eviction: str = "lru", wait_s: float = 5.0,
           sizes_mib: dict[str, float] | None = None,
           ) -> tuple[MemoryBudget, dict[str, Pool], EventLog]:
    events = EventLog()
    budget = MemoryBudget(budget_mib, eviction, wait_s=wait_s)
    pools = {}
    for name, size in (sizes_mib or {"a": 100.0, "b": 100.0, "c": 100.0}).items():
        pools[name] = make_pool(name, events)
        budget.add(pools[name], size)
    return budget, pools, events


async def serve_once(pool: Pool) -> None:
    lease = await pool.acquire()
    pool.release(lease)


def evicted(events: EventLog) -> list[str]:
    return [f"{e.instance_id}" for e in events.events
            if e.event == Lifecycle.DRAIN and e.reason == Reason.EVICTED]


async def shut(*pools: Pool) -> None:
    for pool in pools:
        await pool.shutdown()


# ------------------------------------------------------------------ arithmetic


def test_estimate_is_file_plus_kv_cache_from_the_gguf(real_model: Path) -> None:
    info = gguf_info(real_model)
    head_dim = info["embedding_length"] / info["head_count"]
    kv_bytes = 2 * info["block_count"] * 1024 * info["head_count_kv"] * head_dim * 2
    expected = (real_model.stat().st_size + kv_bytes) / MIB
    assert gguf_estimate_mib(real_model, 1024) == pytest.approx(expected)
    # Twice the context: twice the cache.
    assert gguf_estimate_mib(real_model, 2048) - gguf_estimate_mib(real_model, 1024) == (
        pytest.approx(kv_bytes / MIB))


def test_a_file_that_is_no_gguf_is_estimated_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(bytes(3 * MIB))
    assert gguf_estimate_mib(path, 4096) == pytest.approx(3.0)


def test_the_measured_memory_replaces_the_estimate() -> None:
    stats = DeploymentStats(estimate_mib=500.0)
    assert stats.need_mib == 500.0
    stats.measured_mib = 420.0
    assert stats.need_mib == 420.0


def test_unmeasured_deployments_get_the_overhead_measured_ones_showed() -> None:
    budget, _, _ = shared(1000.0, sizes_mib={"a": 100.0, "b": 40.0, "c": 10.0})
    assert budget.need_mib("b") == 40.0
    budget.stats["a"].measured_mib = 250.0  # 150 beyond its estimate
    assert budget.overhead_mib() == pytest.approx(150.0)
    assert budget.need_mib("a") == 250.0
    assert budget.need_mib("b") == pytest.approx(190.0)
    budget.stats["b"].measured_mib = 90.0  # 50 beyond
    assert budget.need_mib("c") == pytest.approx(10.0 + 100.0)


def test_used_memory_counts_live_instances_and_ignores_those_waiting() -> None:
    async def scenario() -> None:
        budget, pools, _ = shared(1000.0, sizes_mib={"a": 300.0, "b": 200.0})
        await serve_once(pools["a"])
        await serve_once(pools["b"])
        assert budget.used_mib() == pytest.approx(500.0)
        await shut(*pools.values())
        assert budget.used_mib() == 0.0

    asyncio.run(scenario())


def test_an_instance_is_measured_once_it_is_ready() -> None:
    async def scenario() -> None:
        events = EventLog()
        budget = MemoryBudget(1000.0, meter=lambda pid: 123.0)
        pool = make_pool("a", events)
        budget.add(pool, 300.0)
        pool._process_factory = _with_pid(pool._process_factory)
        await serve_once(pool)
        assert budget.stats["a"].measured_mib == 123.0
        assert budget.used_mib() == pytest.approx(123.0)
        await pool.shutdown()

    asyncio.run(scenario())


def _with_pid(factory: Any) -> Any:
    def make(instance_id: str, spec: InstanceSpec) -> FakeProcess:
        process = factory(instance_id, spec)
        process.pid = 4242
        return process
    return make


# --------------------------------------------------------- the policies' choice


class _Stub:
    """Stands in for a pool in a hand-built candidate."""

    def __init__(self, name: str) -> None:
        self.deployment = name


def candidate(name: str, idle_since_s: float, last_arrival_s: float, arrivals: int,
              cold_start_s: float, size_mib: float) -> Candidate:
    inst = Instance(f"{name}-1", FakeProcessStub(), start_reason=Reason.ON_DEMAND,
                    state=InstanceState.READY, idle_since_s=idle_since_s)
    stats = DeploymentStats(estimate_mib=size_mib, last_arrival_s=last_arrival_s,
                            cold_starts_s=[cold_start_s])
    stats.arrivals_s.extend([last_arrival_s] * arrivals)
    return Candidate(_Stub(name), inst, stats)  # type: ignore[arg-type]


class FakeProcessStub:
    pid = None
    port = 0
    proc = None
    phase_times: ClassVar[dict[str, float]] = {}


def hand_built() -> list[Candidate]:
    return [
        # Used last, idle the longest, but rarely and cheap to restart.
        candidate("rare", idle_since_s=10.0, last_arrival_s=95.0, arrivals=1,
                  cold_start_s=1.0, size_mib=100.0),
        # Used the longest ago, popular, costly to restart.
        candidate("popular", idle_since_s=50.0, last_arrival_s=40.0, arrivals=50,
                  cold_start_s=8.0, size_mib=100.0),
        # Middle on both counts, large.
        candidate("large", idle_since_s=30.0, last_arrival_s=60.0, arrivals=10,
                  cold_start_s=2.0, size_mib=1000.0),
    ]


def test_the_registry_names_every_policy() -> None:
    assert set(EVICTION_POLICIES) == {"lru", "longest_idle", "cost_aware"}
    with pytest.raises(ValueError, match="unknown eviction policy"):
        make_eviction_policy("fifo")


def test_lru_evicts_the_deployment_used_longest_ago() -> None:
    chosen = LeastRecentlyUsed().choose(hand_built(), now_s=100.0)
    assert chosen.pool.deployment == "popular"


def test_longest_idle_evicts_the_instance_idle_the_longest() -> None:
    chosen = LongestIdle().choose(hand_built(), now_s=100.0)
    assert chosen.pool.deployment == "rare"


def test_cost_aware_weighs_frequency_and_cost_by_size() -> None:
    policy = CostAware()
    candidates = hand_built()
    priorities = {c.pool.deployment: policy.priority(c, 100.0) for c in candidates}
    window = 300.0
    assert priorities["rare"] == pytest.approx((1 / window) * 1.0 / 100.0)
    assert priorities["popular"] == pytest.approx((50 / window) * 8.0 / 100.0)
    assert priorities["large"] == pytest.approx((10 / window) * 2.0 / 1000.0)
    chosen = policy.choose(candidates, now_s=100.0)
    assert chosen.pool.deployment == "rare"
    # The clock rises to the evicted priority: survivors age relative to newcomers.
    policy.evicted(chosen, 100.0)
    assert policy.clock == pytest.approx(priorities["rare"])
    assert policy.priority(candidates[1], 100.0) == pytest.approx(
        priorities["rare"] + priorities["popular"])


def test_old_arrivals_leave_the_rate() -> None:
    stats = DeploymentStats(estimate_mib=1.0)
    stats.arrivals_s.extend([0.0, 100.0, 200.0])
    assert stats.rate_per_s(350.0) == pytest.approx(2 / 300.0)
    assert math.isclose(stats.rate_per_s(10_000.0), 0.0)


# ----------------------------------------------------------- admission control


@pytest.mark.parametrize("eviction", sorted(EVICTION_POLICIES))
def test_a_start_over_budget_evicts_an_idle_instance(eviction: str) -> None:
    async def scenario() -> None:
        budget, pools, events = shared(250.0, eviction)
        await serve_once(pools["a"])
        await asyncio.sleep(0.01)
        await serve_once(pools["b"])
        await serve_once(pools["c"])
        assert len(evicted(events)) == 1
        assert budget.evictions == 1
        assert budget.used_mib() <= 250.0
        live = {name: len(pool.instances) for name, pool in pools.items()}
        assert live["c"] == 1 and sum(live.values()) == 2
        gone = next(name for name, count in live.items() if count == 0)
        assert sum(pool.evictions for pool in pools.values()) == 1
        assert pools[gone].snapshot()["evictions"] == 1
        stopped = [e for e in events.events if e.event == Lifecycle.STOPPED]
        assert [e.reason for e in stopped] == [Reason.EVICTED]
        await shut(*pools.values())

    asyncio.run(scenario())


def test_lru_keeps_the_recently_used_deployment() -> None:
    async def scenario() -> None:
        _, pools, _ = shared(250.0, "lru")
        await serve_once(pools["a"])
        await serve_once(pools["b"])
        await serve_once(pools["a"])  # a is now the more recent
        await serve_once(pools["c"])
        assert [len(pools[n].instances) for n in "abc"] == [1, 0, 1]
        await shut(*pools.values())

    asyncio.run(scenario())


def test_busy_instances_are_never_evicted_and_the_start_gets_503() -> None:
    async def scenario() -> None:
        _, pools, events = shared(250.0, wait_s=0.3)
        lease_a = await pools["a"].acquire()
        lease_b = await pools["b"].acquire()
        t0 = time.monotonic()
        with pytest.raises(InsufficientMemory) as caught:
            await pools["c"].acquire()
        assert 0.25 <= time.monotonic() - t0 < 5.0
        assert caught.value.status_code == 503
        assert "no memory for 'c'" in caught.value.message
        assert evicted(events) == []
        assert not pools["c"].instances  # nothing left behind, nothing spawned
        assert [e.instance_id for e in events.events if e.event == Lifecycle.SPAWN] == [
            "i1", "i1"]
        pools["a"].release(lease_a)
        pools["b"].release(lease_b)
        await shut(*pools.values())

    asyncio.run(scenario())


def test_a_starting_instance_is_never_evicted() -> None:
    async def scenario() -> None:
        budget, pools, events = shared(250.0, wait_s=0.3)
        held: list[FakeProcess] = []
        slow = make_pool("slow", events, processes=held)
        budget.pools.pop("b")
        budget.stats.pop("b")
        budget.add(slow, 100.0)
        FakeProcess.auto = False
        try:
            waiting = asyncio.ensure_future(slow.acquire())
            await asyncio.sleep(0.05)
        finally:
            FakeProcess.auto = True
        assert slow.snapshot()["starting"] == 1
        lease_a = await pools["a"].acquire()
        with pytest.raises(InsufficientMemory):
            await pools["c"].acquire()
        assert evicted(events) == []
        held[0].started.set_result(None)
        lease = await waiting
        slow.release(lease)
        pools["a"].release(lease_a)
        await shut(slow, pools["a"], pools["c"])

    asyncio.run(scenario())


def test_a_waiting_start_gets_the_memory_a_finished_request_frees() -> None:
    async def scenario() -> None:
        _, pools, events = shared(250.0, wait_s=5.0)
        lease_a = await pools["a"].acquire()
        lease_b = await pools["b"].acquire()
        waiting = asyncio.ensure_future(pools["c"].acquire())
        await asyncio.sleep(0.1)
        assert not waiting.done()
        pools["a"].release(lease_a)  # a goes idle: now it can be evicted
        lease_c = await asyncio.wait_for(waiting, 5.0)
        assert lease_c.cold
        assert len(evicted(events)) == 1 and not pools["a"].instances
        pools["b"].release(lease_b)
        pools["c"].release(lease_c)
        await shut(*pools.values())

    asyncio.run(scenario())


def test_a_deployment_larger_than_the_budget_is_refused_at_once() -> None:
    async def scenario() -> None:
        _, pools, _ = shared(250.0, wait_s=30.0, sizes_mib={"a": 100.0, "huge": 400.0})
        t0 = time.monotonic()
        with pytest.raises(InsufficientMemory, match="needs 400 MiB; the memory budget is 250"):
            await pools["huge"].acquire()
        assert time.monotonic() - t0 < 1.0
        await shut(*pools.values())

    asyncio.run(scenario())


def test_an_always_on_instance_is_not_evicted_below_its_minimum() -> None:
    async def scenario() -> None:
        events = EventLog()
        budget = MemoryBudget(150.0, wait_s=0.2)
        pinned = make_pool("pinned", events, policy="always_on")
        other = make_pool("other", events)
        budget.add(pinned, 100.0)
        budget.add(other, 100.0)
        await pinned.start()
        await serve_once(pinned)
        with pytest.raises(InsufficientMemory):
            await other.acquire()
        assert evicted(events) == []
        await shut(pinned, other)

    asyncio.run(scenario())


def test_without_a_budget_the_pool_asks_nobody() -> None:
    async def scenario() -> None:
        pool = make_pool("a", EventLog())
        assert pool.admission is None
        lease: Lease = await pool.acquire()
        pool.release(lease)
        assert "evictions" in pool.snapshot() and pool.snapshot()["evictions"] == 0
        await pool.shutdown()

    asyncio.run(scenario())


# ------------------------------------------------------------ runtime-warm instances


class SleepyProcess(FakeProcess):
    supports_sleep = True


def tiered_pool(name: str, events: EventLog, meter_mib: float | None = None) -> Pool:
    spec = InstanceSettings().spec(Path(f"/models/{name}.gguf"), name, device="cpu",
                                   gpu_index=None, log_dir=None)

    def factory(instance_id: str, spec: InstanceSpec) -> FakeProcess:
        process = SleepyProcess(instance_id, spec)
        process.pid = 4242 if meter_mib is not None else None
        return process

    limits = QueueSettings(cold_start_timeout_s=30.0, queue_timeout_s=30.0).pool_limits()
    policy = make_policy("tiered", {"loaded_ttl_s": 0.01, "runtime_warm_s": 3600.0})
    return Pool(name, spec, policy, limits, events, process_factory=factory)


async def until_sleeping(pool: Pool) -> None:
    for _ in range(200):
        if any(inst.state is InstanceState.SLEEPING for inst in pool.instances):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("no instance went runtime-warm")


async def sleeping_beside_another(budget: MemoryBudget) -> tuple[EventLog, Pool, Pool]:
    """Deployment a (tiered, runtime-warm after one request) and b (keep-warm), 100 MiB
    each under ``budget``: the events, a's pool and b's."""
    events = EventLog()
    sleepy = tiered_pool("a", events)
    other = make_pool("b", events)
    budget.add(sleepy, 100.0)
    budget.add(other, 100.0)
    await serve_once(sleepy)
    await until_sleeping(sleepy)
    return events, sleepy, other


def test_a_sleeping_instance_counts_only_its_runtime() -> None:
    async def scenario() -> None:
        events = EventLog()
        # Measured at 180 MiB against an estimate of 100: 80 MiB is the runtime.
        budget = MemoryBudget(1000.0, meter=lambda pid: 180.0)
        pool = tiered_pool("a", events, meter_mib=180.0)
        budget.add(pool, 100.0)
        await serve_once(pool)
        assert budget.used_mib() == pytest.approx(180.0)
        await until_sleeping(pool)
        assert budget.runtime_mib("a") == pytest.approx(80.0)
        assert budget.used_mib() == pytest.approx(80.0)
        await serve_once(pool)  # woken: its model counts again
        assert pool.wakes == 1
        assert budget.used_mib() == pytest.approx(180.0)
        assert budget.stats["a"].cold_starts_s and len(budget.stats["a"].cold_starts_s) == 1
        await pool.shutdown()

    asyncio.run(scenario())


def test_a_sleeping_instance_is_evicted_for_another_deployment() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(150.0, "lru", wait_s=2.0)
        events, sleepy, other = await sleeping_beside_another(budget)
        # Unmeasured: the runtime counts 0, so b fits beside the sleeping instance.
        assert budget.used_mib() == 0.0
        await serve_once(other)
        assert evicted(events) == []
        # Waking a needs its 100 MiB back: b's idle instance goes.
        await serve_once(sleepy)
        assert (other.evictions, sleepy.evictions) == (1, 0)
        assert evicted(events) == ["i1"] and sleepy.wakes == 1
        await shut(sleepy, other)

    asyncio.run(scenario())


def test_a_sleeping_instance_is_a_candidate_and_a_busy_one_never() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(1000.0)
        events, sleepy, busy = await sleeping_beside_another(budget)
        lease = await busy.acquire()
        chosen = [(c.pool.deployment, str(c.instance.state)) for c in budget.candidates()]
        assert chosen == [("a", "sleeping")]
        budget.eviction.choose(budget.candidates(), 0.0).pool.evict(
            budget.candidates()[0].instance)
        for _ in range(100):  # the stop runs as a task
            if not sleepy.instances:
                break
            await asyncio.sleep(0.005)
        assert sleepy.instances == []
        assert [(e.event, e.reason) for e in events.events if e.event == "drain"] == [
            ("drain", "evicted")]
        busy.release(lease)
        await shut(sleepy, busy)

    asyncio.run(scenario())


def test_a_wake_without_memory_stops_the_instance_and_answers_503() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(150.0, "lru", wait_s=0.2)
        events, sleepy, other = await sleeping_beside_another(budget)
        busy = await other.acquire()  # b's instance holds 100 MiB and cannot be evicted
        with pytest.raises(InsufficientMemory, match="no memory for 'a'") as caught:
            await sleepy.acquire()
        assert caught.value.status_code == 503
        assert [(e.event, e.state, e.reason) for e in events.events
                if e.event in ("wake", "drain")] == [
            ("wake", "waking", "on_demand"), ("drain", "draining", "evicted")]
        assert sleepy.wakes == 0 and other.instances[0].in_flight == 1
        other.release(busy)
        await shut(sleepy, other)

    asyncio.run(scenario())
