"""Discrete-event replay of a trace against a policy: the gateway's pool in simulated time.

Why a separate engine rather than the real pool (``serving.pool.Pool``) under a virtual
clock: speed. A policy study replays traces of a million requests and more, many times
over (one run per strategy and parameter). The real pool runs each request as asyncio
tasks, futures and timer handles; with a stand-in process and a virtual clock it manages
about 15 thousand requests per CPU second on this project's machines (asyncio's per-task
overhead alone caps even a minimal model of it near 20 thousand), over a minute per
million requests. This engine is a plain ``heapq`` event queue ordered by (time, sequence
number), no coroutines, the requests in plain lists and the frames built once at the end;
it replays a million requests in well under 30 s on one core (``scalezero simulate
bench`` measures it).

What it reproduces is the pool's semantics, rule by rule, with the pool's names:

- the activator queue (``acquire``): a request goes to the first ready instance with a
  free slot if nobody waits; else it waits in FIFO order, or gets 429 when ``max_queue``
  are already waiting. Its deadline is ``queue_timeout_s`` if a ready instance existed
  when it queued, else ``cold_start_timeout_s``; past it, 504;
- ``_dispatch``: free slots go to waiters in arrival order; waiters left over wake the
  first runtime-warm (sleeping) instance, or else start one (reason ``on_demand``), when
  none is starting or waking and (for a start) ``max_instances`` allows, counting
  sleeping and waking instances (``_scale_up``; pre-warms and the minimum likewise);
- ``_start_instance``: spawn, runtime_ready, model_loaded and ready, one phase after the
  other with the profile's phase times; at ready: dispatch, consider idle, ensure the
  minimum;
- ``release``: ``on_idle`` when the deployment's last request ends and nobody waits, then
  dispatch, then ``_consider_idle``: never below ``min_instances``; the policy's
  ``idle_ttl_s`` (0: drain at once, a TTL: a timer, None: stay up) and its
  ``prewarm_at_s`` (one pending pre-warm timer, replaced by the next decision, cancelled
  by an arrival; it wakes or starts an instance with reason ``prewarm`` only when no
  instance is free, starting or waking and ``max_instances`` allows);
- the idle timer's end (``_idle_expired``): with the policy's ``runtime_warm_ttl_s`` > 0
  (or None) the instance goes runtime-warm (``sleep``, reason ``idle_ttl``; the simulated
  process can always sleep, in no time) and drains ``runtime_warm_ttl_s`` later (reason
  ``runtime_warm_ttl``) unless woken first; else it drains (``idle_ttl``). A wake
  (``wake``) is ready ``profile.wake_s`` later; ``min_instances`` counts only ready
  instances;
- ``_ensure_min_instances`` with the policy's ``initial_instances``: the warm-up before the
  replay, as the runner waits for it, is simulated with the instances started at negative
  times so that the last one is ready at t = 0;
- the policy's hooks are called in the pool's order and at the pool's moments
  (``on_arrival`` then the pre-warm's cancellation on an arrival; ``on_idle``, then
  ``idle_ttl_s`` then ``prewarm_at_s`` on a release), so that stateful policies
  (``hybrid_histogram``) see the same calls as in a live run;
- at the end of the window (the last response, or ``until_s`` if later) the gateway
  shuts down as the runner's does: waiters get 503, every instance not yet draining
  drains (reason ``shutdown``) and stops ``stop_s`` later; one already draining keeps
  the reason it was drained for (its stop was under way first).

A request granted at ``t_grant`` gets its first token ``warm_ttft_s(prompt_tokens)`` later
(plus ``first_request_extra_s`` on an instance's first request) and its last one
``tpot_s`` per further output token after that; its slot is released then. The engine
sends at the scheduled time (no client lag), never fails a start and never loses an
instance; events have no pid and no detail. Events at the same instant run in the order
they were scheduled, the pool's before an arrival: a release, ready or timer at t runs
before a request arriving at t.

Drift from the pool is kept out by a conformance test that runs the real ``Pool`` (with a
stand-in process taking the profile's phase times) under a virtual-clock event loop on
random request sequences and policies, and compares its events and request outcomes
with this engine's. A change to the pool's rules must be made here as well, or that test
fails.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import math
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

import numpy as np
import pandas as pd

from scalezero.analysis import energy as en
from scalezero.analysis import metrics as mx
from scalezero.errors import UserError
from scalezero.serving.events import (
    EVENT_COLUMNS,
    TIER_HOST_CACHED,
    TIER_RUNTIME_WARM,
    Lifecycle,
    Reason,
)
from scalezero.serving.pool import InstanceState, PoolLimits
from scalezero.serving.strategies.base import Policy
from scalezero.simulate.profile import PlatformProfile

#: Columns of ``SimResult.requests``.
SIM_REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id", "t_sched_s", "t_grant_s", "t_first_s", "t_end_s", "status", "cold",
    "first_of_instance", "instance_id", "queue_wait_s",
)

#: Tier of every simulated process start (events.csv ``tier`` of ``spawn`` rows): a
#: profile has one cold-start time, and it is measured (or published) with the weights
#: readable at the host's speed.
SIM_START_TIER = TIER_HOST_CACHED

#: The replay starts this long after the last initial instance is ready (the runner
#: starts it once it has seen them ready): a request at t = 0 finds them warm.
REPLAY_LEAD_S = 1e-9

#: HTTP statuses of the simulated outcomes.
STATUS_OK = 200
STATUS_QUEUE_FULL = 429
STATUS_TIMEOUT = 504
STATUS_UNAVAILABLE = 503

# Codes of the recorded vocabulary (the events frame is built from codes at the end).
_EVENT_NAMES: tuple[str, ...] = (
    Lifecycle.SPAWN, Lifecycle.RUNTIME_READY, Lifecycle.MODEL_LOADED, Lifecycle.READY,
    Lifecycle.FIRST_TOKEN, Lifecycle.DRAIN, Lifecycle.STOPPED, Lifecycle.SLEEP,
    Lifecycle.WAKE,
)
(_E_SPAWN, _E_RUNTIME_READY, _E_MODEL_LOADED, _E_READY, _E_FIRST_TOKEN, _E_DRAIN,
 _E_STOPPED, _E_SLEEP, _E_WAKE) = range(len(_EVENT_NAMES))
#: The ``tier`` column by event code: the start's tier on spawn rows, runtime_warm on wakes.
_EVENT_TIERS: tuple[str, ...] = tuple(
    SIM_START_TIER if name == Lifecycle.SPAWN else
    TIER_RUNTIME_WARM if name == Lifecycle.WAKE else "" for name in _EVENT_NAMES)
_STATE_NAMES: tuple[str, ...] = (
    InstanceState.STARTING, InstanceState.READY, InstanceState.DRAINING, InstanceState.STOPPED,
    InstanceState.SLEEPING, InstanceState.WAKING,
)
_STARTING, _READY, _DRAINING, _STOPPED, _SLEEPING, _WAKING = range(len(_STATE_NAMES))
_REASON_NAMES: tuple[str, ...] = (
    "", Reason.ON_DEMAND, Reason.MIN_INSTANCES, Reason.PREWARM, Reason.IDLE_TTL,
    Reason.NO_INFLIGHT, Reason.DRAINED, Reason.SHUTDOWN, Reason.RUNTIME_WARM_TTL,
)
(_R_NONE, _R_ON_DEMAND, _R_MIN_INSTANCES, _R_PREWARM, _R_IDLE_TTL, _R_NO_INFLIGHT,
 _R_DRAINED, _R_SHUTDOWN, _R_RUNTIME_WARM_TTL) = range(len(_REASON_NAMES))

# Kinds of queued events: indexes into ``_Engine.handlers``.
(_K_RELEASE, _K_IDLE, _K_TIMEOUT, _K_PREWARM, _K_READY, _K_STOPPED, _K_WARM_EXPIRED,
 _K_WOKEN) = range(8)

# Waiter states of a request.
_W_NONE, _W_WAITING, _W_DONE = range(3)


@dataclasses.dataclass(frozen=True, slots=True)
class SimRequest:
    """One request of a replay."""

    request_id: int
    #: Scheduled send time on the replay's axis (0 = replay start), s.
    t_sched_s: float
    prompt_tokens: int
    output_tokens: int


@dataclasses.dataclass
class SimResult:
    """What a simulated replay produced, in the live run files' terms."""

    #: One row per request (SIM_REQUEST_COLUMNS), by request_id.
    requests: pd.DataFrame
    #: Instance lifecycle events, columns as the live events.csv (EVENT_COLUMNS).
    events: pd.DataFrame
    #: The replay window (0, end) the metrics use, s.
    window: tuple[float, float]


