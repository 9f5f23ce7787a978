"""Several deployments sharing one memory budget, in simulated time.

A layer around the single-deployment engine (``engine._Engine``): each deployment is that
engine (the pool's rules, unchanged), and a ``_SharedEngine`` runs them on one clock, with
the rules of ``serving.budget.MemoryBudget`` between them:

- every start asks for memory first: it is admitted when the instances that hold memory
  (starting once admitted, ready, draining) leave room for one more of its deployment;
  else idle ready instances of any deployment (never below a policy's minimum, never of a
  deployment with queued requests) are evicted, one at a time, chosen by the budget's own
  eviction policy classes (``budget.EVICTION_POLICIES``, fed the same ``DeploymentStats``),
  until what is not draining leaves room; then the start waits for memory to be freed
  (an instance that stops, goes idle or becomes ready; or, untold, every ``RECHECK_S``),
  up to ``wait_s``, and is refused (503 ``insufficient_memory`` for the requests waiting
  for it, unless another instance of the deployment can serve them) at the deadline;
  starts that wait look again in the order they last began to wait;
- a start that waits for memory is a starting instance to its pool (no second on-demand
  start), but has no process yet: its spawn (and its phases) come once it is admitted;
- a deployment that can never fit (its memory over the budget) is refused at once.

Each deployment's memory need is a fixed figure (``SharedDeployment.memory_mib``): the
simulation has no process to measure. Pools are shut down together at the end of the
window. The warm-up (every deployment's initial instances, admitted like any start) is
put before t = 0 as in the single engine: its length is found by a dry run on copies of
the policies, and the clock starts that much before 0.

A conformance test (``tests/simulate/test_sharing_conformance.py``) runs the gateway's
real ``Pool`` objects with a real ``MemoryBudget`` on a virtual clock
(``virtual_pool.simulate_shared_with_pools``) and compares their answers with these.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scalezero.analysis import energy as en
from scalezero.analysis import metrics as mx
from scalezero.errors import UserError
from scalezero.serving.budget import (
    RECHECK_S,
    Candidate,
    DeploymentStats,
    make_eviction_policy,
)
from scalezero.serving.events import Reason
from scalezero.serving.pool import PoolLimits
from scalezero.serving.strategies.base import Policy
from scalezero.simulate import engine as eng
from scalezero.simulate.engine import REPLAY_LEAD_S, SimRequest, SimResult, live_requests_frame
from scalezero.simulate.profile import PlatformProfile

#: Reason code of an eviction's drain and stop, after the engine's own codes.
_R_EVICTED = len(eng._REASON_NAMES)
_SHARED_REASON_NAMES: tuple[str, ...] = (*eng._REASON_NAMES, str(Reason.EVICTED))


@dataclasses.dataclass(frozen=True)
class SharedDeployment:
    """One deployment of a shared gateway: its policy, its timings and its memory."""

    name: str
    policy: Policy
    profile: PlatformProfile
    #: Memory one instance holds, MiB (what the budget counts for it).
    memory_mib: float
    #: Arrival times before the replay, for a policy's ``learn_history``.
    history_s: Sequence[float] = ()


@dataclasses.dataclass(frozen=True)
class SharedBudget:
    """The budget's settings (``serving.app.BudgetConfig`` less what is measured)."""

    budget_mib: float
    eviction: str = "lru"
    #: Longest wait of a start for memory before it is refused, s.
    wait_s: float = 30.0


@dataclasses.dataclass
class SharedResult:
    """A shared replay: per deployment a ``SimResult`` whose requests have the extra
    column ``memory_refused`` (a 503 for lack of memory) and whose instance ids carry
    the deployment's prefix (``<name>-i1``), as the gateway's events.csv has them."""

    deployments: dict[str, SimResult]
    memory_mib: dict[str, float]
    window: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class _IdleView:
    """An instance as the eviction policies read it."""

    inst: eng._Instance
    idle_since_s: float | None


