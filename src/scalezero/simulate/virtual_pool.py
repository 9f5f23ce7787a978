"""The gateway's own pool, run on a virtual clock against simulated instances.

``simulate_with_pool`` replays requests against the real ``serving.pool.Pool`` (the code
the gateway runs) on a ``VirtualEventLoop``; only the instance processes are simulated
(``VirtualProcess``: the profile's phase times, no process). It is slow next to the
engine (every request is an asyncio task) and exists to check the engine: both must give
the same answers for the same input, so the engine cannot drift from the pool.

A run goes as a measured run does (``measure.runner``): the pool starts, its initial
instances warm up, and the replay starts once the last of them is ready (at
``REPLAY_LEAD_S`` after it, taken as t = 0). The pool's clock is put on the replay's
axis (the warm-up at t < 0): the virtual loop starts at minus the warm-up's length,
found by warming up a copy of the policy first.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from scalezero.serving.events import EVENT_COLUMNS, Event, EventLog, Lifecycle
from scalezero.serving.launcher import InstanceSpec, InstanceStartError, PhaseCallback
from scalezero.serving.pool import InstanceState, Pool, PoolError, PoolLimits
from scalezero.serving.strategies.base import Policy
from scalezero.simulate.engine import (
    REPLAY_LEAD_S,
    SIM_REQUEST_COLUMNS,
    SIM_START_TIER,
    SimRequest,
    SimResult,
)
from scalezero.simulate.profile import PlatformProfile
from scalezero.simulate.virtual_loop import VirtualEventLoop, run_virtual

DEPLOYMENT = "sim"

# The warm-up ends REPLAY_LEAD_S before the replay's t = 0, as in the engine: the runner
# starts the replay once it has seen the initial instances ready, so strictly after, and a
# request sent at t = 0 finds them up (the gateway tests check this live).


class VirtualProcess:
    """An instance process that takes the profile's times and does nothing else.

    It has what the pool uses of ``launcher.InstanceProcess``: the start-up phases are
    reported at spawn + the profile's phase times, ``wait_ready`` returns the ready time,
    ``stop`` takes ``profile.stop_s`` (also during a start or a wake, which it ends). It
    can sleep (runtime-warm): the unload takes no time, a wake ``profile.wake_s``. It never
    fails and never dies unasked. Its starts are of tier ``SIM_START_TIER``.
    """

    start_tier = SIM_START_TIER

    def __init__(self, instance_id: str, spec: InstanceSpec, profile: PlatformProfile) -> None:
        self.instance_id = instance_id
        self.spec = spec
        self.profile = profile
        self.port = 0
        self.proc: Any = None
        self.phase_times: dict[str, float] = {}
        self._spawned_at_s: float | None = None
        self._on_phase: PhaseCallback | None = None
        self._exited: asyncio.Future[int] | None = None
        #: Done once the pool asked the process to stop.
        self._stopping: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        return None

    @property
    def supports_sleep(self) -> bool:
        return True

    async def sleep(self) -> None:
        """The unload: instantaneous (the profile has no figure for it)."""

    async def wake(self) -> float:
        """Ready ``profile.wake_s`` from now; a stop meanwhile ends the wake."""
        ready_s = asyncio.get_running_loop().time() + self.profile.wake_s
        await self._until(ready_s)
        return ready_s

    async def spawn(self, on_phase: PhaseCallback) -> None:
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        self._stopping = loop.create_future()
        self._on_phase = on_phase
        self._spawned_at_s = loop.time()
        on_phase(Lifecycle.SPAWN, self._spawned_at_s)

    async def wait_ready(self) -> float:
        assert self._spawned_at_s is not None and self._on_phase is not None
        profile = self.profile
        runtime_ready_s = self._spawned_at_s + profile.spawn_to_runtime_ready_s
        model_loaded_s = runtime_ready_s + profile.runtime_ready_to_model_loaded_s
        ready_s = model_loaded_s + profile.model_loaded_to_ready_s
        for phase, at_s in ((Lifecycle.RUNTIME_READY, runtime_ready_s),
                            (Lifecycle.MODEL_LOADED, model_loaded_s)):
            await self._until(at_s)
            self.phase_times[phase] = at_s
            self._on_phase(phase, at_s)
        await self._until(ready_s)
        self.phase_times[Lifecycle.LISTENING] = ready_s
        return ready_s

    async def _until(self, at_s: float) -> None:
        """Wait until ``at_s``. A stop meanwhile ends the start: the process reports no
        further phase (a server killed while it loads prints nothing more)."""
        assert self._stopping is not None
        delay_s = max(0.0, at_s - asyncio.get_running_loop().time())
        await asyncio.wait({self._stopping}, timeout=delay_s)
        if self._stopping.done():
            raise InstanceStartError("instance stopped during start or wake")

    async def wait_exit(self) -> int:
        assert self._exited is not None
        return await asyncio.shield(self._exited)

    async def stop(self) -> int | None:
        """Exit ``profile.stop_s`` after the first stop; a second waits for the same exit."""
        if self._exited is None or self._stopping is None:
            return None
        if not self._stopping.done():
            self._stopping.set_result(None)
            asyncio.get_running_loop().call_later(self.profile.stop_s, self._exit, 0)
        return await asyncio.shield(self._exited)

    def _exit(self, code: int) -> None:
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(code)

    def failure_reason(self) -> str:
        return ""


def _spec() -> InstanceSpec:
    """An instance spec for the pool's records; the virtual process reads none of it."""
    return InstanceSpec(
        engine="llama_cpp_python", parallel=1, server_binary=None,
        model_path=Path("simulated"), model_alias=DEPLOYMENT, n_ctx=0, n_threads=None,
        n_gpu_layers=0, extra_args=(), host="127.0.0.1", ready_timeout_s=math.inf,
        stop_grace_s=0.0, health_path="/", poll_interval_s=0.0, log_dir=None, env={},
        command=None, python="",
    )