def requests_from_trace(
    trace: pd.DataFrame, tokens_in: Mapping[int, int] | None = None
) -> list[SimRequest]:
    """The requests of a trace frame (``workload.trace.read_trace``), in its order.

    Prompt tokens come from ``tokens_in`` (request_id -> tokens_in measured in a run) when
    it has the request, else from the prompt's word count; output tokens are
    ``max_tokens``, since the replay forces the full length.
    """
    ids = trace["request_id"].to_numpy()
    t_sched = trace["t_sched_s"].to_numpy(dtype=float)
    max_tokens = trace["max_tokens"].to_numpy()
    prompts = trace["prompt"].astype(str).tolist() if "prompt" in trace.columns else None
    out: list[SimRequest] = []
    for k in range(len(trace)):
        request_id = int(ids[k])
        prompt_tokens = None if tokens_in is None else tokens_in.get(request_id)
        if prompt_tokens is None:
            prompt_tokens = len(prompts[k].split()) if prompts is not None else 0
        out.append(SimRequest(request_id, float(t_sched[k]), int(prompt_tokens),
                              int(max_tokens[k])))
    return out


class _Instance:
    """The pool's ``Instance``, reduced to what the decisions read."""

    __slots__ = (
        "idle_token",
        "in_flight",
        "index",
        "phase_rows",
        "ready_at_s",
        "reason",
        "served",
        "state",
    )

    def __init__(self, index: int, reason: int) -> None:
        self.index = index  # instance_id is f"i{index + 1}"
        self.reason = reason
        self.state = _STARTING
        self.ready_at_s = math.inf
        self.in_flight = 0
        self.served = 0
        #: Bumped to cancel the pending idle timer (timers carry the token they were set with).
        self.idle_token = 0
        #: Rows of its runtime_ready and model_loaded events, recorded at the spawn.
        self.phase_rows: tuple[int, ...] = ()


