"""Several of the gateway's own pools sharing its own ``MemoryBudget``, on a virtual clock.

The counterpart of ``sharing.simulate_shared`` built from the code the gateway runs:
real ``Pool`` objects (ids prefixed per deployment, one events log, as ``serving.app``
builds them) and a real ``MemoryBudget`` with the eviction policy by name, on a
``VirtualEventLoop``; only the instance processes are simulated (``VirtualProcess``).
Slow, and there to check the engine: both must answer alike.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

from scalezero.serving.budget import InsufficientMemory, MemoryBudget
from scalezero.serving.events import Lifecycle
from scalezero.serving.pool import InstanceState, Pool, PoolError, PoolLimits
from scalezero.simulate.engine import REPLAY_LEAD_S, SimRequest, SimResult
from scalezero.simulate.profile import PlatformProfile
from scalezero.simulate.sharing import (
    SharedBudget,
    SharedDeployment,
    SharedResult,
    prepare_policies,
)
from scalezero.simulate.virtual_loop import VirtualEventLoop, run_virtual
from scalezero.simulate.virtual_pool import (
    VirtualProcess,
    _blank_row,
    _result,
    _spec,
    _WatchedLog,
    serve_request,
)


def _make_gateway(deployments: Sequence[SharedDeployment], budget: SharedBudget,
                  limits: PoolLimits, events: _WatchedLog) -> tuple[dict[str, Pool], MemoryBudget]:
    loop = asyncio.get_running_loop()
    several = len(deployments) > 1

    def factory(profile: PlatformProfile) -> Any:
        return lambda iid, spec: VirtualProcess(iid, spec, profile)

    pools = {
        d.name: Pool(d.name, _spec(), d.policy, limits, events, clock=loop.time,
                     process_factory=factory(d.profile),
                     id_prefix=f"{d.name}-" if several else "")
        for d in deployments}
    memory = MemoryBudget(budget.budget_mib, budget.eviction, wait_s=budget.wait_s,
                          clock=loop.time)
    for d in deployments:
        memory.add(pools[d.name], d.memory_mib)
    return pools, memory


async def _warm_up(pools: dict[str, Pool], events: _WatchedLog, wanted: dict[str, int]) -> None:
    """``Gateway.start``; return once every pool has its initial instances ready."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def all_ready() -> bool:
        return all(sum(inst.state is InstanceState.READY for inst in pool.instances)
                   >= wanted[name] for name, pool in pools.items())

    def on_event(event: str) -> None:
        if event == Lifecycle.READY and all_ready() and not done.done():
            done.set_result(None)

    events.listener = on_event
    for pool in pools.values():
        await pool.start()
    if not all_ready():
        await done
    events.listener = None


def _warm_up_length_s(deployments: Sequence[SharedDeployment], budget: SharedBudget,
                      limits: PoolLimits) -> float:
    copies = [dataclasses.replace(d, policy=copy.deepcopy(d.policy)) for d in deployments]
    if not any(d.policy.initial_instances() for d in copies):
        return 0.0

    async def main() -> float:
        events = _WatchedLog()
        pools, _ = _make_gateway(copies, budget, limits, events)
        await _warm_up(pools, events, {d.name: d.policy.initial_instances() for d in copies})
        t_s = asyncio.get_running_loop().time()
        await asyncio.gather(*(pool.shutdown() for pool in pools.values()))
        return t_s

    return run_virtual(main(), start_s=0.0)


def _note_memory_refusal(exc: PoolError, row: dict[str, Any]) -> None:
    row["memory_refused"] = isinstance(exc, InsufficientMemory)


def simulate_shared_with_pools(
    deployments: Sequence[SharedDeployment],
    requests: Sequence[tuple[str, SimRequest]],
    budget: SharedBudget,
    limits: PoolLimits,
    *,
    until_s: float | None = None,
) -> SharedResult:
    """Same arguments and result as ``sharing.simulate_shared``; at the end of the window
    all pools shut down together."""
    prepare_policies(deployments)
    t0_s = _warm_up_length_s(deployments, budget, limits)
    if t0_s:
        t0_s += REPLAY_LEAD_S
    profiles = {d.name: d.profile for d in deployments}
    rows: list[tuple[str, dict[str, Any]]] = [
        (name, {**_blank_row(r), "memory_refused": False}) for name, r in requests]
    events_seen: list[Any] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        events = _WatchedLog()
        pools, _ = _make_gateway(deployments, budget, limits, events)
        await _warm_up(pools, events, {d.name: d.policy.initial_instances()
                                       for d in deployments})
        tasks = []
        order = sorted(range(len(requests)), key=lambda j: requests[j][1].t_sched_s)
        for j in order:
            name, request = requests[j]
            await loop.settled(request.t_sched_s)
            tasks.append(loop.create_task(serve_request(
                pools[name], request, profiles[name], rows[j][1], _note_memory_refusal)))
        if tasks:
            await asyncio.wait(tasks)
        last_end_s = max((row["t_end_s"] for _, row in rows), default=0.0)
        end_s = last_end_s if until_s is None else float(until_s)
        await loop.settled(max(end_s, last_end_s))
        await asyncio.gather(*(pool.shutdown() for pool in pools.values()))
        events_seen.extend(events.events)
        return end_s

    end_s = run_virtual(main(), start_s=-t0_s)
    results: dict[str, SimResult] = {}
    names = [d.name for d in deployments]
    several = len(names) > 1
    for name in names:
        mine = [row for owner, row in rows if owner == name]
        prefix = f"{name}-" if several else ""
        own_events = [e for e in events_seen if e.instance_id.startswith(prefix)
                      and _owner(e.instance_id, names) == name] if several else events_seen
        result = _result([{k: v for k, v in row.items() if k != "memory_refused"}
                          for row in mine], own_events, end_s)
        refused = {row["request_id"]: bool(row["memory_refused"]) for row in mine}
        result.requests["memory_refused"] = result.requests["request_id"].map(refused)
        result.requests["memory_refused"] = result.requests["memory_refused"].astype(bool)
        results[name] = result
    return SharedResult(results, {d.name: float(d.memory_mib) for d in deployments},
                        (0.0, end_s))


def _owner(instance_id: str, names: Sequence[str]) -> str:
    for name in sorted(names, key=len, reverse=True):
        if instance_id.startswith(f"{name}-"):
            return name
    return ""


__all__ = ["simulate_shared_with_pools"]
