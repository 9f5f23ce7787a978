"""A memory budget shared by the pools of one gateway, and who gets evicted to keep it.

Each deployment has a memory estimate: its GGUF file's size plus the KV cache for its
context (from the GGUF's metadata), replaced by the largest memory an instance of it was
measured to hold once one has run; until then, what measured instances held beyond their
estimates (the runtime, compute buffers) is added to it.

A pool asks :meth:`MemoryBudget.admit` before it starts an instance; when the start would
exceed the budget, idle instances of any deployment are stopped (drained with reason
``evicted``), chosen by the eviction policy, until it fits. Instances serving requests,
starting or draining are never chosen. A runtime-warm (sleeping) instance is idle, so it
is a candidate too.

A runtime-warm instance holds only its runtime: it is counted as the deployment's need
less its estimate (what measured instances held beyond their weights and KV cache; for an
unmeasured deployment the overhead of the measured ones, which the need adds to the
estimate, so 0 until anything was measured). It is not measured while it sleeps (a
measurement then would not be its loaded size). A wake asks :meth:`MemoryBudget.admit`
like a start, for the memory its model takes back; one refused is stopped (reason
``evicted``) and its waiters hear why. When nothing can be evicted, the start waits (up
to ``wait_s``) for instances to go idle or stop, then fails with
:class:`InsufficientMemory` (503 with the reason).

Eviction policies (``EVICTION_POLICIES``), each a function of the candidates:

* ``lru``: the deployment whose last request arrived longest ago loses an instance first.
* ``longest_idle``: the instance idle the longest goes first.
* ``cost_aware``: Greedy-Dual keep-alive (FaasCache, ASPLOS 2021): each deployment's
  priority is ``clock + frequency * cost / size`` (frequency: its recent arrival rate;
  cost: its measured cold-start time; size: its memory need); the lowest goes first,
  and the clock rises to the evicted priority so that long-unused deployments age out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from scalezero.serving.events import TIER_RUNTIME_WARM
from scalezero.serving.pool import Instance, InstanceState, PoolError

if TYPE_CHECKING:
    from scalezero.serving.pool import Pool

MIB = 1 << 20
#: Bytes per KV-cache element (llama.cpp's default cache type is f16).
KV_BYTES_PER_ELEMENT = 2
#: Arrivals older than this do not count in a deployment's arrival rate.
RATE_WINDOW_S = 300.0
#: Cold-start time assumed for a deployment that never started (cost_aware).
DEFAULT_COLD_START_S = 1.0
#: How often a waiting start looks again when nothing told it that memory was freed.
RECHECK_S = 0.5


class InsufficientMemory(PoolError):
    status_code = 503
    error_type = "insufficient_memory"


def gguf_estimate_mib(model_path: Path, n_ctx: int) -> float:
    """File size plus an f16 KV cache of ``n_ctx`` tokens, in MiB, from the GGUF's header."""
    from scalezero.models.gguf import gguf_info

    try:
        info = gguf_info(model_path)
    except Exception:  # not a GGUF (a test stand-in): its size is all there is to go by
        return model_path.stat().st_size / MIB
    kv_bytes = 0
    layers, embed = info.get("block_count"), info.get("embedding_length")
    heads = info.get("head_count")
    kv_heads = info.get("head_count_kv") or heads
    if layers and embed and heads and kv_heads:
        head_dim = embed / heads
        # K and V, per layer, per token.
        kv_bytes = 2 * layers * n_ctx * kv_heads * head_dim * KV_BYTES_PER_ELEMENT
    return (info["file_bytes"] + kv_bytes) / MIB


def process_rss_mib(pid: int) -> float | None:
    """Resident memory of one process from /proc (None where unreadable)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def process_gpu_mib(pid: int) -> float | None:
    """GPU memory one process holds, from NVML (None without NVML or a record of it)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            total = 0.0
            found = False
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == pid and proc.usedGpuMemory:
                        total += proc.usedGpuMemory / MIB
                        found = True
            return total if found else None
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None


