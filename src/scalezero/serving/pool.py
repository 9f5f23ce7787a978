"""The instance pool: instance states, the activator queue and the policy's decisions.

Instance states (one screen, as promised):

    starting --ready--> ready --policy says stop--> draining --process exited--> stopped
        |   |             |                            ^
        |   |             +--died--> failed            |
        |   +--start failed--------> failed            |
        +--gateway shutdown during the start-----------+ (draining, then stopped)

    ready --idle TTL over, runtime-warm wanted--> sleeping --a request--> waking --ready--> ready
    sleeping --runtime-warm TTL, eviction, shutdown, or sleep() failed--> draining
    sleeping --died--> failed          waking --gateway shutdown--> draining
                                       waking --died, or wake failed--> failed

``sleeping`` is the runtime-warm tier (process up, llama.cpp initialised, model unloaded;
``Policy.runtime_warm_ttl_s``, only for processes that ``supports_sleep``); ``waking``
reloads the model, much faster than a process start. A waiter with no free ready instance
wakes a sleeping instance (nothing starting or waking) before it starts a process;
``max_instances`` counts sleeping and waking instances, ``min_instances`` only ready ones.

``ALLOWED`` lists these transitions; ``Pool._transition`` is the only place a state
changes, refuses any other change (``InvalidTransition``) and logs each one at DEBUG.

Requests never talk to an instance directly: ``acquire`` hands out a lease on a ready
instance with a free slot, or queues the request. A queued request at zero instances
triggers exactly one cold start (one start at a time per deployment, as Knative's
activator does); everyone queued waits for it. Waiting is bounded: a full queue answers
429, a wait past its deadline 504, a failed start 503 with the reason.

A policy may also ask for a start ahead of demand (``Policy.prewarm_at_s``, asked when an
instance goes idle): the pool keeps one such timer per deployment, replaced by the next
decision, cancelled by an arrival and by shutdown, and starts with reason ``prewarm``
only when no instance is starting or free and ``max_instances`` allows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from scalezero.serving.events import TIER_LOADED, TIER_RUNTIME_WARM, EventLog, Lifecycle, Reason
from scalezero.serving.launcher import (
    InstanceProcess,
    InstanceSpec,
    InstanceStartError,
    PhaseCallback,
)
from scalezero.serving.strategies.base import Policy


class InstanceHandle(Protocol):
    """What the pool uses of an instance's process (``launcher.InstanceProcess``; the
    simulator's stand-in has the same)."""

    @property
    def pid(self) -> int | None: ...

    spec: InstanceSpec
    port: int
    proc: Any
    phase_times: dict[str, float]

    async def spawn(self, on_phase: PhaseCallback) -> None: ...

    async def wait_ready(self) -> float: ...

    async def wait_exit(self) -> int: ...

    async def stop(self) -> int | None: ...

    def failure_reason(self) -> str: ...

    #: Set by ``spawn``: what the start began from (``host_cached`` or ``disk_cold``).
    start_tier: str

    @property
    def supports_sleep(self) -> bool:
        """False: the pool never puts this instance runtime-warm."""
        ...

    async def sleep(self) -> None:
        """Unload the model, keep the process; raises on failure."""

    async def wake(self) -> float:
        """Reload the model; return when it is ready again, on the pool's clock. Raises
        ``InstanceStartError`` on failure."""
        ...


class Admission(Protocol):
    """Admission control shared by pools (``budget.MemoryBudget``): asked before every
    start, told of arrivals and of instances that went idle, became ready or stopped."""

    def admit(self, pool: Pool, inst: Instance) -> Awaitable[None]: ...

    def arrival(self, pool: Pool, t_s: float) -> None: ...

    def changed(self, pool: Pool, inst: Instance | None = None) -> None: ...


#: Makes the process of a new instance: (instance id, spec) -> handle.
ProcessFactory = Callable[[str, InstanceSpec], InstanceHandle]


class InstanceState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    SLEEPING = "sleeping"  # runtime-warm: process up, model unloaded
    WAKING = "waking"  # reloading the model of a sleeping instance
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


