"""The policy interface: what every deployment strategy decides, and nothing else.

A policy is pure decision logic. It never starts processes, sleeps or reads a clock of
its own: the instance pool asks it questions at the moments that matter (gateway start,
request arrival, an instance going idle) and acts on the answers, passing the time. That keeps each
strategy readable on one screen and testable without servers.

The three seed strategies map onto Ollama's ``keep_alive`` semantics:
``0`` (unload after the response) is ``naive``, ``N`` seconds is ``keep_warm``,
a negative value (forever) is ``always_on``.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class Accounting:
    """What the analysis needs to know of a policy to account for its instance time.

    The analysis never reads a policy's parameters by name: each policy states this.
    """

    #: The pool holds at least one instance at all times (started before any request).
    always_on: bool
    #: How long an idle instance above the minimum stays up: 0 stops it at once,
    #: ``math.inf`` never, anything else that many seconds.
    idle_ttl_s: float
    #: How long an instance whose idle TTL ran out stays runtime-warm (process up, model
    #: unloaded) before it is stopped: 0 (no runtime-warm tier), ``math.inf`` forever.
    runtime_warm_ttl_s: float = 0.0

    def record(self) -> dict[str, Any]:
        """JSON-safe form for run.json: an infinite TTL is ``None``. ``runtime_warm_ttl_s``
        is left out when 0 (no runtime-warm tier), so such records read as before."""
        ttl = None if math.isinf(self.idle_ttl_s) else float(self.idle_ttl_s)
        record: dict[str, Any] = {"always_on": bool(self.always_on), "idle_ttl_s": ttl}
        if self.runtime_warm_ttl_s != 0:
            record["runtime_warm_ttl_s"] = (None if math.isinf(self.runtime_warm_ttl_s)
                                            else float(self.runtime_warm_ttl_s))
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Accounting:
        """The inverse of ``record``; a record without ``runtime_warm_ttl_s`` (written
        before the runtime-warm tier existed) had none: 0."""
        ttl = record.get("idle_ttl_s")
        warm = record.get("runtime_warm_ttl_s", 0.0)
        return cls(always_on=bool(record["always_on"]),
                   idle_ttl_s=math.inf if ttl is None else float(ttl),
                   runtime_warm_ttl_s=math.inf if warm is None else float(warm))


@dataclasses.dataclass
class Policy(ABC):
    """Base class of all strategies.

    Subclasses are dataclasses: their fields are the strategy's parameters, settable from
    config (``strategies.<name>.<field>``). ``name`` is the registry key.
    """

    name: ClassVar[str] = ""

    #: The pool never stops an instance when that would leave fewer than this many.
    min_instances: int = dataclasses.field(default=0, metadata={"minimum": 0})
    #: The pool never runs more instances than this at once (starting ones included).
    max_instances: int = dataclasses.field(default=1, metadata={"minimum": 1})

    def __post_init__(self) -> None:
        if self.min_instances < 0:
            raise ValueError("min_instances must be >= 0")
        if self.max_instances < 1:
            raise ValueError("max_instances must be >= 1")
        if self.min_instances > self.max_instances:
            raise ValueError("min_instances must be <= max_instances")

    def initial_instances(self) -> int:
        """Instances to start when the gateway starts, before any request."""
        return self.min_instances

    def accounting(self) -> Accounting:
        """How the analysis accounts for this policy's instances.

        The default follows from the pool's rules: ``min_instances`` >= 1 are held from the
        gateway's start on, and an idle instance stays up for ``idle_ttl_s``. A policy whose
        TTL changes over time must say what to assume instead.
        """
        ttl_s = self.idle_ttl_s(0.0)
        warm_s = self.runtime_warm_ttl_s(0.0)
        return Accounting(always_on=self.min_instances >= 1,
                          idle_ttl_s=math.inf if ttl_s is None else float(ttl_s),
                          runtime_warm_ttl_s=math.inf if warm_s is None else float(warm_s))

    @abstractmethod
    def idle_ttl_s(self, now_s: float) -> float | None:
        """How long an instance that just became idle stays up.

        ``None``: forever. ``0``: stop it at once. Asked each time an instance's last
        in-flight request finishes (and when it becomes ready with nothing to do).
        """

    def runtime_warm_ttl_s(self, now_s: float) -> float | None:
        """How long an instance whose idle TTL ran out stays runtime-warm (process up,
        llama.cpp initialised, model unloaded) before it is stopped.

        ``0`` (the default): no runtime-warm tier, stop it at once. ``None``: forever.
        Asked when an instance's idle TTL runs out; the pool uses the tier only for
        processes that support it (``supports_sleep``).
        """
        return 0.0

    def on_arrival(self, now_s: float) -> None:  # noqa: B027 - optional hook
        """A request arrived at the gateway. Adaptive policies learn from this."""

    def on_idle(self, now_s: float) -> None:  # noqa: B027 - optional hook
        """The deployment's last in-flight request finished and none is waiting: an idle
        period begins. Adaptive policies learn from this."""

    def learn_history(self, arrival_times_s: Sequence[float]) -> None:  # noqa: B027 - optional hook
        """Arrivals recorded before the run, on the replay's time axis (seconds before the
        replay start are negative), ascending. Given once, before the pool starts; an
        adaptive policy learns from them as a training period. The default ignores them."""

    def prewarm_at_s(self, now_s: float) -> float | None:
        """When the pool should next start an instance with no request waiting for it.

        Asked right after ``idle_ttl_s`` when an instance goes idle. An absolute time (on
        the same clock as ``now_s``) schedules one pre-warm start then, replacing any
        pending one; an arrival cancels it. ``None`` (the default): no pre-warm.
        """
        return None

    def params(self) -> dict[str, Any]:
        """The policy's parameters, for records (run.json, /state)."""
        return {"policy": self.name, **dataclasses.asdict(self)}