def memory_meter(device: str) -> Callable[[int], float | None]:
    """What counts against the budget: GPU memory on cuda, resident host memory on cpu."""
    return process_gpu_mib if device == "cuda" else process_rss_mib


@dataclasses.dataclass
class DeploymentStats:
    """What the budget knows of one deployment."""

    estimate_mib: float
    measured_mib: float | None = None
    last_arrival_s: float = -math.inf
    arrivals_s: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    cold_starts_s: list[float] = dataclasses.field(default_factory=list)

    @property
    def need_mib(self) -> float:
        return self.measured_mib if self.measured_mib is not None else self.estimate_mib

    def rate_per_s(self, now_s: float) -> float:
        while self.arrivals_s and self.arrivals_s[0] < now_s - RATE_WINDOW_S:
            self.arrivals_s.popleft()
        return len(self.arrivals_s) / RATE_WINDOW_S

    @property
    def cold_start_s(self) -> float:
        if not self.cold_starts_s:
            return DEFAULT_COLD_START_S
        return sum(self.cold_starts_s) / len(self.cold_starts_s)


class IdleInstance(Protocol):
    """What an eviction policy reads of an instance (the pool's ``Instance``; the
    simulator's instances have the same)."""

    @property
    def idle_since_s(self) -> float | None: ...


OwnerT = TypeVar("OwnerT")
InstanceT = TypeVar("InstanceT", bound=IdleInstance)


@dataclasses.dataclass(frozen=True)
class Candidate(Generic[OwnerT, InstanceT]):
    """An idle instance that could be evicted, with its deployment's figures.

    ``pool`` is whatever owns the instance (a ``Pool`` here, a simulated deployment in
    ``simulate.sharing``): the policies read only ``instance.idle_since_s`` and ``stats``,
    so the simulator makes its choices with these same classes.
    """

    pool: OwnerT
    instance: InstanceT
    stats: DeploymentStats


CandidateT = TypeVar("CandidateT", bound=Candidate[Any, Any])


class EvictionPolicy:
    """Picks which idle instance goes first."""

    name = ""

    def choose(self, candidates: Sequence[CandidateT], now_s: float) -> CandidateT:
        raise NotImplementedError

    def evicted(self, chosen: Candidate[Any, Any], now_s: float) -> None:
        """Told after ``chosen`` was evicted."""


class LeastRecentlyUsed(EvictionPolicy):
    name = "lru"

    def choose(self, candidates: Sequence[CandidateT], now_s: float) -> CandidateT:
        return min(candidates, key=lambda c: (c.stats.last_arrival_s, _idle_since(c)))


class LongestIdle(EvictionPolicy):
    name = "longest_idle"

    def choose(self, candidates: Sequence[CandidateT], now_s: float) -> CandidateT:
        return min(candidates, key=_idle_since)


class CostAware(EvictionPolicy):
    """Greedy-Dual: priority = clock + frequency x cost / size; the lowest is evicted."""

    name = "cost_aware"

    def __init__(self) -> None:
        self.clock = 0.0

    def priority(self, candidate: Candidate[Any, Any], now_s: float) -> float:
        stats = candidate.stats
        size = max(stats.need_mib, 1e-9)
        return self.clock + stats.rate_per_s(now_s) * stats.cold_start_s / size

    def choose(self, candidates: Sequence[CandidateT], now_s: float) -> CandidateT:
        return min(candidates, key=lambda c: (self.priority(c, now_s), _idle_since(c)))

    def evicted(self, chosen: Candidate[Any, Any], now_s: float) -> None:
        self.clock = self.priority(chosen, now_s)


def _idle_since(candidate: Candidate[Any, Any]) -> float:
    since = candidate.instance.idle_since_s
    return since if since is not None else math.inf


EVICTION_POLICIES: dict[str, type[EvictionPolicy]] = {
    cls.name: cls for cls in (LeastRecentlyUsed, LongestIdle, CostAware)
}