#: Every state change the pool makes; stopped and failed are final.
ALLOWED: dict[InstanceState, frozenset[InstanceState]] = {
    InstanceState.STARTING: frozenset(
        {InstanceState.READY, InstanceState.FAILED, InstanceState.DRAINING}),
    InstanceState.READY: frozenset(
        {InstanceState.DRAINING, InstanceState.FAILED, InstanceState.SLEEPING}),
    InstanceState.SLEEPING: frozenset(
        {InstanceState.WAKING, InstanceState.DRAINING, InstanceState.FAILED}),
    InstanceState.WAKING: frozenset(
        {InstanceState.READY, InstanceState.FAILED, InstanceState.DRAINING}),
    InstanceState.DRAINING: frozenset({InstanceState.STOPPED}),
    InstanceState.STOPPED: frozenset(),
    InstanceState.FAILED: frozenset(),
}

log = logging.getLogger(__name__)


class InvalidTransition(RuntimeError):
    """The pool tried a state change that ``ALLOWED`` does not list: a bug in the pool."""


class PoolError(Exception):
    """A request could not be given an instance. Carries the HTTP answer."""

    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class QueueFull(PoolError):
    status_code = 429
    error_type = "rate_limit_exceeded"


class WaitTimeout(PoolError):
    status_code = 504
    error_type = "timeout"


class StartFailed(PoolError):
    status_code = 503
    error_type = "instance_start_failed"


class ShuttingDown(PoolError):
    status_code = 503
    error_type = "shutting_down"


@dataclasses.dataclass
class PoolLimits:
    """Bounds on waiting; built by ``QueueSettings.pool_limits``, where the defaults are."""

    #: Requests allowed to wait for an instance at once; one more gets 429.
    max_queue: int
    #: Longest wait for an instance that is still starting (504 after).
    cold_start_timeout_s: float
    #: Longest wait for a busy ready instance (504 after).
    queue_timeout_s: float
    #: Requests one instance serves at once (llama-cpp-python's server runs one at a time).
    instance_concurrency: int
    #: After a request to an instance breaks off, how long to wait for its process to exit
    #: before concluding it is still alive (a one-off network error).
    failure_check_s: float


@dataclasses.dataclass(eq=False)
class Instance:
    instance_id: str
    process: InstanceHandle
    start_reason: Reason
    state: InstanceState = InstanceState.STARTING
    spawned_at_s: float | None = None
    ready_at_s: float | None = None
    idle_since_s: float | None = None
    in_flight: int = 0
    served: int = 0
    idle_handle: asyncio.TimerHandle | None = None
    #: Tier of its last start or wake (events.csv ``tier``): host_cached, disk_cold or
    #: runtime_warm; "" before its spawn.
    tier: str = ""
    #: Its model is unloaded: runtime-warm, or waking (until ready), or draining from there.
    unloaded: bool = False
    #: The unload under way (``process.sleep``), which a wake waits for.
    sleep_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def describe(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "state": str(self.state),
            "pid": self.pid,
            "port": self.process.port,
            "in_flight": self.in_flight,
            "served": self.served,
            "start_reason": str(self.start_reason),
            "spawned_at_s": self.spawned_at_s,
            "ready_at_s": self.ready_at_s,
            "idle_since_s": self.idle_since_s,
            "tier": self.tier,
            "phases": dict(self.process.phase_times),
        }


@dataclasses.dataclass
class Lease:
    """The right to send one request to one instance; give it back with ``Pool.release``."""

    instance: Instance
    arrived_at_s: float
    granted_at_s: float
    #: The request waited for an instance that became ready after it arrived.
    cold: bool
    #: First request this instance serves (its first token ends the cold start's anatomy).
    first_of_instance: bool
    #: ``loaded`` when the instance was ready when the request arrived, else the tier of
    #: the start or wake it waited for (host_cached, disk_cold, runtime_warm).
    start_tier: str = TIER_LOADED

    @property
    def queue_wait_s(self) -> float:
        return self.granted_at_s - self.arrived_at_s


@dataclasses.dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[Lease]
    arrived_at_s: float


