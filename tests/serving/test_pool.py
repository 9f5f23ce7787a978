"""The pool's instance states: every change is one allowed, logged transition.

The pool runs here against an in-memory stand-in for the instance process, driven step
by step: starts finish or fail when the test says so, instances die when told to.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fake_pool_process import FakeProcess
from hypothesis import given, settings
from hypothesis import strategies as st

from scalezero.serving import pool as pool_module
from scalezero.serving.events import EventLog, Lifecycle, Reason
from scalezero.serving.launcher import InstanceSpec
from scalezero.serving.pool import (
    ALLOWED,
    InstanceState,
    InvalidTransition,
    Pool,
    PoolError,
    PoolLimits,
)
from scalezero.serving.settings import InstanceSettings, QueueSettings
from scalezero.serving.strategies import Policy, make_policy, registered

S = InstanceState
LOGGER = "scalezero.serving.pool"


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def fake_pool_world() -> Iterator[tuple[list[tuple[str, S, S, str]], Recorder]]:
    """Pools built inside use FakeProcess; yields the transitions tried and the log."""
    tried: list[tuple[str, S, S, str]] = []
    original = Pool._transition

    def spy(self: Pool, inst: Any, to_state: S, event: Any = None, reason: Any = "",
            **kwargs: Any) -> None:
        tried.append((inst.instance_id, inst.state, to_state,
                      f"{self.deployment} {inst.instance_id}: {inst.state} -> {to_state} "
                      f"({reason or event or ''})"))
        original(self, inst, to_state, event, reason, **kwargs)

    handler = Recorder()
    logger = logging.getLogger(LOGGER)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    FakeProcess.made = []
    try:
        with mock.patch.object(pool_module, "InstanceProcess", FakeProcess), \
                mock.patch.object(Pool, "_transition", spy):
            yield tried, handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def make_pool(policy: str, limits: PoolLimits | None = None, **params: Any) -> Pool:
    spec = InstanceSettings().spec(Path("fake.gguf"), "fake", device="cpu", gpu_index=None,
                                   log_dir=None)
    limits = limits or QueueSettings(cold_start_timeout_s=5.0, queue_timeout_s=5.0).pool_limits()
    return Pool("dep", spec, make_policy(policy, params), limits, EventLog())


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def pending_starts() -> list[FakeProcess]:
    return [p for p in FakeProcess.made if not p.started.done() and not p.exited.done()]


# ------------------------------------------------------------- the scenarios


async def _serve_then_scale_to_zero() -> None:
    """starting -> ready -> draining -> stopped (naive: stop once idle)."""
    pool = make_pool("naive")
    client = asyncio.ensure_future(pool.acquire())
    await settle()
    FakeProcess.made[-1].finish_start()
    lease = await client
    pool.release(lease)
    await settle()
    assert pool.instances == []
    await pool.shutdown()


async def _start_fails() -> None:
    """starting -> failed; the waiting request hears why."""
    pool = make_pool("naive")
    client = asyncio.ensure_future(pool.acquire())
    await settle()
    FakeProcess.made[-1].finish_start("no memory")
    with pytest.raises(PoolError, match="no memory"):
        await client
    await pool.shutdown()


async def _ready_instance_dies() -> None:
    """ready -> failed, and always_on replaces it."""
    pool = make_pool("always_on")
    await pool.start()
    await settle()
    FakeProcess.made[-1].finish_start()
    await settle()
    FakeProcess.made[-1].die()
    await settle()
    assert [i.instance_id for i in pool.instances] == ["i2"]  # the replacement starts
    await pool.shutdown()


async def _shutdown_during_start() -> None:
    """starting -> draining -> stopped: the gateway stops while an instance starts."""
    pool = make_pool("always_on")
    await pool.start()
    await settle()
    await pool.shutdown()
    await settle()


#: tiered: runtime-warm after a few ms idle, for long enough that the test wakes it.
TIERED = {"loaded_ttl_s": 0.005, "runtime_warm_s": 30.0}


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """Wait (real time: the pool's timers run on it) until ``condition`` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        await asyncio.sleep(0.002)


async def _serve_through_a_start(pool: Pool) -> FakeProcess:
    """One request that starts a new instance, served and released; its process."""
    client = asyncio.ensure_future(pool.acquire())
    await settle()
    process = FakeProcess.made[-1]
    process.finish_start()
    pool.release(await client)
    return process


async def _asleep(pool: Pool) -> FakeProcess:
    """Serve one request on a new instance and wait until it is runtime-warm."""
    process = await _serve_through_a_start(pool)
    await eventually(lambda: bool(pool.instances) and pool.instances[0].state is S.SLEEPING,
                     "the instance to go runtime-warm")
    await settle()
    return process


async def _sleep_wake_and_expire() -> None:
    """ready -> sleeping -> waking -> ready, then sleeping -> draining at the
    runtime-warm TTL."""
    pool = make_pool("tiered", loaded_ttl_s=0.005, runtime_warm_s=0.05)
    process = await _asleep(pool)
    client = asyncio.ensure_future(pool.acquire())
    await settle()
    process.finish_wake()
    pool.release(await client)
    await eventually(lambda: pool.instances == [], "the runtime-warm TTL to stop it")
    await pool.shutdown()


async def _sleeping_instance_dies() -> None:
    """sleeping -> failed."""
    pool = make_pool("tiered", **TIERED)
    process = await _asleep(pool)
    process.die()
    await settle()
    assert pool.instances == []
    await pool.shutdown()


async def _wake_fails() -> None:
    """waking -> failed; the waiting request hears why."""
    pool = make_pool("tiered", **TIERED)
    process = await _asleep(pool)
    client = asyncio.ensure_future(pool.acquire())
    await settle()
    process.finish_wake("no memory for the weights")
    with pytest.raises(PoolError, match="wake failed: no memory for the weights"):
        await client
    await pool.shutdown()


async def _shutdown_while_waking() -> None:
    """waking -> draining -> stopped; the waiter is told the gateway shuts down."""
    pool = make_pool("tiered", **TIERED)
    await _asleep(pool)
    client = asyncio.ensure_future(pool.acquire())
    await settle()
    assert pool.instances[0].state is S.WAKING
    await pool.shutdown()
    with pytest.raises(PoolError, match="shutting down"):
        await client


def test_every_allowed_transition_is_taken_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with fake_pool_world() as (tried, _), mock.patch.object(FakeProcess, "supports_sleep", True):
        for scenario in (_serve_then_scale_to_zero, _start_fails, _ready_instance_dies,
                         _shutdown_during_start, _sleep_wake_and_expire,
                         _sleeping_instance_dies, _wake_fails, _shutdown_while_waking):
            asyncio.run(scenario())
    allowed = {(old, new) for old, targets in ALLOWED.items() for new in targets}
    taken = {(old, new) for _, old, new, _ in tried}
    assert taken == allowed
    logged = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert logged == [message for *_, message in tried]
    assert "dep i1: starting -> ready (ready)" in logged
    assert "dep i1: ready -> draining (no_inflight)" in logged
    assert "dep i1: starting -> draining (shutdown)" in logged
    assert "dep i1: ready -> sleeping (idle_ttl)" in logged
    assert "dep i1: sleeping -> waking (on_demand)" in logged
    assert "dep i1: sleeping -> draining (runtime_warm_ttl)" in logged
    assert "dep i1: waking -> draining (shutdown)" in logged


def test_disallowed_transition_raises_and_changes_nothing() -> None:
    async def scenario() -> None:
        pool = make_pool("naive")
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        inst = pool.instances[0]
        with pytest.raises(InvalidTransition, match="starting -> stopped"):
            pool._transition(inst, S.STOPPED, Lifecycle.STOPPED)
        assert inst.state is S.STARTING
        assert [e.event for e in pool.events.events] == ["spawn"]
        FakeProcess.made[-1].finish_start()
        pool.release(await client)
        await settle()
        with pytest.raises(InvalidTransition, match="stopped -> ready"):
            pool._transition(inst, S.READY)
        await pool.shutdown()

    with fake_pool_world():
        asyncio.run(scenario())
    assert not ALLOWED[S.STOPPED] and not ALLOWED[S.FAILED]  # both final


# --------------------------------------------------- randomized sequences

POLICIES = [
    ("naive", {}),
    ("naive", {"max_instances": 3}),
    ("keep_warm", {"keep_warm_ttl_s": 0.002}),
    ("keep_warm", {"keep_warm_ttl_s": 0.0, "max_instances": 2}),
    ("always_on", {}),
    ("always_on", {"max_instances": 2}),
    # Learns after two idle times of a few ms: unloads, then pre-warms.
    ("hybrid_histogram", {"bin_width_s": 0.001, "range_s": 0.03, "min_samples": 2,
                          "head_percentile": 50, "cv_threshold": 0.5,
                          "fallback_ttl_s": 0.002}),
    # Runtime-warm after 2 ms idle, stopped 5 ms later (its processes can sleep).
    ("tiered", {"loaded_ttl_s": 0.002, "runtime_warm_s": 0.005, "max_instances": 2}),
    ("tiered", {"loaded_ttl_s": 0.0, "runtime_warm_s": 0.05, "min_instances": 1}),
]
ACTIONS = st.one_of(
    st.tuples(st.just("request"), st.integers(0, 3)),
    st.just(("ready",)),
    st.just(("fail",)),
    st.just(("wake",)),
    st.just(("wake_fail",)),
    st.tuples(st.just("die"), st.integers(0, 5)),
    st.just(("tick",)),
)


async def _drive(policy: str, params: dict[str, Any], actions: list[tuple[Any, ...]],
                 start_first: bool) -> Pool:
    pool = make_pool(policy, **params)
    clients: list[asyncio.Task[None]] = []

    async def client(hold_ticks: int) -> None:
        try:
            lease = await pool.acquire()
        except PoolError:
            return
        for _ in range(hold_ticks):
            await asyncio.sleep(0.001)
        pool.release(lease)

    if start_first:
        await pool.start()
    for action in actions:
        match action:
            case ("request", hold):
                clients.append(asyncio.ensure_future(client(hold)))
            case ("ready",):
                if pending_starts():
                    pending_starts()[0].finish_start()
            case ("fail",):
                if pending_starts():
                    pending_starts()[0].finish_start("simulated start failure")
            case ("wake",) | ("wake_fail",):
                waking = [p for p in FakeProcess.made if p.woken is not None
                          and not p.woken.done() and not p.exited.done()]
                if waking:
                    waking[0].finish_wake(None if action == ("wake",) else "simulated")
            case ("die", which):
                up = [i for i in pool.instances
                      if i.state in (S.READY, S.SLEEPING, S.WAKING)]
                if up:
                    up[which % len(up)].process.die()
            case ("tick",):
                await asyncio.sleep(0.003)
        await settle(3)
    await pool.shutdown()
    await settle()
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    return pool


def _check_run(pool: Pool, tried: list[tuple[str, S, S, str]], logged: list[str]) -> None:
    invalid = [t for t in tried if t[2] not in ALLOWED[t[1]]]
    assert not invalid
    assert logged == [message for *_, message in tried]  # each change logged, in order
    assert pool.instances == []  # after shutdown every instance reached a final state
    # The events' state column follows the same transitions.
    states: dict[str, S] = {}
    for event in pool.events.events:
        new = S(event.state)
        old = states.get(event.instance_id, S.STARTING)
        assert new is old or new in ALLOWED[old], (event, old)
        states[event.instance_id] = new
    assert all(state in (S.STOPPED, S.FAILED) for state in states.values()), states


@settings(max_examples=80, deadline=None)
@given(policy=st.sampled_from(POLICIES), actions=st.lists(ACTIONS, max_size=30),
       start_first=st.booleans())
def test_random_sequences_take_only_allowed_logged_transitions(
    policy: tuple[str, dict[str, Any]], actions: list[tuple[Any, ...]], start_first: bool,
) -> None:
    with fake_pool_world() as (tried, handler), \
            mock.patch.object(FakeProcess, "supports_sleep", True):
        pool = asyncio.run(_drive(*policy, actions, start_first))
    _check_run(pool, tried, handler.messages)


def test_seeded_long_sequences() -> None:
    """Longer runs than the property test draws, from fixed seeds."""
    kinds = [("request", 0), ("request", 2), ("ready",), ("fail",), ("die", 0), ("tick",),
             ("wake",), ("wake_fail",)]
    for seed in range(2 * len(POLICIES)):
        rng = random.Random(seed)
        actions = [rng.choice(kinds) for _ in range(120)]
        policy = POLICIES[seed % len(POLICIES)]
        with fake_pool_world() as (tried, handler), \
                mock.patch.object(FakeProcess, "supports_sleep", True):
            pool = asyncio.run(_drive(*policy, actions, start_first=True))
        _check_run(pool, tried, handler.messages)
        assert len(tried) > 3


# ------------------------------------------------------------------ pre-warm


@dataclasses.dataclass
class PrewarmAfter(Policy):
    """Unload when idle; pre-warm ``delay_s`` after the idle period began, then keep it."""

    name = "test_prewarm_after"
    delay_s: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        self.idle_at_s: float | None = None

    def on_arrival(self, now_s: float) -> None:
        self.idle_at_s = None

    def on_idle(self, now_s: float) -> None:
        self.idle_at_s = now_s

    def idle_ttl_s(self, now_s: float) -> float | None:
        if self.idle_at_s is not None and now_s < self.idle_at_s + self.delay_s:
            return 0.0
        return None

    def prewarm_at_s(self, now_s: float) -> float | None:
        if self.idle_at_s is None or now_s >= self.idle_at_s + self.delay_s:
            return None
        return self.idle_at_s + self.delay_s


async def _served_once(pool: Pool) -> float:
    """One request on a fresh instance; returns when it was released (the idle start)."""
    client = asyncio.ensure_future(pool.acquire())
    await settle()
    FakeProcess.made[-1].finish_start()
    lease = await client
    pool.release(lease)
    released_at = time.monotonic()
    await settle()
    return released_at


def _spawn_reasons(pool: Pool) -> list[tuple[str, str]]:
    return [(e.instance_id, e.reason) for e in pool.events.events if e.event == "spawn"]


def test_prewarm_starts_at_the_asked_time_with_reason_prewarm() -> None:
    async def scenario() -> None:
        pool = make_pool("test_prewarm_after")
        released_at = await _served_once(pool)
        assert pool.instances == []  # unloaded at once
        assert pool._prewarm_handle is not None
        await asyncio.sleep(0.08)
        assert _spawn_reasons(pool) == [("i1", Reason.ON_DEMAND), ("i2", Reason.PREWARM)]
        spawn = pool.events.events[-1]
        assert spawn.t_s >= released_at + 0.05 - 0.005  # the loop's timer resolution
        FakeProcess.made[-1].finish_start()
        await settle()
        # Ready past the pre-warm time: kept (TTL None), no new pre-warm asked for.
        assert [i.state for i in pool.instances] == [S.READY]
        assert pool._prewarm_handle is None
        lease = await pool.acquire()  # served warm
        assert not lease.cold
        pool.release(lease)
        await pool.shutdown()
        assert pool._prewarm_handle is None and not pool._tasks

    with fake_pool_world(), registered(PrewarmAfter):
        asyncio.run(scenario())


def test_an_arrival_cancels_the_pending_prewarm() -> None:
    async def scenario() -> None:
        pool = make_pool("test_prewarm_after")
        await _served_once(pool)
        assert pool._prewarm_handle is not None
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        assert pool._prewarm_handle is None
        await asyncio.sleep(0.08)
        assert _spawn_reasons(pool) == [("i1", Reason.ON_DEMAND), ("i2", Reason.ON_DEMAND)]
        FakeProcess.made[-1].finish_start()
        pool.release(await client)
        await pool.shutdown()

    with fake_pool_world(), registered(PrewarmAfter):
        asyncio.run(scenario())


def test_shutdown_cancels_the_pending_prewarm_and_leaves_no_task() -> None:
    async def scenario() -> None:
        pool = make_pool("test_prewarm_after")
        await _served_once(pool)
        assert pool._prewarm_handle is not None
        await pool.shutdown()
        assert pool._prewarm_handle is None
        await asyncio.sleep(0.08)
        assert _spawn_reasons(pool) == [("i1", Reason.ON_DEMAND)]
        assert pool.instances == [] and not pool._tasks

    with fake_pool_world(), registered(PrewarmAfter):
        asyncio.run(scenario())


def test_prewarm_respects_max_instances_and_a_free_instance() -> None:
    async def scenario() -> None:
        pool = make_pool("test_prewarm_after", max_instances=1)
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        FakeProcess.made[-1].finish_start()
        lease = await client
        pool._prewarm_due()  # busy, and at max_instances: nothing starts
        assert len(pool.instances) == 1
        pool.release(lease)
        await settle()
        assert pool.instances == []
        pool._cancel_prewarm()
        roomy = make_pool("test_prewarm_after", max_instances=2)
        await roomy.start()
        client = asyncio.ensure_future(roomy.acquire())
        await settle()
        FakeProcess.made[-1].finish_start()
        lease = await client
        roomy._prewarm_due()  # busy, but below max_instances: a second one starts
        assert [i.start_reason for i in roomy.instances] == [Reason.ON_DEMAND, Reason.PREWARM]
        roomy._prewarm_due()  # one start at a time
        assert len(roomy.instances) == 2
        roomy.release(lease)
        await pool.shutdown()
        await roomy.shutdown()
        assert not pool._tasks and not roomy._tasks

    with fake_pool_world(), registered(PrewarmAfter):
        asyncio.run(scenario())


def test_hybrid_histogram_unloads_and_prewarms_in_the_pool() -> None:
    """Idle times of ~30 ms in 10 ms bins: after two, the pool unloads and pre-warms."""
    async def scenario() -> None:
        pool = make_pool("hybrid_histogram", bin_width_s=0.01, range_s=1.0, min_samples=2,
                         margin_pct=0, fallback_ttl_s=5.0)
        await _served_once(pool)
        for _ in range(2):
            await asyncio.sleep(0.035)
            lease = await pool.acquire()  # the fallback kept the instance: warm
            pool.release(lease)
            await settle()
        assert pool.instances == []  # representative now: unloaded at once
        assert pool._prewarm_handle is not None
        await asyncio.sleep(0.15)  # past the pre-warm time (30 to 50 ms), with slack
        assert _spawn_reasons(pool)[-1] == ("i2", Reason.PREWARM)
        await pool.shutdown()
        assert not pool._tasks

    with fake_pool_world():
        asyncio.run(scenario())


def test_the_pool_reads_only_its_clock_and_makes_processes_with_its_factory() -> None:
    """Every decision and event is on the injected clock (the simulator's virtual one)."""
    ticks = iter(range(1000, 2000))
    made: list[str] = []

    def factory(instance_id: str, spec: InstanceSpec) -> FakeProcess:
        made.append(instance_id)
        return FakeProcess(instance_id, spec)

    async def scenario() -> None:
        spec = InstanceSettings().spec(Path("fake.gguf"), "fake", device="cpu", gpu_index=None,
                                       log_dir=None)
        limits = QueueSettings(cold_start_timeout_s=5.0, queue_timeout_s=5.0).pool_limits()
        pool = Pool("dep", spec, make_policy("naive"), limits, EventLog(),
                    clock=lambda: float(next(ticks)), process_factory=factory)
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        FakeProcess.made[-1].finish_start()
        lease = await client
        assert lease.arrived_at_s >= 1000 and lease.granted_at_s > lease.arrived_at_s
        pool.release(lease)
        await settle()
        await pool.shutdown()
        # spawn and ready come from the process (its own clock); the pool's own events
        # (drain, stopped) from the injected one.
        own = [e for e in pool.events.events if e.event in ("drain", "stopped")]
        assert [e.event for e in own] == ["drain", "stopped"]
        assert all(1000 <= e.t_s < 2000 for e in own)

    FakeProcess.made = []
    asyncio.run(scenario())
    assert made == ["i1"]


# -------------------------------------------------------------- runtime-warm tier


def _events(pool: Pool, *names: str) -> list[tuple[str, str, str, str]]:
    return [(e.instance_id, e.event, e.reason, e.tier) for e in pool.events.events
            if not names or e.event in names]


def test_a_sleeping_instance_is_woken_instead_of_a_start() -> None:
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED, max_instances=2)
        process = await _asleep(pool)
        assert process.sleeps == 1 and pool.snapshot()["sleeping"] == 1
        assert pool.snapshot()["instances"][0]["state"] == "sleeping"
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        assert pool.snapshot()["waking"] == 1
        assert len(FakeProcess.made) == 1  # no process start: max_instances allowed one
        process.finish_wake()
        lease = await client
        assert lease.cold and lease.start_tier == "runtime_warm"
        assert not lease.first_of_instance
        assert (pool.wakes, pool.cold_starts) == (1, 1)
        assert pool.snapshot()["instances"][0]["tier"] == "runtime_warm"
        # A request that finds it ready is served "loaded".
        pool.release(lease)
        second = await pool.acquire()
        assert not second.cold and second.start_tier == "loaded"
        pool.release(second)
        await pool.shutdown()
        assert _events(pool, "spawn", "sleep", "wake", "ready") == [
            ("i1", "spawn", "on_demand", "host_cached"),
            ("i1", "ready", "", ""),
            ("i1", "sleep", "idle_ttl", ""),
            ("i1", "wake", "on_demand", "runtime_warm"),
            ("i1", "ready", "", ""),
        ]

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())