class _WatchedLog(EventLog):
    """An in-memory events log that tells a listener of each event."""

    def __init__(self) -> None:
        super().__init__()
        self.listener: Callable[[str], None] | None = None

    def record(self, instance_id: str, event: str, state: str, pid: int | None = None,
               reason: str = "", detail: str = "", t_s: float | None = None,
               tier: str = "") -> Event:
        item = super().record(instance_id, event, state, pid, reason, detail, t_s, tier)
        if self.listener is not None:
            self.listener(item.event)
        return item


def _make_pool(policy: Policy, profile: PlatformProfile, limits: PoolLimits,
               events: EventLog) -> Pool:
    loop = asyncio.get_running_loop()
    return Pool(DEPLOYMENT, _spec(), policy, limits, events, clock=loop.time,
                process_factory=lambda iid, spec: VirtualProcess(iid, spec, profile))


async def _warm_up(pool: Pool, events: _WatchedLog, wanted: int) -> None:
    """Start the pool and return once ``wanted`` instances are ready (at once if none)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_event(event: str) -> None:
        ready = sum(inst.state is InstanceState.READY for inst in pool.instances)
        if event == Lifecycle.READY and ready >= wanted and not done.done():
            done.set_result(None)

    events.listener = on_event
    await pool.start()
    if wanted > 0:
        await done
    events.listener = None


def warm_up(policy: Policy, profile: PlatformProfile, limits: PoolLimits) -> tuple[float, int]:
    """How long the pool takes to bring up the policy's initial instances, and how many
    they are. Asked of a copy of the policy, so the policy itself is asked nothing."""

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        events = _WatchedLog()
        copied = copy.deepcopy(policy)
        pool = _make_pool(copied, profile, limits, events)
        wanted = copied.initial_instances()
        await _warm_up(pool, events, wanted)
        t_s = loop.time()
        await pool.shutdown()
        return t_s, wanted

    return run_virtual(main(), start_s=0.0)


async def serve_request(pool: Pool, request: SimRequest, profile: PlatformProfile,
                        row: dict[str, Any],
                        on_refused: Callable[[PoolError, dict[str, Any]], None] | None = None,
                        ) -> None:
    """One request's life from its arrival (now): wait for a lease, stream, release.
    ``on_refused`` may record more of a refusal in the row (the sharing simulation: was
    it for memory)."""
    loop = asyncio.get_running_loop()
    try:
        lease = await pool.acquire()
    except PoolError as exc:
        row.update(status=exc.status_code, t_end_s=loop.time())
        if on_refused is not None:
            on_refused(exc, row)
        return
    ttft_s = profile.warm_ttft_s(request.prompt_tokens)
    if lease.first_of_instance:
        ttft_s += profile.first_request_extra_s
    row.update(t_grant_s=lease.granted_at_s, cold=lease.cold,
               first_of_instance=lease.first_of_instance,
               instance_id=lease.instance.instance_id)
    try:
        t_first_s = lease.granted_at_s + ttft_s
        await asyncio.sleep(max(0.0, t_first_s - loop.time()))
        pool.first_token(lease, t_first_s)
        t_end_s = t_first_s + profile.tpot_s * max(0, request.output_tokens - 1)
        await asyncio.sleep(max(0.0, t_end_s - loop.time()))
        row.update(status=200, t_first_s=t_first_s, t_end_s=t_end_s)
    finally:
        pool.release(lease)


def simulate_with_pool(
    requests: Sequence[SimRequest],
    policy: Policy,
    profile: PlatformProfile,
    limits: PoolLimits,
    *,
    history_s: Sequence[float] = (),
    until_s: float | None = None,
) -> SimResult:
    """Replay ``requests`` against the gateway's pool on a virtual clock.

    Same arguments and result as ``engine.simulate``. When the last response is
    sent (or at ``until_s``, when that is later) the gateway shuts down, as the runner's
    does after the replay: the pool drains what is still up.
    """
    learn = getattr(policy, "learn_history", None)
    if callable(learn) and len(history_s):
        learn(history_s)
    t0_s, wanted = warm_up(policy, profile, limits)
    if wanted:
        t0_s += REPLAY_LEAD_S
    rows = {r.request_id: _blank_row(r) for r in requests}

    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        events = _WatchedLog()
        pool = _make_pool(policy, profile, limits, events)
        await _warm_up(pool, events, wanted)
        tasks = []
        # Arrivals in time order, the given order among equal times (as the runner sends
        # them). Each waits until everything due up to its time has happened, so at equal
        # times the pool's own events (a release, a ready, a timer) come first, and each
        # arrival is handled before the next.
        for request in sorted(requests, key=lambda r: r.t_sched_s):
            await loop.settled(request.t_sched_s)
            tasks.append(loop.create_task(serve_request(pool, request, profile,
                                                 rows[request.request_id])))
        if tasks:
            await asyncio.wait(tasks)
        last_end_s = max((row["t_end_s"] for row in rows.values()), default=0.0)
        end_s = last_end_s if until_s is None else float(until_s)
        # What is due up to the end happens; then the gateway stops.
        await loop.settled(max(end_s, last_end_s))
        await pool.shutdown()
        result.extend(events.events)
        return end_s

    result: list[Any] = []
    end_s = run_virtual(main(), start_s=-t0_s)
    return _result(list(rows.values()), result, end_s)


def _blank_row(request: SimRequest) -> dict[str, Any]:
    return {
        "request_id": request.request_id, "t_sched_s": request.t_sched_s,
        "t_grant_s": math.nan, "t_first_s": math.nan, "t_end_s": math.nan, "status": 0,
        "cold": False, "first_of_instance": False, "instance_id": "", "queue_wait_s": math.nan,
    }


def _result(rows: list[dict[str, Any]], events: list[Any], end_s: float) -> SimResult:
    requests = pd.DataFrame(rows, columns=list(SIM_REQUEST_COLUMNS))
    requests = requests.sort_values("request_id", kind="stable").reset_index(drop=True)
    frame = pd.DataFrame(
        [{"t_s": e.t_s, "instance_id": e.instance_id, "event": e.event, "state": e.state,
          "pid": math.nan, "reason": e.reason, "detail": e.detail, "tier": e.tier}
         for e in events],
        columns=list(EVENT_COLUMNS),
    ).sort_values("t_s", kind="stable").reset_index(drop=True)
    requests["queue_wait_s"] = requests["t_grant_s"] - requests["t_sched_s"]
    return SimResult(requests=requests, events=frame, window=(0.0, end_s))