@dataclasses.dataclass(eq=False)
class _PendingStart:
    engine: _DeploymentEngine
    inst: eng._Instance
    deadline_s: float
    #: Bumped to cancel the pending look again (timers carry the token they were set with).
    token: int = 0


class _DeploymentEngine(eng._Engine):
    """One deployment's pool rules, with its starts admitted by the shared budget."""

    reason_names = _SHARED_REASON_NAMES

    def __init__(self, shared: _SharedEngine, deployment: SharedDeployment,
                 requests: Sequence[SimRequest], limits: PoolLimits, prefix: str) -> None:
        self.shared = shared  # before the base sets ``seq``: it is the shared counter
        super().__init__(requests, deployment.policy, deployment.profile, limits)
        self.name = deployment.name
        self.prefix = prefix
        self.stats = DeploymentStats(float(deployment.memory_mib))
        self.spawned_at: dict[eng._Instance, float] = {}
        self.idle_since: dict[eng._Instance, float | None] = {}
        self.memory_refused = [False] * self.n
        self.min_start_failed = False
        self.evictions = 0
        self.k_admission_recheck = len(self.handlers)
        # One more kind of event: a waiting start's look again.
        self.handlers = (*self.handlers, self.admission_recheck)  # type: ignore[assignment]

    # Sequence numbers are shared: events of all deployments at one instant run in the
    # order they were scheduled.
    @property
    def seq(self) -> int:
        return self.shared.seq

    @seq.setter
    def seq(self, value: int) -> None:
        self.shared.seq = value

    # ------------------------------------------------------------- pool, with admission
    def arrival(self, k: int, now: float) -> None:
        self.stats.last_arrival_s = now
        self.stats.arrivals_s.append(now)
        super().arrival(k, now)

    def assign(self, inst: eng._Instance, k: int, now: float) -> None:
        self.idle_since[inst] = None
        super().assign(inst, k, now)

    def release(self, inst: eng._Instance, k: int, now: float) -> None:
        super().release(inst, k, now)
        if inst.in_flight == 0:
            self.idle_since[inst] = now
            self.shared.memory_changed(now)

    def ensure_min_instances(self, now: float) -> None:
        if not self.min_start_failed:
            super().ensure_min_instances(now)

    def start_instance(self, reason: int, now: float) -> None:
        """``Pool._start_instance``: a starting instance at once, its process once the
        budget admits it."""
        inst = eng._Instance(len(self.all_instances), reason)
        self.all_instances.append(inst)
        self.instances.append(inst)
        self.n_starting += 1
        self.shared.request_start(self, inst, now)

    def spawn(self, inst: eng._Instance, now: float) -> None:
        """The process's start, its phases at the profile's times."""
        self.spawned_at[inst] = now
        t_rr = now + self.phase_s[0]
        t_ml = t_rr + self.phase_s[1]
        t_ready = t_ml + self.phase_s[2]
        events = self.events
        inst.phase_rows = (len(events) + 1, len(events) + 2)
        events.append((now, inst.index, eng._E_SPAWN, eng._STARTING, inst.reason))
        events.append((t_rr, inst.index, eng._E_RUNTIME_READY, eng._STARTING, eng._R_NONE))
        events.append((t_ml, inst.index, eng._E_MODEL_LOADED, eng._STARTING, eng._R_NONE))
        self.push(t_ready, eng._K_READY, inst)

    def refuse(self, inst: eng._Instance, now: float) -> None:
        """``Pool._admission_refused``: no process was made, so no event."""
        if inst.state != eng._STARTING:
            return
        if inst.reason == eng._R_MIN_INSTANCES:
            self.min_start_failed = True
        inst.state = eng._STOPPED
        self.n_starting -= 1
        self.instances.remove(inst)
        if not self.n_starting and not self.n_ready:
            while self.waiters:
                k = self.waiters.popleft()
                if self.waiter_state[k] == eng._W_WAITING:
                    self.waiter_state[k] = eng._W_DONE
                    self.n_waiting -= 1
                    self.status[k] = eng.STATUS_UNAVAILABLE
                    self.memory_refused[k] = True
                    self.t_end[k] = now
                    self.done += 1
        self.shared.memory_changed(now)

    def ready(self, inst: eng._Instance, token: int, now: float) -> None:
        if inst.state != eng._STARTING:
            return
        self.idle_since[inst] = now
        self.min_start_failed = False
        # The budget's cold-start figure (cost_aware), as MemoryBudget.changed takes it.
        self.stats.cold_starts_s.append(now - self.spawned_at[inst])
        super().ready(inst, token, now)
        self.shared.memory_changed(now)

    def stopped(self, inst: eng._Instance, reason: int, now: float) -> None:
        was_draining = inst.state == eng._DRAINING
        super().stopped(inst, reason, now)
        if was_draining:
            self.shared.memory_changed(now)

    def evict(self, inst: eng._Instance, now: float) -> None:
        """``Pool.evict``."""
        inst.idle_token += 1  # cancel the idle timer
        self.evictions += 1
        self.drain(inst, _R_EVICTED, now)

    def admission_recheck(self, inst: eng._Instance, token: int, now: float) -> None:
        self.shared.recheck(inst, token, now)

    def shutdown(self, now: float) -> None:
        # A start still waiting for memory has no process: it drains and stops at once.
        for inst in list(self.instances):
            if inst.state == eng._STARTING and inst not in self.spawned_at:
                self.shared.forget(inst)
                self.n_starting -= 1
                inst.state = eng._DRAINING
                self.record(now, inst, eng._E_DRAIN, eng._R_SHUTDOWN)
                inst.state = eng._STOPPED
                self.events.append((now, inst.index, eng._E_STOPPED, eng._STOPPED,
                                    eng._R_SHUTDOWN))
                self.instances.remove(inst)
        super().shutdown(now)

    # ----------------------------------------------------------------------- budget
    def holding(self) -> int:
        """Instances that hold memory: admitted starts, ready and draining."""
        return sum(1 for inst in self.instances
                   if (inst.state == eng._STARTING and inst in self.spawned_at)
                   or inst.state in (eng._READY, eng._DRAINING))

    def draining(self) -> int:
        return sum(1 for inst in self.instances if inst.state == eng._DRAINING)

    def candidates(self) -> list[Candidate[_DeploymentEngine, _IdleView]]:
        ready = [inst for inst in self.instances if inst.state == eng._READY]
        spare = len(ready) - self.policy.min_instances
        if spare <= 0 or self.n_waiting:
            return []
        idle = [inst for inst in ready if inst.in_flight == 0]
        return [Candidate(self, _IdleView(inst, self.idle_since.get(inst)), self.stats)
                for inst in idle[:spare]]

    # ----------------------------------------------------------------------- frames
    def instance_names(self, extra: list[str]) -> np.ndarray:
        return np.asarray([f"{self.prefix}i{j + 1}" for j in range(len(self.all_instances))]
                          + extra, dtype=object)

    def request_frame(self) -> pd.DataFrame:
        frame = super().request_frame()
        refused = dict(zip(self.request_id, self.memory_refused, strict=True))
        frame["memory_refused"] = frame["request_id"].map(refused).astype(bool)
        return frame