def test_the_first_lease_carries_the_start_tier_of_the_process() -> None:
    async def scenario() -> None:
        pool = make_pool("naive")
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        FakeProcess.made[-1].finish_start()
        lease = await client
        assert lease.cold and lease.start_tier == "disk_cold"
        pool.release(lease)
        await pool.shutdown()
        assert _events(pool, "spawn") == [("i1", "spawn", "on_demand", "disk_cold")]

    with fake_pool_world(), mock.patch.object(FakeProcess, "start_tier", "disk_cold"):
        asyncio.run(scenario())


def test_a_start_waits_for_a_busy_instance_to_be_woken_not_started() -> None:
    """max_instances counts the sleeping instance: with one busy and one sleeping at
    max_instances 2, a waiter wakes the sleeping one; with none sleeping it starts one."""
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED, max_instances=2)
        sleeper = await _asleep(pool)
        busy_client = asyncio.ensure_future(pool.acquire())
        await settle()
        sleeper.finish_wake()
        busy = await busy_client  # i1 woken and busy
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        assert len(FakeProcess.made) == 2  # i1 busy, nothing sleeping: a start
        FakeProcess.made[-1].finish_start()
        lease = await client
        assert lease.start_tier == "host_cached"
        pool.release(lease)
        pool.release(busy)
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())