def make_eviction_policy(name: str) -> EvictionPolicy:
    try:
        return EVICTION_POLICIES[name]()
    except KeyError:
        raise ValueError(
            f"unknown eviction policy {name!r}; known: {', '.join(EVICTION_POLICIES)}"
        ) from None


#: Instances that hold (or are about to hold) their model's memory.
_HOLDING = (InstanceState.STARTING, InstanceState.READY, InstanceState.SLEEPING,
            InstanceState.WAKING, InstanceState.DRAINING)


class MemoryBudget:
    """Admission control over the instances of every pool that shares it."""

    def __init__(
        self,
        budget_mib: float,
        eviction: EvictionPolicy | str = "lru",
        *,
        wait_s: float = 30.0,
        clock: Callable[[], float] | None = None,
        meter: Callable[[int], float | None] | None = None,
    ) -> None:
        self.budget_mib = budget_mib
        self.eviction = make_eviction_policy(eviction) if isinstance(eviction, str) else eviction
        self.wait_s = wait_s
        self._clock = clock
        self._meter = meter
        self.pools: dict[str, Pool] = {}
        self.stats: dict[str, DeploymentStats] = {}
        self.evictions = 0
        #: Instances that asked and wait for memory: they hold none yet.
        self._pending: set[Instance] = set()
        self._changed: asyncio.Event | None = None

    def add(self, pool: Pool, estimate_mib: float) -> None:
        self.pools[pool.deployment] = pool
        self.stats[pool.deployment] = DeploymentStats(estimate_mib)
        pool.admission = self

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        for pool in self.pools.values():
            return pool.now()  # the clock arrivals were recorded with
        return asyncio.get_running_loop().time()

    # ---------------------------------------------------------- what the pools tell
    def arrival(self, pool: Pool, t_s: float) -> None:
        stats = self.stats[pool.deployment]
        stats.last_arrival_s = t_s
        stats.arrivals_s.append(t_s)

    def changed(self, pool: Pool, inst: Instance | None = None) -> None:
        """An instance went idle, became ready or stopped: memory may be free."""
        if inst is not None and inst.state is InstanceState.READY:
            stats = self.stats[pool.deployment]
            # A woken instance's ready - spawned is no start time.
            if inst.ready_at_s is not None and inst.spawned_at_s is not None and (
                    inst.served == 0 and inst.in_flight == 0
                    and inst.tier != TIER_RUNTIME_WARM):
                stats.cold_starts_s.append(inst.ready_at_s - inst.spawned_at_s)
            self._measure(stats, inst)
        if self._changed is not None:
            self._changed.set()

    def _measure(self, stats: DeploymentStats, inst: Instance) -> None:
        if self._meter is None or inst.pid is None:
            return
        mib = self._meter(inst.pid)
        if mib is not None and mib > 0:
            stats.measured_mib = max(mib, stats.measured_mib or 0.0)

    # ----------------------------------------------------------------- accounting
    def overhead_mib(self) -> float:
        """What measured instances held beyond their estimate, on average (the runtime,
        the compute buffers): added to the estimate of deployments not yet measured."""
        extra = [stats.measured_mib - stats.estimate_mib for stats in self.stats.values()
                 if stats.measured_mib is not None]
        return max(0.0, sum(extra) / len(extra)) if extra else 0.0

    def need_mib(self, deployment: str) -> float:
        stats = self.stats[deployment]
        if stats.measured_mib is not None:
            return stats.measured_mib
        return stats.estimate_mib + self.overhead_mib()

    def runtime_mib(self, deployment: str) -> float:
        """What a runtime-warm instance of ``deployment`` holds: its need less the
        estimate of its weights and KV cache."""
        return max(0.0, self.need_mib(deployment) - self.stats[deployment].estimate_mib)

    def used_mib(self) -> float:
        used = 0.0
        for name, pool in self.pools.items():
            for inst in pool.instances:
                if inst.state not in _HOLDING:
                    continue
                if inst.state is InstanceState.WAKING:
                    # Its runtime while it asks for memory, its model's once admitted.
                    waiting = inst in self._pending
                    used += self.runtime_mib(name) if waiting else self.need_mib(name)
                elif inst.unloaded:  # runtime-warm, or draining from there
                    used += self.runtime_mib(name)
                elif inst not in self._pending:  # (a start asking holds nothing yet)
                    used += self.need_mib(name)
        return used

    def _held_mib(self, deployment: str, inst: Instance) -> float:
        """What one instance counts for: its runtime only while its model is unloaded."""
        return self.runtime_mib(deployment) if inst.unloaded else self.need_mib(deployment)

    def _draining_mib(self) -> float:
        return sum(self._held_mib(name, inst) for name, pool in self.pools.items()
                   for inst in pool.instances if inst.state is InstanceState.DRAINING)

    def candidates(self) -> list[Candidate[Pool, Instance]]:
        """Idle instances that may be evicted (never below a policy's minimum)."""
        found = []
        for name, pool in self.pools.items():
            if pool.queue_depth:
                continue
            # Runtime-warm instances first: they are idle and below no minimum.
            found += [Candidate(pool, inst, self.stats[name]) for inst in pool.instances
                      if inst.state is InstanceState.SLEEPING]
            ready = [inst for inst in pool.instances if inst.state is InstanceState.READY]
            spare = len(ready) - pool.policy.min_instances
            idle = [inst for inst in ready if inst.in_flight == 0]
            if spare > 0:
                found += [Candidate(pool, inst, self.stats[name]) for inst in idle[:spare]]
        return found

    def snapshot(self) -> dict[str, object]:
        return {
            "budget_mib": self.budget_mib,
            "used_mib": self.used_mib(),
            "eviction": self.eviction.name,
            "evictions": self.evictions,
            "deployments": {
                name: {"estimate_mib": stats.estimate_mib, "measured_mib": stats.measured_mib,
                       "need_mib": self.need_mib(name)}
                for name, stats in self.stats.items()
            },
        }

    # ------------------------------------------------------------------ admission
    async def admit(self, pool: Pool, inst: Instance) -> None:
        """Return once ``inst`` may start; evict idle instances to make room.

        Raises :class:`InsufficientMemory` when the deployment can never fit, or when no
        room came free within ``wait_s``.
        """
        need = self.need_mib(pool.deployment)
        if need > self.budget_mib:
            raise InsufficientMemory(
                f"{pool.deployment!r} needs {need:.0f} MiB; the memory budget is "
                f"{self.budget_mib:.0f} MiB")
        if self._changed is None:
            self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        self._pending.add(inst)
        try:
            while True:
                used = self.used_mib()
                need = self.need_mib(pool.deployment)  # measurements may have come in
                if used + need <= self.budget_mib:
                    return
                # Draining instances free their memory once stopped: evict more only when
                # that will not be enough.
                if used - self._draining_mib() + need > self.budget_mib and self._evict_one():
                    continue
                left_s = deadline - loop.time()
                if left_s <= 0:
                    raise InsufficientMemory(
                        f"no memory for {pool.deployment!r}: it needs {need:.0f} MiB, "
                        f"{used:.0f} of {self.budget_mib:.0f} MiB are held by busy or "
                        f"starting instances (waited {self.wait_s:g} s)")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left_s, RECHECK_S))
        finally:
            self._pending.discard(inst)

    def _evict_one(self) -> bool:
        candidates = self.candidates()
        if not candidates:
            return False
        now_s = self._now()
        chosen = self.eviction.choose(candidates, now_s)
        self.eviction.evicted(chosen, now_s)
        self.evictions += 1
        chosen.pool.evict(chosen.instance)
        return True


__all__ = [
    "EVICTION_POLICIES",
    "Candidate",
    "CostAware",
    "EvictionPolicy",
    "IdleInstance",
    "InsufficientMemory",
    "LeastRecentlyUsed",
    "LongestIdle",
    "MemoryBudget",
    "gguf_estimate_mib",
    "make_eviction_policy",
    "memory_meter",
    "process_rss_mib",
]