class _SharedEngine:
    """The deployments on one clock, and the budget's admission between them."""

    def __init__(self, deployments: Sequence[SharedDeployment],
                 requests: Sequence[tuple[str, SimRequest]], budget: SharedBudget,
                 limits: PoolLimits) -> None:
        self.seq = 0
        self.budget = budget
        self.eviction = make_eviction_policy(budget.eviction)
        self.evictions = 0
        self.pending: list[_PendingStart] = []
        names = [d.name for d in deployments]
        if len(set(names)) != len(names):
            raise UserError(f"deployment names must differ: {names}")
        unknown = sorted({name for name, _ in requests} - set(names))
        if unknown:
            raise UserError(f"requests for unknown deployments: {unknown}")
        # Instance ids as the gateway gives them when it has several deployments.
        prefix = (lambda name: f"{name}-") if len(deployments) > 1 else (lambda name: "")
        self.engines = {
            d.name: _DeploymentEngine(self, d, [r for name, r in requests if name == d.name],
                                      limits, prefix(d.name))
            for d in deployments}
        # Arrivals of all deployments in time order, the given order among equal times;
        # each engine numbers its own requests in the same order.
        order = sorted(range(len(requests)), key=lambda j: requests[j][1].t_sched_s)
        seen = dict.fromkeys(names, 0)
        self.arrivals: list[tuple[_DeploymentEngine, int, float]] = []
        for j in order:
            name, request = requests[j]
            self.arrivals.append((self.engines[name], seen[name], float(request.t_sched_s)))
            seen[name] += 1

    # ---------------------------------------------------------------- admission
    def need_mib(self, engine: _DeploymentEngine) -> float:
        return engine.stats.need_mib

    def used_mib(self) -> float:
        return sum(e.stats.need_mib * e.holding() for e in self.engines.values())

    def draining_mib(self) -> float:
        return sum(e.stats.need_mib * e.draining() for e in self.engines.values())

    def request_start(self, engine: _DeploymentEngine, inst: eng._Instance, now: float) -> None:
        """``MemoryBudget.admit`` for a new start."""
        need = engine.stats.need_mib
        if need > self.budget.budget_mib:
            engine.refuse(inst, now)
            return
        pending = _PendingStart(engine, inst, now + self.budget.wait_s)
        self.pending.append(pending)
        if not self.try_admit(pending, now):
            self.wait(pending, now)

    def wait(self, pending: _PendingStart, now: float) -> None:
        """The start waits to be told of freed memory, at most ``RECHECK_S`` or until its
        deadline."""
        pending.token += 1
        at_s = now + min(pending.deadline_s - now, RECHECK_S)
        pending.engine.push(at_s, pending.engine.k_admission_recheck, pending.inst,
                            pending.token)

    def try_admit(self, pending: _PendingStart, now: float) -> bool:
        """One pass of the admission loop; True once the start was admitted or refused."""
        at_deadline = pending.deadline_s - now <= 0.0
        budget_mib = self.budget.budget_mib
        need = pending.engine.stats.need_mib
        while True:
            used = self.used_mib()
            if used + need <= budget_mib:
                self.pending.remove(pending)
                pending.engine.spawn(pending.inst, now)
                return True
            if used - self.draining_mib() + need > budget_mib and self.evict_one(now):
                continue
            if at_deadline:
                self.pending.remove(pending)
                pending.engine.refuse(pending.inst, now)
                return True
            return False

    def evict_one(self, now: float) -> bool:
        candidates = [c for e in self.engines.values() for c in e.candidates()]
        if not candidates:
            return False
        chosen = self.eviction.choose(candidates, now)
        self.eviction.evicted(chosen, now)
        self.evictions += 1
        chosen.pool.evict(chosen.instance.inst, now)
        return True

    def memory_changed(self, now: float) -> None:
        """Memory may be free: the waiting starts look again, first come first."""
        for pending in list(self.pending):
            if pending in self.pending and not self.try_admit(pending, now):
                self.wait(pending, now)

    def recheck(self, inst: eng._Instance, token: int, now: float) -> None:
        """A waiting start's wait ran out untold: it looks again, and waits again behind
        the others."""
        for pending in self.pending:
            if pending.inst is inst:
                if pending.token == token and not self.try_admit(pending, now):
                    self.pending.remove(pending)
                    self.pending.append(pending)
                    self.wait(pending, now)
                return

    def forget(self, inst: eng._Instance) -> None:
        self.pending = [p for p in self.pending if p.inst is not inst]

    # ---------------------------------------------------------------- the clock
    def next_engine(self) -> _DeploymentEngine | None:
        best: _DeploymentEngine | None = None
        for engine in self.engines.values():
            if engine.heap and (best is None or engine.heap[0][:2] < best.heap[0][:2]):
                best = engine
        return best

    def step(self) -> float:
        engine = self.next_engine()
        assert engine is not None
        event = heapq.heappop(engine.heap)
        engine.handle(event)
        return event[0]

    def next_time(self) -> float:
        engine = self.next_engine()
        return math.inf if engine is None else engine.heap[0][0]

    def warm_up(self, start_s: float) -> float:
        """``Gateway.start`` at ``start_s`` and the wait for every deployment's initial
        instances; returns when they were all ready."""
        wanted = {}
        for engine in self.engines.values():
            wanted[engine.name] = engine.policy.initial_instances()
            engine.initial_instances = wanted[engine.name]
        for engine in self.engines.values():
            engine.ensure_min_instances(start_s)
        now = start_s
        while any(e.n_ready < wanted[e.name] for e in self.engines.values()):
            if self.next_engine() is None:
                raise UserError("the initial instances of the deployments never are all "
                                "ready at once (do they fit in the memory budget?)")
            now = self.step()
        return now

    def run(self, until_s: float | None) -> float:
        for engine, k, t_s in self.arrivals:
            while self.next_time() <= t_s:
                self.step()
            engine.arrival(k, t_s)
        engines = list(self.engines.values())
        while self.next_engine() is not None and any(e.done < e.n for e in engines):
            self.step()
        last_end_s = max((max(e.t_end) for e in engines if e.n), default=0.0)
        end_s = last_end_s if until_s is None else float(until_s)
        horizon_s = max(end_s, last_end_s)
        while self.next_time() <= horizon_s:
            self.step()
        for engine in engines:
            engine.closing = True  # all pools stop together
        for engine in engines:
            engine.shutdown(horizon_s)
        while self.next_engine() is not None:
            self.step()
        return end_s