def test_max_instances_counts_sleeping_instances() -> None:
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED, max_instances=1)
        await _asleep(pool)
        assert len(pool._live()) == 1
        pool._dispatch()  # no waiter: nothing happens
        assert len(FakeProcess.made) == 1
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())


def test_min_instances_counts_only_ready_instances() -> None:
    """Of two idle instances at min_instances 1, one goes runtime-warm, one stays ready."""
    async def scenario() -> None:
        pool = make_pool("tiered", loaded_ttl_s=0.005, runtime_warm_s=30.0,
                         min_instances=1, max_instances=2)
        await pool.start()
        await settle()
        FakeProcess.made[-1].finish_start()
        await settle()
        first = await pool.acquire()
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        FakeProcess.made[-1].finish_start()
        second = await client
        pool.release(first)
        pool.release(second)
        await eventually(lambda: sorted(str(i.state) for i in pool.instances) == [
            "ready", "sleeping"], "one instance to go runtime-warm")
        await asyncio.sleep(0.02)  # past the other's TTL too: it stays ready
        assert sorted(str(i.state) for i in pool.instances) == ["ready", "sleeping"]
        # The ready one dies: the minimum is met again by waking the sleeping one.
        next(i for i in pool.instances if i.state is S.READY).process.die()
        await settle()
        assert [str(i.state) for i in pool.instances] == ["waking"]
        assert _events(pool, "wake")[-1][2] == "min_instances"
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())