class _Progress:
    """A progress bar on stderr: tqdm, updated every so many requests."""

    def __init__(self, total: int, stream: IO[str] | None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="req", file=stream or sys.stderr,
                        mininterval=0.5, desc="simulate", leave=True)

    def update(self, done: int) -> None:
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class _Engine:
    """The pool's state and rules on a heap of timed events."""

    #: The ``reason`` column by reason code (a subclass may add reasons).
    reason_names: tuple[str, ...] = _REASON_NAMES

    def __init__(self, requests: Sequence[SimRequest], policy: Policy,
                 profile: PlatformProfile, limits: PoolLimits) -> None:
        self.policy = policy
        self.profile = profile
        self.limits = limits
        self.concurrency = int(limits.instance_concurrency)
        self.max_queue = int(limits.max_queue)
        self.queue_timeout_s = float(limits.queue_timeout_s)
        self.cold_start_timeout_s = float(limits.cold_start_timeout_s)
        self.first_extra_s = float(profile.first_request_extra_s)
        self.wake_s = float(profile.wake_s)
        self.stop_s = float(profile.stop_s)
        self.phase_s = (float(profile.spawn_to_runtime_ready_s),
                        float(profile.runtime_ready_to_model_loaded_s),
                        float(profile.model_loaded_to_ready_s))

        # Requests in arrival order (stable for equal times), as plain lists.
        order = sorted(range(len(requests)), key=lambda k: requests[k].t_sched_s)
        reqs = [requests[k] for k in order]
        self.n = len(reqs)
        self.request_id = [r.request_id for r in reqs]
        self.t_sched = [float(r.t_sched_s) for r in reqs]
        base, per_token, tpot = (profile.ttft_base_s, profile.ttft_s_per_prompt_token,
                                 profile.tpot_s)
        self.ttft = [base + per_token * r.prompt_tokens for r in reqs]
        self.decode = [tpot * max(0, r.output_tokens - 1) for r in reqs]
        nan = math.nan
        self.t_grant = [nan] * self.n
        self.t_first = [nan] * self.n
        self.t_end = [nan] * self.n
        self.status = [0] * self.n
        self.cold = [False] * self.n
        self.first = [False] * self.n
        self.served_by = [-1] * self.n
        self.waiter_state = [_W_NONE] * self.n
        self.done = 0

        self.instances: list[_Instance] = []
        self.all_instances: list[_Instance] = []
        self.n_ready = 0
        self.n_starting = 0
        self.n_sleeping = 0
        self.n_waking = 0
        self.in_flight = 0
        self.waiters: collections.deque[int] = collections.deque()
        self.n_waiting = 0
        self.closing = False
        self.initial_instances = 0
        self.prewarm_token = 0

        self.heap: list[tuple[float, int, int, Any, int]] = []
        self.seq = 0
        # Recorded events as codes: (time, instance index, event, state, reason).
        self.events: list[tuple[float, int, int, int, int]] = []
        #: Rows recorded ahead that did not happen (phases of a start cut short).
        self.dropped_rows: set[int] = set()
        self.handlers = (self.release, self.idle_expired, self.timeout, self.prewarm_due,
                         self.ready, self.stopped, self.runtime_warm_expired, self.woken)
        # Warm-up plan: (spawn, runtime_ready, model_loaded, ready) per initial start.
        self.warmup_plan: list[tuple[float, float, float, float]] = []

    # ------------------------------------------------------------------ plumbing
    def push(self, t_s: float, kind: int, obj: Any, token: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t_s, self.seq, kind, obj, token))

    def record(self, t_s: float, inst: _Instance, event: int, reason: int = _R_NONE) -> None:
        self.events.append((t_s, inst.index, event, inst.state, reason))

    def free_instance(self) -> _Instance | None:
        concurrency = self.concurrency
        for inst in self.instances:
            if inst.state == _READY and inst.in_flight < concurrency:
                return inst
        return None

    # ------------------------------------------------------------------ activator
    def arrival(self, k: int, now: float) -> None:
        """``Pool.acquire``."""
        self.policy.on_arrival(now)
        self.prewarm_token += 1  # cancel the pending pre-warm
        if not self.n_waiting:
            inst = self.free_instance()
            if inst is not None:
                self.assign(inst, k, now)
                return
        if self.n_waiting >= self.max_queue:
            self.status[k] = STATUS_QUEUE_FULL
            self.t_end[k] = now
            self.done += 1
            return
        self.waiters.append(k)
        self.n_waiting += 1
        self.waiter_state[k] = _W_WAITING
        warm_exists = self.n_ready > 0
        self.dispatch(now)
        if self.waiter_state[k] == _W_WAITING:
            timeout_s = self.queue_timeout_s if warm_exists else self.cold_start_timeout_s
            self.push(now + timeout_s, _K_TIMEOUT, k)

    def timeout(self, k: int, _: int, now: float) -> None:
        if self.waiter_state[k] != _W_WAITING:
            return  # granted before its deadline
        self.waiter_state[k] = _W_DONE  # left in the deque; dispatch skips it
        self.n_waiting -= 1
        self.status[k] = STATUS_TIMEOUT
        self.t_end[k] = now
        self.done += 1

    def assign(self, inst: _Instance, k: int, now: float) -> None:
        """``Pool._assign``, and the request's service on the instance."""
        inst.idle_token += 1  # cancel the idle timer
        inst.in_flight += 1
        self.in_flight += 1
        first = inst.served == 0
        inst.served += 1
        self.t_grant[k] = now
        self.cold[k] = inst.ready_at_s >= self.t_sched[k]
        self.served_by[k] = inst.index
        t_first = now + self.ttft[k]
        if first:
            t_first += self.first_extra_s
            self.first[k] = True
            self.events.append((t_first, inst.index, _E_FIRST_TOKEN, _READY, _R_NONE))
        self.t_first[k] = t_first
        t_end = t_first + self.decode[k]
        self.t_end[k] = t_end
        self.seq += 1
        heapq.heappush(self.heap, (t_end, self.seq, _K_RELEASE, inst, k))

    def dispatch(self, now: float) -> None:
        """``Pool._dispatch``."""
        waiters = self.waiters
        waiter_state = self.waiter_state
        while self.n_waiting:
            inst = self.free_instance()
            if inst is None:
                break
            k = waiters.popleft()
            if waiter_state[k] != _W_WAITING:
                continue  # timed out earlier
            waiter_state[k] = _W_DONE
            self.n_waiting -= 1
            self.assign(inst, k, now)
        if self.n_waiting and not self.closing:
            self.scale_up(_R_ON_DEMAND, now)

    def scale_up(self, reason: int, now: float) -> None:
        """``Pool._scale_up``: wake the first sleeping instance, else start one."""
        if self.n_starting or self.n_waking:
            return
        if self.n_sleeping:
            for inst in self.instances:
                if inst.state == _SLEEPING:
                    self.wake(inst, reason, now)
                    return
        # Live: ready ones (none is starting or waking, none sleeping).
        if self.n_ready < self.policy.max_instances:
            self.start_instance(reason, now)

    def release(self, inst: _Instance, k: int, now: float) -> None:
        """``Pool.release`` at the request's last token."""
        self.status[k] = STATUS_OK
        self.done += 1
        inst.in_flight -= 1
        self.in_flight -= 1
        if inst.in_flight == 0 and self.in_flight == 0 and not self.n_waiting:
            self.policy.on_idle(now)
        if inst.state == _DRAINING and inst.in_flight == 0:
            self.push(now + self.stop_s, _K_STOPPED, inst, _R_DRAINED)
        elif inst.state == _READY:
            if self.n_waiting:  # (dispatch does nothing without waiters)
                self.dispatch(now)
            if inst.in_flight == 0:
                self.consider_idle(inst, now)

    # ------------------------------------------------------------------ scale down
    def consider_idle(self, inst: _Instance, now: float) -> None:
        """``Pool._consider_idle``."""
        if inst.state != _READY or inst.in_flight or self.closing:
            return
        policy = self.policy
        if self.n_ready <= policy.min_instances:
            return
        ttl_s = policy.idle_ttl_s(now)
        self.schedule_prewarm(policy.prewarm_at_s(now), now)
        if ttl_s is None:
            return
        if ttl_s <= 0:
            self.drain(inst, _R_NO_INFLIGHT, now)
        else:
            inst.idle_token += 1
            self.push(now + ttl_s, _K_IDLE, inst, inst.idle_token)

    def idle_expired(self, inst: _Instance, token: int, now: float) -> None:
        if token != inst.idle_token:
            return  # cancelled
        inst.idle_token += 1
        if (inst.state == _READY and inst.in_flight == 0
                and self.n_ready > self.policy.min_instances):
            warm_ttl_s = self.policy.runtime_warm_ttl_s(now)
            if warm_ttl_s is None or warm_ttl_s > 0:
                self.sleep(inst, warm_ttl_s, now)
            else:
                self.drain(inst, _R_IDLE_TTL, now)

    # ------------------------------------------------------------------ runtime-warm
    def sleep(self, inst: _Instance, warm_ttl_s: float | None, now: float) -> None:
        """``Pool._sleep``: runtime-warm, drained ``warm_ttl_s`` later unless woken."""
        inst.state = _SLEEPING
        self.n_ready -= 1
        self.n_sleeping += 1
        self.record(now, inst, _E_SLEEP, _R_IDLE_TTL)
        if warm_ttl_s is not None:
            inst.idle_token += 1
            self.push(now + warm_ttl_s, _K_WARM_EXPIRED, inst, inst.idle_token)

    def runtime_warm_expired(self, inst: _Instance, token: int, now: float) -> None:
        if token != inst.idle_token:
            return  # cancelled by a wake or shutdown
        inst.idle_token += 1
        if inst.state == _SLEEPING:
            self.drain(inst, _R_RUNTIME_WARM_TTL, now)

    def wake(self, inst: _Instance, reason: int, now: float) -> None:
        """``Pool._wake``: the model's reload, ready ``wake_s`` later."""
        inst.idle_token += 1
        inst.state = _WAKING
        self.n_sleeping -= 1
        self.n_waking += 1
        self.record(now, inst, _E_WAKE, reason)
        self.push(now + self.wake_s, _K_WOKEN, inst)

    def woken(self, inst: _Instance, _: int, now: float) -> None:
        """The end of ``Pool._run_wake``."""
        if inst.state != _WAKING:
            return  # shut down while waking
        self.n_waking -= 1
        self.now_ready(inst, now)

    def drain(self, inst: _Instance, reason: int, now: float) -> None:
        """``Pool._drain`` (from ready or sleeping; shutdown also drains starting and
        waking instances)."""
        if inst.state == _READY:
            self.n_ready -= 1
        elif inst.state == _STARTING:
            self.n_starting -= 1
        elif inst.state == _SLEEPING:
            self.n_sleeping -= 1
        elif inst.state == _WAKING:
            self.n_waking -= 1
        inst.state = _DRAINING
        self.record(now, inst, _E_DRAIN, reason)
        if inst.in_flight == 0:
            self.push(now + self.stop_s, _K_STOPPED, inst, reason)

    def stopped(self, inst: _Instance, reason: int, now: float) -> None:
        if inst.state != _DRAINING:
            return
        inst.state = _STOPPED
        self.events.append((now, inst.index, _E_STOPPED, _STOPPED, reason))
        self.instances.remove(inst)

    # ------------------------------------------------------------------ scale up
    def schedule_prewarm(self, at_s: float | None, now: float) -> None:
        """``Pool._schedule_prewarm``: replace the pending pre-warm."""
        self.prewarm_token += 1
        if at_s is None or self.closing:
            return
        self.push(now + max(0.0, at_s - now), _K_PREWARM, None, self.prewarm_token)

    def prewarm_due(self, _: None, token: int, now: float) -> None:
        if token != self.prewarm_token:
            return  # replaced or cancelled
        self.prewarm_token += 1
        if self.closing or self.free_instance() is not None:
            return
        self.scale_up(_R_PREWARM, now)

    def ensure_min_instances(self, now: float) -> None:
        """``Pool._ensure_min_instances``."""
        if self.closing:
            return
        if self.n_ready >= self.initial_instances:
            self.initial_instances = 0
        wanted = max(self.policy.min_instances, self.initial_instances)
        if self.n_ready + self.n_starting + self.n_waking < wanted:
            self.scale_up(_R_MIN_INSTANCES, now)

    def start_instance(self, reason: int, now: float) -> None:
        """``Pool._start_instance``: the spawn now, the phases after it."""
        inst = _Instance(len(self.all_instances), reason)
        self.all_instances.append(inst)
        self.instances.append(inst)
        self.n_starting += 1
        if self.warmup_plan and self.warmup_plan[0][0] == now:
            t_spawn, t_rr, t_ml, t_ready = self.warmup_plan.pop(0)
        else:
            t_spawn = now
            t_rr = t_spawn + self.phase_s[0]
            t_ml = t_rr + self.phase_s[1]
            t_ready = t_ml + self.phase_s[2]
        events = self.events
        # The phases in between are recorded ahead (dropped if the start is cut short).
        inst.phase_rows = (len(events) + 1, len(events) + 2)
        events.append((t_spawn, inst.index, _E_SPAWN, _STARTING, reason))
        events.append((t_rr, inst.index, _E_RUNTIME_READY, _STARTING, _R_NONE))
        events.append((t_ml, inst.index, _E_MODEL_LOADED, _STARTING, _R_NONE))
        self.push(t_ready, _K_READY, inst)

    def ready(self, inst: _Instance, _: int, now: float) -> None:
        """The end of ``Pool._run_start``."""
        if inst.state != _STARTING:
            return  # shut down while starting
        self.n_starting -= 1
        self.now_ready(inst, now)

    def now_ready(self, inst: _Instance, now: float) -> None:
        """``Pool._now_ready``: the common end of a start and a wake."""
        inst.ready_at_s = now
        inst.state = _READY
        self.n_ready += 1
        self.record(now, inst, _E_READY)
        self.dispatch(now)
        self.consider_idle(inst, now)
        self.ensure_min_instances(now)

    def shutdown(self, now: float) -> None:
        """``Pool.shutdown`` as the runner's gateway stop after the replay."""
        self.closing = True
        self.prewarm_token += 1
        while self.waiters:
            k = self.waiters.popleft()
            if self.waiter_state[k] == _W_WAITING:
                self.waiter_state[k] = _W_DONE
                self.n_waiting -= 1
                self.status[k] = STATUS_UNAVAILABLE
                self.t_end[k] = now
                self.done += 1
        for inst in list(self.instances):
            inst.idle_token += 1
            if inst.state == _STARTING:
                self.dropped_rows.update(row for row in inst.phase_rows
                                         if self.events[row][0] > now)
            if inst.state != _DRAINING:
                self.drain(inst, _R_SHUTDOWN, now)
            # A draining instance is already on its way out; its stop ends first.

    # ------------------------------------------------------------------ the loop
    def handle(self, event: tuple[float, int, int, Any, int]) -> None:
        now, _, kind, obj, token = event
        self.handlers[kind](obj, token, now)

    def warm_up(self) -> None:
        """``Pool.start`` and the runner's wait for the initial instances, ending just before
        t = 0: the runner starts the replay once it has seen them ready, so a request at
        t = 0 finds them warm (``REPLAY_LEAD_S``)."""
        wanted = self.policy.initial_instances()
        self.initial_instances = wanted
        if wanted <= 0:
            self.ensure_min_instances(0.0)
            return
        # Planned backwards from t = 0, one start after the other, so that the last
        # instance is ready just before 0 and each start begins when the previous is ready.
        plan = []
        t_ready = -REPLAY_LEAD_S
        for _ in range(wanted):
            t_ml = t_ready - self.phase_s[2]
            t_rr = t_ml - self.phase_s[1]
            t_spawn = t_rr - self.phase_s[0]
            plan.append((t_spawn, t_rr, t_ml, t_ready))
            t_ready = t_spawn
        self.warmup_plan = plan[::-1]
        self.ensure_min_instances(self.warmup_plan[0][0])
        heap = self.heap
        budget = 1000 * wanted  # a policy that stops its own initial instances never ends
        while heap and self.n_ready < wanted:
            budget -= 1
            if budget < 0:
                raise UserError(f"policy {self.policy.name!r}: its {wanted} initial instances "
                                "never are all ready at once")
            self.handle(heapq.heappop(heap))
        self.warmup_plan = []

    def run(self, until_s: float | None, progress: _Progress | None) -> float:
        """Replay every request; return the end of the window."""
        heap = self.heap
        handle = self.handle
        handlers = self.handlers
        heappop = heapq.heappop
        arrival = self.arrival
        t_sched = self.t_sched
        n = self.n
        step = max(1, n // 200)
        next_report = step
        k = 0
        while k < n:
            t_next = t_sched[k]
            while heap and heap[0][0] <= t_next:
                now, _, kind, obj, token = heappop(heap)
                handlers[kind](obj, token, now)
            arrival(k, t_next)
            k += 1
            if progress is not None and k >= next_report:
                progress.update(self.done)
                next_report += step
        # The last requests finish; then the window's tail up to until_s, if later.
        while heap and self.done < n:
            handle(heapq.heappop(heap))
        last_end_s = max(self.t_end) if n else 0.0
        end_s = last_end_s if until_s is None else float(until_s)
        horizon_s = max(end_s, last_end_s)
        while heap and heap[0][0] <= horizon_s:
            handle(heapq.heappop(heap))
        self.shutdown(horizon_s)
        while heap:
            handle(heapq.heappop(heap))
        if progress is not None:
            progress.update(self.done)
        return end_s

    # ------------------------------------------------------------------ frames
    def request_frame(self) -> pd.DataFrame:
        codes = np.asarray(self.served_by, dtype=np.int64)
        names = self.instance_names([""])  # -1 (not served): ""
        t_sched = np.asarray(self.t_sched, dtype=float)
        t_grant = np.asarray(self.t_grant, dtype=float)
        df = pd.DataFrame({
            "request_id": np.asarray(self.request_id, dtype=np.int64),
            "t_sched_s": t_sched,
            "t_grant_s": t_grant,
            "t_first_s": np.asarray(self.t_first, dtype=float),
            "t_end_s": np.asarray(self.t_end, dtype=float),
            "status": np.asarray(self.status, dtype=np.int64),
            "cold": np.asarray(self.cold, dtype=bool),
            "first_of_instance": np.asarray(self.first, dtype=bool),
            "instance_id": names[codes],
            "queue_wait_s": t_grant - t_sched,
        })
        return df.sort_values("request_id", kind="mergesort").reset_index(drop=True)

    def instance_names(self, extra: list[str]) -> np.ndarray:
        """Instance ids by index (the pool's ``i1``, ``i2``, ...), then ``extra``; an
        object array, so that codes index it (-1 is the last extra)."""
        return np.asarray([f"i{j + 1}" for j in range(len(self.all_instances))] + extra,
                          dtype=object)

    def event_frame(self) -> pd.DataFrame:
        rows = self.events
        if self.dropped_rows:
            rows = [row for j, row in enumerate(rows) if j not in self.dropped_rows]
        columns = list(zip(*rows, strict=True)) if rows else [()] * 5
        t = np.asarray(columns[0], dtype=float)
        order = np.argsort(t, kind="mergesort")  # recording order among equal times

        def column(codes: Sequence[int], names: np.ndarray) -> np.ndarray:
            return names[np.asarray(codes, dtype=np.int64)[order]]

        def named(values: Sequence[str]) -> np.ndarray:
            return np.asarray([str(v) for v in values], dtype=object)

        return pd.DataFrame({
            EVENT_COLUMNS[0]: t[order],
            EVENT_COLUMNS[1]: column(columns[1], self.instance_names([])),
            EVENT_COLUMNS[2]: column(columns[2], named(_EVENT_NAMES)),
            EVENT_COLUMNS[3]: column(columns[3], named(_STATE_NAMES)),
            EVENT_COLUMNS[4]: np.full(len(t), np.nan),  # no process, no pid
            EVENT_COLUMNS[5]: column(columns[4], named(self.reason_names)),
            EVENT_COLUMNS[6]: np.full(len(t), "", dtype=object),
            EVENT_COLUMNS[7]: column(columns[2], named(_EVENT_TIERS)),
        })


def simulate(
    requests: Sequence[SimRequest],
    policy: Policy,
    profile: PlatformProfile,
    limits: PoolLimits,
    *,
    history_s: Sequence[float] = (),
    until_s: float | None = None,
    progress: bool = False,
) -> SimResult:
    """Replay ``requests`` against a fresh ``policy`` on ``profile`` in simulated time.

    ``limits`` are the gateway's (``QueueSettings.pool_limits``; ``instance_concurrency``
    from there). ``history_s``: arrival times before the replay, given to the policy's
    ``learn_history`` when it has one. ``until_s``: end of the window (default: the last
    response). ``progress``: a progress bar on stderr.
    """
    learn = getattr(policy, "learn_history", None)
    if learn is not None and len(history_s):
        learn(history_s)
    engine = _Engine(requests, policy, profile, limits)
    bar = _Progress(engine.n, None) if progress else None
    try:
        engine.warm_up()
        end_s = engine.run(until_s, bar)
    finally:
        if bar is not None:
            bar.close()
    return SimResult(requests=engine.request_frame(), events=engine.event_frame(),
                     window=(0.0, end_s))


# ---------------------------------------------------------------------------------------
# Summary


def live_requests_frame(requests: pd.DataFrame) -> pd.DataFrame:
    """The simulated requests in requests.csv's terms (t_send_s, queue_wait_ms, error),
    for the analysis functions that read a live run's requests."""
    ok = requests["status"] == STATUS_OK
    return pd.DataFrame({
        "request_id": requests["request_id"],
        "t_sched_s": requests["t_sched_s"],
        "t_send_s": requests["t_sched_s"],  # sent on time
        "t_first_s": requests["t_first_s"].where(ok),
        "t_end_s": requests["t_end_s"],
        "status": requests["status"],
        "error": np.where(ok, "", "simulated " + requests["status"].astype(str)),
        "cold": requests["cold"],
        "queue_wait_ms": requests["queue_wait_s"] * 1000.0,
        "instance_id": requests["instance_id"],
    })


def summarize(result: SimResult, profile: PlatformProfile) -> dict[str, float | int | None]:
    """Summary numbers of a simulated replay, named like the summary CSV's columns and
    computed with the analysis module's own functions."""
    window = result.window
    w0, w1 = window
    live = live_requests_frame(result.requests)
    req = mx.request_metrics(live)
    ok = req["ok"]
    good = req[ok]
    n_requests = len(req)
    cold_requests = int(req["cold"].sum())
    row: dict[str, float | int | None] = {
        "duration_s": w1 - w0,
        "requests": n_requests,
        "ok": int(ok.sum()),
        "errors": int((~ok).sum()),
        "cold_requests": cold_requests,
        "cold_share": cold_requests / n_requests if n_requests else None,
    }
    for m in ("ttft", "e2e"):
        for q, v in mx.percentiles(good[f"{m}_ms"], (50, 90, 99)).items():
            row[f"{m}_p{q}_ms"] = _number(v)
    spans = en.instance_spans(result.events)
    starts = en.cold_starts(spans, en.EnergyMeter([], "none"), math.nan, window)
    row["cold_starts"] = int(starts["in_replay"].sum()) if not starts.empty else 0
    row["runtime_warm_wakes"] = en.start_tier_counts(result.events, window)["runtime_warm_wakes"]
    instance_s, instance_s_sum = en.instance_seconds(spans, window)
    row["instance_s"] = instance_s
    row["instance_s_sum"] = instance_s_sum
    row["runtime_warm_instance_s"] = en.runtime_warm_seconds(result.events, window)
    timeline = en.phase_timeline(spans, live, window, result.events)
    durations = (timeline.assign(duration_s=timeline["t1_s"] - timeline["t0_s"])
                 .groupby("phase")["duration_s"].sum())
    total_j: float | None = 0.0
    for phase in en.PHASES:
        seconds = float(durations.get(phase, 0.0))
        row[f"phase_{phase}_s"] = seconds
        power_w = profile.phase_power_w(phase)
        energy_j = None if power_w is None else seconds * power_w
        if phase == "runtime_warm" and seconds == 0.0:
            # A run without runtime-warm time: 0 J whatever the profile knows, so that a
            # profile without context_idle power still totals runs without sleeps.
            energy_j = 0.0
        row[f"phase_{phase}_energy_j"] = energy_j
        total_j = None if total_j is None or energy_j is None else total_j + energy_j
    row["energy_total_j"] = total_j
    bare_w = profile.power_w.get("bare_idle")
    row["energy_above_baseline_j"] = (None if total_j is None or bare_w is None
                                      else total_j - float(bare_w) * (w1 - w0))
    return row


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


__all__ = ["SIM_REQUEST_COLUMNS", "SimRequest", "SimResult", "live_requests_frame",
           "requests_from_trace", "simulate", "summarize"]