def _requests_of(requests: Sequence[tuple[str, SimRequest]]) -> list[tuple[str, SimRequest]]:
    return [(str(name), request) for name, request in requests]


def warm_up_length_s(deployments: Sequence[SharedDeployment], budget: SharedBudget,
                     limits: PoolLimits) -> float:
    """How long the warm-up takes from the gateway's start (0 when nothing warms up):
    a dry run on copies of the policies, which are asked nothing themselves."""
    copies = [dataclasses.replace(d, policy=copy.deepcopy(d.policy)) for d in deployments]
    dry = _SharedEngine(copies, [], budget, limits)
    if not any(d.policy.initial_instances() for d in copies):
        return 0.0
    return dry.warm_up(0.0)


def prepare_policies(deployments: Sequence[SharedDeployment]) -> None:
    """Before a shared simulation (either kind): refuse a runtime-warm tier, whose rules
    under the budget (a sleeping instance an eviction candidate holding only its runtime)
    are not mirrored, and give each policy its history to learn from."""
    tiered = [d.name for d in deployments if d.policy.runtime_warm_ttl_s(0.0) != 0]
    if tiered:
        raise ValueError("the shared-budget simulation does not model runtime-warm instances "
                         f"(deployments {', '.join(tiered)})")
    for d in deployments:
        if len(d.history_s):
            d.policy.learn_history(d.history_s)