def test_without_sleep_support_the_tier_is_skipped() -> None:
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED)
        await _serve_through_a_start(pool)
        await eventually(lambda: pool.instances == [], "the idle stop")
        assert FakeProcess.made[-1].sleeps == 0
        assert [(e.event, e.reason) for e in pool.events.events][-2:] == [
            ("drain", "idle_ttl"), ("stopped", "idle_ttl")]
        await pool.shutdown()

    with fake_pool_world():
        asyncio.run(scenario())


def test_a_failed_sleep_stops_the_instance_as_an_idle_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED)
        await _serve_through_a_start(pool)
        await eventually(lambda: pool.instances == [], "the idle stop")
        assert FakeProcess.made[-1].sleeps == 1
        assert [(e.event, e.state, e.reason) for e in pool.events.events][-3:] == [
            ("sleep", "sleeping", "idle_ttl"), ("drain", "draining", "idle_ttl"),
            ("stopped", "stopped", "idle_ttl")]
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True), \
            mock.patch.object(FakeProcess, "sleep_error", "cannot unload"):
        asyncio.run(scenario())
    assert any("cannot unload" in r.getMessage() for r in caplog.records)


def test_a_died_sleeping_instance_is_replaced_by_a_start() -> None:
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED)
        process = await _asleep(pool)
        process.die(9)
        await settle()
        assert _events(pool, "died") == [("i1", "died", "crash", "")]
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        assert [i.instance_id for i in pool.instances] == ["i2"]
        FakeProcess.made[-1].finish_start()
        pool.release(await client)
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())