class Pool:
    """Instances of one deployment (one model) under one policy."""

    def __init__(
        self,
        deployment: str,
        spec: InstanceSpec,
        policy: Policy,
        limits: PoolLimits,
        events: EventLog | None = None,
        on_cold_start: Callable[[float], None] | None = None,
        *,
        clock: Callable[[], float] | None = None,
        process_factory: ProcessFactory | None = None,
        id_prefix: str = "",
    ) -> None:
        """``clock`` (default ``time.monotonic``) is the time of every decision and event;
        it must run with the event loop's timers (the simulator passes its virtual loop's
        ``time``). ``process_factory`` (default ``InstanceProcess``) makes instance processes.
        ``id_prefix`` goes before each instance id (several pools share one events log)."""
        self.deployment = deployment
        self.spec = spec
        self.policy = policy
        self.limits = limits
        self.events = events or EventLog()
        self.on_cold_start = on_cold_start
        # Not the event loop's time(): uvloop's has millisecond resolution.
        self._clock = time.monotonic if clock is None else clock
        self._process_factory = process_factory
        self._id_prefix = id_prefix
        self.instances: list[Instance] = []
        self.cold_starts = 0
        #: Runtime-warm instances woken and ready again.
        self.wakes = 0
        self.start_failures = 0
        self.evictions = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._next_id = 1
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._min_start_failed = False
        #: Instances wanted up at the gateway's start, until that many were ready once.
        self._initial_instances = 0
        #: The one pending pre-warm start the policy asked for (``Policy.prewarm_at_s``).
        self._prewarm_handle: asyncio.TimerHandle | None = None
        #: Asked before each start when set (a memory budget shared with other pools).
        self.admission: Admission | None = None

    # ----------------------------------------------------------------- queries
    def now(self) -> float:
        """The pool's clock (the time of its decisions and events)."""
        return self._clock()

    def _in_state(self, *states: InstanceState) -> list[Instance]:
        return [inst for inst in self.instances if inst.state in states]

    def _free_instance(self) -> Instance | None:
        for inst in self._in_state(InstanceState.READY):
            if inst.in_flight < self.limits.instance_concurrency:
                return inst
        return None

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        return sum(inst.in_flight for inst in self.instances)

    def snapshot(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "policy": self.policy.params(),
            "instances": [inst.describe() for inst in self.instances],
            "ready": len(self._in_state(InstanceState.READY)),
            "starting": len(self._in_state(InstanceState.STARTING)),
            "sleeping": len(self._in_state(InstanceState.SLEEPING)),
            "waking": len(self._in_state(InstanceState.WAKING)),
            "queue_depth": self.queue_depth,
            "in_flight": self.in_flight,
            "cold_starts": self.cold_starts,
            "wakes": self.wakes,
            "start_failures": self.start_failures,
            "evictions": self.evictions,
            "limits": dataclasses.asdict(self.limits),
        }

    # --------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the instances the policy wants before any request (always-on)."""
        self._initial_instances = self.policy.initial_instances()
        self._ensure_min_instances()

    async def shutdown(self) -> None:
        self._closing = True
        self._cancel_prewarm()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(ShuttingDown("the gateway is shutting down"))
        stops = []
        for inst in list(self.instances):
            if inst.state in (InstanceState.STOPPED, InstanceState.FAILED):
                continue
            self._cancel_idle(inst)
            if inst.state is not InstanceState.DRAINING:
                self._transition(inst, InstanceState.DRAINING, Lifecycle.DRAIN, Reason.SHUTDOWN)
            stops.append(self._stop(inst, Reason.SHUTDOWN))
        await asyncio.gather(*stops, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------- activator
    async def acquire(self) -> Lease:
        """Wait for a slot on a ready instance (starting one if needed)."""
        if self._closing:
            raise ShuttingDown("the gateway is shutting down")
        now = self._clock()
        self.policy.on_arrival(now)
        if self.admission is not None:
            self.admission.arrival(self, now)
        self._cancel_prewarm()  # the request itself decides whether to start one now
        inst = self._free_instance()
        if inst is not None and not self._waiters:
            return self._assign(inst, now)
        if len(self._waiters) >= self.limits.max_queue:
            raise QueueFull(
                f"{len(self._waiters)} requests are already waiting for {self.deployment!r}",
                retry_after_s=self._retry_after_s(),
            )
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), now)
        self._waiters.append(waiter)
        warm_exists = bool(self._in_state(InstanceState.READY))
        self._dispatch()
        timeout_s = self.limits.queue_timeout_s if warm_exists else self.limits.cold_start_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout_s)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                return waiter.future.result()  # granted in the same tick as the timeout
            self._forget(waiter)
            what = "a busy instance" if warm_exists else "the instance to start"
            raise WaitTimeout(f"waited {timeout_s:g} s for {what}") from None
        except asyncio.CancelledError:
            # The client went away: give back a slot that was granted meanwhile.
            if waiter.future.done() and not waiter.future.cancelled():
                if waiter.future.exception() is None:
                    self.release(waiter.future.result())
            else:
                self._forget(waiter)
            raise

    def release(self, lease: Lease) -> None:
        inst = lease.instance
        inst.in_flight -= 1
        if inst.in_flight == 0:
            inst.idle_since_s = self._clock()
            if self.in_flight == 0 and not self._waiters:
                self.policy.on_idle(inst.idle_since_s)
            if self.admission is not None:
                self.admission.changed(self, inst)
        if inst.state is InstanceState.DRAINING and inst.in_flight == 0:
            self._spawn_task(self._stop(inst, Reason.DRAINED))
        elif inst.state is InstanceState.READY:
            self._dispatch()
            if inst.in_flight == 0:
                self._consider_idle(inst)

    async def request_failed(self, lease: Lease) -> None:
        """A request to the lease's instance broke off (connection reset or refused).

        If its process is exiting, take the instance out of service now, before the client
        hears of the failure: the exit watcher would notice a moment later, and a retry sent
        in that moment would go to the dead instance.
        """
        inst = lease.instance
        proc = inst.process.proc
        if inst.state is not InstanceState.READY or proc is None:
            return
        try:
            code = await asyncio.wait_for(proc.wait(), self.limits.failure_check_s)
        except TimeoutError:
            return
        self._instance_died(inst, code)

    def first_token(self, lease: Lease, t_s: float) -> None:
        """The first token of an instance's first request left it: the cold start is over."""
        if lease.first_of_instance:
            self._record(lease.instance, Lifecycle.FIRST_TOKEN, t_s=t_s)

    def _forget(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _retry_after_s(self) -> float:
        # A rough drain time; clients only need an order of magnitude.
        return float(max(1, math.ceil(len(self._waiters) * 0.1)))

    def _assign(self, inst: Instance, arrived_at_s: float) -> Lease:
        self._cancel_idle(inst)
        inst.in_flight += 1
        inst.idle_since_s = None
        first = inst.served == 0
        inst.served += 1
        ready_at = inst.ready_at_s if inst.ready_at_s is not None else math.inf
        cold = ready_at >= arrived_at_s
        return Lease(
            instance=inst,
            arrived_at_s=arrived_at_s,
            granted_at_s=self._clock(),
            cold=cold,
            first_of_instance=first,
            start_tier=inst.tier if cold else TIER_LOADED,
        )

    def _dispatch(self) -> None:
        """Hand free slots to waiters in arrival order; start an instance if they need one."""
        while self._waiters:
            inst = self._free_instance()
            if inst is None:
                break
            waiter = self._waiters.popleft()
            if waiter.future.done():
                continue
            waiter.future.set_result(self._assign(inst, waiter.arrived_at_s))
        if self._waiters and not self._closing:
            self._scale_up(Reason.ON_DEMAND)

    def _live(self) -> list[Instance]:
        """Instances that count against ``max_instances``."""
        return self._in_state(InstanceState.STARTING, InstanceState.READY,
                              InstanceState.SLEEPING, InstanceState.WAKING)

    def _scale_up(self, reason: Reason) -> None:
        """One more instance, when none is starting or waking: wake a runtime-warm one if
        there is one, else start a process if ``max_instances`` allows."""
        if self._in_state(InstanceState.STARTING, InstanceState.WAKING):
            return
        sleeping = self._in_state(InstanceState.SLEEPING)
        if sleeping:
            self._wake(sleeping[0], reason)
        elif len(self._live()) < self.policy.max_instances:
            self._start_instance(reason)

    # ------------------------------------------------------------ scale down
    def _consider_idle(self, inst: Instance) -> None:
        if inst.state is not InstanceState.READY or inst.in_flight or self._closing:
            return
        if len(self._in_state(InstanceState.READY)) <= self.policy.min_instances:
            return
        now = self._clock()
        ttl_s = self.policy.idle_ttl_s(now)
        self._schedule_prewarm(self.policy.prewarm_at_s(now), now)
        if ttl_s is None:
            return
        if ttl_s <= 0:
            self._drain(inst, Reason.NO_INFLIGHT)
        else:
            self._cancel_idle(inst)
            loop = asyncio.get_running_loop()
            inst.idle_handle = loop.call_later(ttl_s, self._idle_expired, inst)

    def _idle_expired(self, inst: Instance) -> None:
        inst.idle_handle = None
        if (
            inst.state is InstanceState.READY
            and inst.in_flight == 0
            and len(self._in_state(InstanceState.READY)) > self.policy.min_instances
        ):
            now = self._clock()
            warm_ttl_s = self.policy.runtime_warm_ttl_s(now)
            if (warm_ttl_s is None or warm_ttl_s > 0) and inst.process.supports_sleep:
                self._sleep(inst, warm_ttl_s)
            else:
                self._drain(inst, Reason.IDLE_TTL)

    # ------------------------------------------------------------ runtime-warm
    def _sleep(self, inst: Instance, warm_ttl_s: float | None) -> None:
        """ready -> sleeping: unload the model, keep the process for ``warm_ttl_s``
        (None: until evicted or shut down)."""
        self._transition(inst, InstanceState.SLEEPING, Lifecycle.SLEEP, Reason.IDLE_TTL)
        inst.unloaded = True
        if warm_ttl_s is not None:
            loop = asyncio.get_running_loop()
            inst.idle_handle = loop.call_later(warm_ttl_s, self._runtime_warm_expired, inst)
        task = asyncio.get_running_loop().create_task(self._run_sleep(inst))
        inst.sleep_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.admission is not None:
            self.admission.changed(self, inst)

    async def _run_sleep(self, inst: Instance) -> None:
        try:
            await inst.process.sleep()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s %s: unloading the model failed (%s); stopping the instance",
                        self.deployment, inst.instance_id, exc)
            inst.unloaded = False  # as far as anyone knows, it still holds its model
            if inst.state is InstanceState.SLEEPING:
                self._cancel_idle(inst)
                self._drain(inst, Reason.IDLE_TTL)
            # A wake that began meanwhile finds out from process.wake().

    def _runtime_warm_expired(self, inst: Instance) -> None:
        inst.idle_handle = None
        if inst.state is InstanceState.SLEEPING:
            self._drain(inst, Reason.RUNTIME_WARM_TTL)

    def _wake(self, inst: Instance, reason: Reason) -> None:
        """sleeping -> waking: reload the model (the pool's alternative to a start)."""
        self._cancel_idle(inst)
        inst.tier = TIER_RUNTIME_WARM
        self._transition(inst, InstanceState.WAKING, Lifecycle.WAKE, reason,
                         tier=TIER_RUNTIME_WARM)
        self._spawn_task(self._run_wake(inst))

    async def _run_wake(self, inst: Instance) -> None:
        if inst.sleep_task is not None:
            # The unload must be over before the reload; its failure is the wake's to see.
            with contextlib.suppress(Exception):
                await asyncio.shield(inst.sleep_task)
            inst.sleep_task = None
        if self.admission is not None and inst.state is InstanceState.WAKING:
            try:
                await self.admission.admit(self, inst)
            except PoolError as exc:
                if inst.state is InstanceState.WAKING:
                    log.info("%s %s: wake refused: %s", self.deployment, inst.instance_id,
                             exc.message)
                    self._drain(inst, Reason.EVICTED)
                    self._fail_waiters(exc)
                return
        if inst.state is not InstanceState.WAKING:
            return  # shut down (or died) meanwhile
        try:
            ready_at_s = await inst.process.wake()
        except (InstanceStartError, OSError) as exc:
            self._wake_failed(inst, str(exc))
            return
        if inst.state is not InstanceState.WAKING:
            return  # shut down or died while waking: whoever changed it stops it
        self.wakes += 1
        inst.unloaded = False
        self._now_ready(inst, ready_at_s)

    def _wake_failed(self, inst: Instance, reason: str) -> None:
        if inst.state is not InstanceState.WAKING:
            return  # stopped on purpose meanwhile
        self.start_failures += 1
        self._transition(inst, InstanceState.FAILED, Lifecycle.START_FAILED,
                         detail=f"wake failed: {reason}")
        self._fail_waiters(StartFailed(f"instance wake failed: {reason}"))
        self._spawn_task(inst.process.stop())
        self._remove(inst)
        self._dispatch()

    def _fail_waiters(self, exc: PoolError) -> None:
        """Tell the waiters why, unless another instance can still serve them."""
        if self._in_state(InstanceState.STARTING, InstanceState.READY, InstanceState.WAKING):
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(exc)

    def _cancel_idle(self, inst: Instance) -> None:
        if inst.idle_handle is not None:
            inst.idle_handle.cancel()
            inst.idle_handle = None

    def evict(self, inst: Instance) -> None:
        """Stop an idle ready (or runtime-warm) instance to free its memory for another
        deployment."""
        idle = inst.state is InstanceState.SLEEPING or (
            inst.state is InstanceState.READY and not inst.in_flight)
        if not idle:
            raise ValueError(f"{inst.instance_id} is not idle: it cannot be evicted")
        self._cancel_idle(inst)
        self.evictions += 1
        self._drain(inst, Reason.EVICTED)

    def _drain(self, inst: Instance, reason: Reason) -> None:
        self._transition(inst, InstanceState.DRAINING, Lifecycle.DRAIN, reason)
        if inst.in_flight == 0:
            self._spawn_task(self._stop(inst, reason))

    async def _stop(self, inst: Instance, reason: Reason) -> None:
        code = await inst.process.stop()
        if inst.state is InstanceState.DRAINING:
            self._transition(inst, InstanceState.STOPPED, Lifecycle.STOPPED, reason,
                             detail=f"exit code {code}")
            self._remove(inst)

    # -------------------------------------------------------------- scale up
    def _schedule_prewarm(self, at_s: float | None, now_s: float) -> None:
        """Replace the pending pre-warm with one at ``at_s`` (none when None)."""
        self._cancel_prewarm()
        if at_s is None or self._closing:
            return
        loop = asyncio.get_running_loop()
        self._prewarm_handle = loop.call_later(max(0.0, at_s - now_s), self._prewarm_due)

    def _cancel_prewarm(self) -> None:
        if self._prewarm_handle is not None:
            self._prewarm_handle.cancel()
            self._prewarm_handle = None

    def _prewarm_due(self) -> None:
        self._prewarm_handle = None
        if self._closing or self._free_instance() is not None:
            return  # shutting down, or an instance is already up with room
        self._scale_up(Reason.PREWARM)

    def _ensure_min_instances(self) -> None:
        if self._closing or self._min_start_failed:
            return
        if len(self._in_state(InstanceState.READY)) >= self._initial_instances:
            self._initial_instances = 0  # the start-up set was up once; min_instances rules
        wanted = max(self.policy.min_instances, self._initial_instances)
        # Only ready instances (and those on their way) count towards the minimum.
        coming = self._in_state(InstanceState.STARTING, InstanceState.READY,
                                InstanceState.WAKING)
        if len(coming) < wanted:
            self._scale_up(Reason.MIN_INSTANCES)

    def _start_instance(self, reason: Reason) -> Instance:
        instance_id = f"{self._id_prefix}i{self._next_id}"
        self._next_id += 1
        factory = self._process_factory or InstanceProcess
        inst = Instance(instance_id, factory(instance_id, self.spec), start_reason=reason)
        self.instances.append(inst)
        self._spawn_task(self._run_start(inst))
        return inst

    async def _run_start(self, inst: Instance) -> None:
        def on_phase(phase: Lifecycle, t_s: float) -> None:
            if phase == Lifecycle.SPAWN:
                inst.spawned_at_s = t_s
                inst.tier = str(getattr(inst.process, "start_tier", "") or "")
                self._record(inst, Lifecycle.SPAWN, reason=inst.start_reason, t_s=t_s,
                             tier=inst.tier)
            else:
                self._record(inst, phase, t_s=t_s)

        if self.admission is not None:
            try:
                await self.admission.admit(self, inst)
            except PoolError as exc:
                self._admission_refused(inst, exc)
                return
            if inst.state is not InstanceState.STARTING:
                return  # shut down while waiting: nothing was spawned
        try:
            await inst.process.spawn(on_phase)
            self._spawn_task(self._watch_exit(inst))
            ready_at_s = await inst.process.wait_ready()
        except (InstanceStartError, OSError) as exc:
            await self._start_failed(inst, str(exc))
            return
        except asyncio.CancelledError:
            # Cancelled by shutdown while the process was being spawned: never leave it behind.
            await inst.process.stop()
            raise
        if inst.state is not InstanceState.STARTING:
            await inst.process.stop()  # shut down while starting
            return
        self._min_start_failed = False
        self.cold_starts += 1
        if self.on_cold_start is not None and inst.spawned_at_s is not None:
            self.on_cold_start(ready_at_s - inst.spawned_at_s)
        self._now_ready(inst, ready_at_s)

    def _now_ready(self, inst: Instance, ready_at_s: float) -> None:
        """The common end of a start and a wake: ready, waiters served, then the policy
        decides about the instance and the minimum."""
        inst.ready_at_s = ready_at_s
        inst.idle_since_s = ready_at_s
        self._transition(inst, InstanceState.READY, Lifecycle.READY, t_s=ready_at_s)
        if self.admission is not None:
            self.admission.changed(self, inst)
        self._dispatch()
        self._consider_idle(inst)
        self._ensure_min_instances()

    async def _start_failed(self, inst: Instance, reason: str) -> None:
        if inst.state is not InstanceState.STARTING:
            return  # stopped on purpose (gateway shutdown), not a failure
        self.start_failures += 1
        if inst.start_reason == Reason.MIN_INSTANCES:
            self._min_start_failed = True  # no crash loop; the next request tries again
        self._transition(inst, InstanceState.FAILED, Lifecycle.START_FAILED, detail=reason)
        # The waiters were waiting for this start; unless another instance can serve
        # them, tell them now why (before the stop below, which may take its grace period),
        # instead of letting them time out.
        self._fail_waiters(StartFailed(f"instance start failed: {reason}"))
        await inst.process.stop()
        self._remove(inst)

    def _admission_refused(self, inst: Instance, exc: PoolError) -> None:
        """No memory for the start: no process was made, so no lifecycle event; the
        waiters hear why unless another instance can serve them."""
        if inst.state is not InstanceState.STARTING:
            return
        log.info("%s %s: start refused: %s", self.deployment, inst.instance_id, exc.message)
        if inst.start_reason == Reason.MIN_INSTANCES:
            self._min_start_failed = True
        self._remove(inst)
        self._fail_waiters(exc)

    async def _watch_exit(self, inst: Instance) -> None:
        code = await inst.process.wait_exit()
        self._instance_died(inst, code)

    def _instance_died(self, inst: Instance, code: int) -> None:
        """A ready, runtime-warm or waking instance's process exited unasked; idempotent."""
        if inst.state not in (InstanceState.READY, InstanceState.SLEEPING,
                              InstanceState.WAKING):
            return
        waking = inst.state is InstanceState.WAKING
        self._cancel_idle(inst)
        reason = f"exit code {code}: {inst.process.failure_reason()}"
        self._transition(inst, InstanceState.FAILED, Lifecycle.DIED, Reason.CRASH,
                         detail=reason)
        self._remove(inst)
        if waking:  # the waiters waited for this wake, as for a start
            self._fail_waiters(StartFailed(f"instance died while waking: {reason}"))
        self._dispatch()  # queued requests get a replacement on demand
        self._ensure_min_instances()

    # ----------------------------------------------------------------- helpers
    def _remove(self, inst: Instance) -> None:
        with contextlib.suppress(ValueError):
            self.instances.remove(inst)
        if self.admission is not None:
            self.admission.changed(self)

    def _transition(
        self, inst: Instance, to_state: InstanceState, event: Lifecycle | None = None,
        reason: Reason | str = "", detail: str = "", t_s: float | None = None,
        tier: str = "",
    ) -> None:
        """The one place an instance changes state: checked against ALLOWED, logged, and
        recorded as ``event`` (when given) with the new state."""
        old = inst.state
        if to_state not in ALLOWED[old]:
            raise InvalidTransition(
                f"{self.deployment} {inst.instance_id}: {old} -> {to_state} is not allowed")
        log.debug("%s %s: %s -> %s (%s)", self.deployment, inst.instance_id, old, to_state,
                  reason or event or "")
        inst.state = to_state
        if event is not None:
            self._record(inst, event, reason=reason, detail=detail, t_s=t_s, tier=tier)

    def _record(
        self, inst: Instance, event: Lifecycle, reason: Reason | str = "", detail: str = "",
        t_s: float | None = None, tier: str = "",
    ) -> None:
        self.events.record(
            inst.instance_id, event, str(inst.state), pid=inst.pid, reason=reason,
            detail=detail, t_s=self._clock() if t_s is None else t_s, tier=tier,
        )

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