def simulate_shared(
    deployments: Sequence[SharedDeployment],
    requests: Sequence[tuple[str, SimRequest]],
    budget: SharedBudget,
    limits: PoolLimits,
    *,
    until_s: float | None = None,
) -> SharedResult:
    """Replay ``requests`` ((deployment name, request) pairs) against ``deployments``
    sharing ``budget``, in simulated time. ``limits`` are the gateway's (one set for all
    pools, as the gateway has); ``until_s``: end of the window (default: the last
    response). Policies with a runtime-warm tier are refused: the budget's rules for
    sleeping instances (an eviction candidate holding only its runtime) are not mirrored
    here."""
    prepare_policies(deployments)
    t0_s = warm_up_length_s(deployments, budget, limits)
    start_s = -(t0_s + REPLAY_LEAD_S) if t0_s else 0.0
    shared = _SharedEngine(deployments, _requests_of(requests), budget, limits)
    shared.warm_up(start_s)
    end_s = shared.run(until_s)
    results = {
        name: SimResult(requests=engine.request_frame(), events=engine.event_frame(),
                        window=(0.0, end_s))
        for name, engine in shared.engines.items()}
    return SharedResult(results, {d.name: float(d.memory_mib) for d in deployments},
                        (0.0, end_s))


# ---------------------------------------------------------------------------------------
# What a shared run did, per deployment: the same figures from simulated or live files.