def test_a_waking_instance_that_dies_fails_its_waiters() -> None:
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED)
        process = await _asleep(pool)
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        process.die(9)
        with pytest.raises(PoolError, match="died while waking") as caught:
            await client
        assert caught.value.status_code == 503
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())


def test_the_new_states_refuse_what_is_not_allowed() -> None:
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED)
        client = asyncio.ensure_future(pool.acquire())
        await settle()
        inst = pool.instances[0]
        with pytest.raises(InvalidTransition, match="starting -> sleeping"):
            pool._transition(inst, S.SLEEPING)
        with pytest.raises(InvalidTransition, match="starting -> waking"):
            pool._transition(inst, S.WAKING)
        FakeProcess.made[-1].finish_start()
        pool.release(await client)
        await eventually(lambda: inst.state is S.SLEEPING, "the instance to go runtime-warm")
        with pytest.raises(InvalidTransition, match="sleeping -> ready"):
            pool._transition(inst, S.READY)
        with pytest.raises(InvalidTransition, match="sleeping -> stopped"):
            pool._transition(inst, S.STOPPED)
        assert inst.state is S.SLEEPING
        waiting = asyncio.ensure_future(pool.acquire())
        await settle()
        with pytest.raises(InvalidTransition, match="waking -> sleeping"):
            pool._transition(inst, S.SLEEPING)
        with pytest.raises(InvalidTransition, match="waking -> stopped"):
            pool._transition(inst, S.STOPPED)
        assert inst.state is S.WAKING
        FakeProcess.made[-1].finish_wake()
        pool.release(await waiting)
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())


def test_eviction_of_a_sleeping_instance_drains_it() -> None:
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED)
        await _asleep(pool)
        inst = pool.instances[0]
        pool.evict(inst)
        await settle()
        assert pool.instances == [] and pool.evictions == 1
        assert _events(pool, "drain") == [("i1", "drain", "evicted", "")]
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())


def test_a_prewarm_wakes_a_sleeping_instance() -> None:
    async def scenario() -> None:
        pool = make_pool("tiered", **TIERED)
        await _asleep(pool)
        pool._schedule_prewarm(pool.now(), pool.now())
        await eventually(lambda: bool(_events(pool, "wake")), "the pre-warm's wake")
        assert _events(pool, "wake") == [("i1", "wake", "prewarm", "runtime_warm")]
        assert len(FakeProcess.made) == 1
        await pool.shutdown()

    with fake_pool_world(), mock.patch.object(FakeProcess, "supports_sleep", True):
        asyncio.run(scenario())