#: Metrics of ``sharing_metrics``, in its order.
SHARING_METRICS: tuple[str, ...] = (
    "requests", "ok", "cold_requests", "cold_starts", "evictions", "eviction_cold_starts",
    "memory_refused", "instance_s", "memory_mean_mib", "memory_peak_mib", "ttft_p50_ms",
    "ttft_p99_ms", "e2e_p50_ms", "e2e_p99_ms",
)


def deployment_of(instance_ids: pd.Series, names: Sequence[str]) -> pd.Series:
    """The deployment of each instance id (``<name>-i3``; the longest matching name)."""
    ordered = sorted(names, key=len, reverse=True)

    def owner(instance_id: str) -> str:
        for name in ordered:
            if instance_id.startswith(f"{name}-"):
                return name
        return ""

    return instance_ids.astype(str).map(owner)


def memory_held(events: pd.DataFrame, memory_mib: Mapping[str, float],
                window: tuple[float, float]) -> tuple[float, float]:
    """(mean, peak) MiB held over ``window`` by instances from spawn to stop, each
    counted at its deployment's ``memory_mib`` (the budget's accounting)."""
    w0, w1 = window
    names = list(memory_mib)
    owners = deployment_of(events["instance_id"], names)
    steps: list[tuple[float, float]] = []
    for _, rows in events.assign(owner=owners).groupby("instance_id", sort=False):
        mib = float(memory_mib.get(str(rows["owner"].iloc[0]), 0.0))
        spawn = rows.loc[rows["event"] == "spawn", "t_s"]
        if spawn.empty or mib == 0.0:
            continue
        end = rows.loc[rows["event"].isin(["stopped", "start_failed", "died"]), "t_s"]
        t_begin = float(spawn.min())
        t_end = float(end.max()) if not end.empty else math.inf
        steps += [(t_begin, mib), (t_end, -mib)]
    if w1 <= w0:
        return 0.0, 0.0
    steps.sort(key=lambda s: (s[0], s[1]))  # a stop before a start at the same instant
    held = 0.0
    area = 0.0
    peak = 0.0
    t_prev = w0
    for t_s, delta in steps:
        if t_s > w0:
            t_clip = min(t_s, w1)
            area += held * max(0.0, t_clip - t_prev)
            t_prev = max(t_prev, t_clip)
        held += delta
        if t_s < w1:
            peak = max(peak, held)
    area += held * max(0.0, w1 - t_prev)
    return area / (w1 - w0), peak


def sharing_metrics(requests: pd.DataFrame, events: pd.DataFrame, memory_mib: Mapping[str, float],
                    window: tuple[float, float]) -> pd.DataFrame:
    """Per deployment, the figures of ``SHARING_METRICS`` of one shared run, from frames
    in the live run files' terms: ``requests`` as requests.csv (with its ``model``
    column; a simulated one via ``live_requests_frame`` plus ``model``), ``events`` as
    events.csv. Columns: deployment, metric, value.

    memory_refused counts 503 answers whose error says there was no memory;
    eviction_cold_starts counts starts of a deployment whose last instance before them
    drained because it was evicted."""
    names = list(memory_mib)
    owners = deployment_of(events["instance_id"], names)
    req = mx.request_metrics(requests)
    rows: list[dict[str, Any]] = []
    for name in names:
        mine = req[requests["model"].astype(str).to_numpy() == name]
        ev = events[owners.to_numpy() == name]
        spans = en.instance_spans(ev)
        starts = en.cold_starts(spans, en.EnergyMeter([], "none"), math.nan, window)
        instance_s, _ = en.instance_seconds(spans, window)
        drains = ev[ev["event"] == "drain"]
        evictions = int((drains["reason"] == str(Reason.EVICTED)).sum())
        eviction_starts = 0
        last_drain_reason = ""
        for row in ev.sort_values("t_s", kind="stable").itertuples():
            if row.event == "drain":
                last_drain_reason = str(row.reason)
            elif row.event == "spawn" and last_drain_reason == str(Reason.EVICTED):
                eviction_starts += 1
                last_drain_reason = ""
        error = requests.loc[mine.index, "error"].astype(str) if "error" in requests else None
        refused = int(error.str.contains("memory").sum()) if error is not None else 0
        mean_mib, peak_mib = memory_held(ev, {name: memory_mib[name]}, window)
        good = mine[mine["ok"]]
        figures: dict[str, float] = {
            "requests": len(mine),
            "ok": int(mine["ok"].sum()),
            "cold_requests": int(mine["cold"].sum()),
            "cold_starts": int(starts["in_replay"].sum()) if not starts.empty else 0,
            "evictions": evictions,
            "eviction_cold_starts": eviction_starts,
            "memory_refused": refused,
            "instance_s": instance_s,
            "memory_mean_mib": mean_mib,
            "memory_peak_mib": peak_mib,
        }
        for m in ("ttft", "e2e"):
            quantiles = mx.percentiles(good[f"{m}_ms"], (50, 99))
            figures[f"{m}_p50_ms"] = float(quantiles[50])
            figures[f"{m}_p99_ms"] = float(quantiles[99])
        rows += [{"deployment": name, "metric": metric, "value": float(figures[metric])}
                 for metric in SHARING_METRICS]
    # The budget as a whole: memory of all deployments together.
    mean_mib, peak_mib = memory_held(events, memory_mib, window)
    rows += [{"deployment": "", "metric": "memory_mean_mib", "value": mean_mib},
             {"deployment": "", "metric": "memory_peak_mib", "value": peak_mib}]
    return pd.DataFrame(rows, columns=["deployment", "metric", "value"])


def shared_live_frames(result: SharedResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A shared simulation's requests and events in the live files' terms (one frame of
    each for all deployments, a ``model`` column on the requests; a memory refusal's
    error says so, as the gateway's answer does)."""
    requests, events = [], []
    for name, one in result.deployments.items():
        live = live_requests_frame(one.requests).assign(model=name)
        refused = one.requests["memory_refused"].to_numpy(dtype=bool)
        live.loc[refused, "error"] = "simulated 503 insufficient_memory"
        requests.append(live)
        events.append(one.events)
    return (pd.concat(requests, ignore_index=True),
            pd.concat(events, ignore_index=True).sort_values("t_s", kind="stable"))


def summarize_shared(result: SharedResult) -> pd.DataFrame:
    """``sharing_metrics`` of a shared simulation."""
    requests, events = shared_live_frames(result)
    return sharing_metrics(requests, events, result.memory_mib, result.window)


__all__ = ["SHARING_METRICS", "SharedBudget", "SharedDeployment", "SharedResult",
           "deployment_of", "memory_held", "shared_live_frames", "sharing_metrics",
           "simulate_shared", "summarize_shared", "warm_up_length_s"]
