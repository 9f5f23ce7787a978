"""The policy interface: what every deployment strategy decides, and nothing else.

A policy is pure decision logic. It never starts processes, sleeps or reads a clock of
its own: the instance pool asks it questions at the moments that matter (gateway start,
request arrival, an instance going idle) and acts on the answers. That keeps each
strategy readable on one screen and testable without servers.

The three seed strategies map onto Ollama's ``keep_alive`` semantics:
``0`` (unload after the response) is ``naive``, ``N`` seconds is ``keep_warm``,
a negative value (forever) is ``always_on``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar


@dataclasses.dataclass
class Policy(ABC):
    """Base class of all strategies.

    Subclasses are dataclasses: their fields are the strategy's parameters, settable from
    config (``strategies.<name>.<field>``). ``name`` is the registry key.
    """

    name: ClassVar[str] = ""

    #: The pool never stops an instance when that would leave fewer than this many.
    min_instances: int = 0
    #: The pool never runs more instances than this at once (starting ones included).
    max_instances: int = 1

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

    @abstractmethod
    def idle_ttl_s(self, now_s: float) -> float | None:
        """How long an instance that just became idle stays up.

        ``None``: forever. ``0``: stop it at once. Asked each time an instance's last
        in-flight request finishes (and when it becomes ready with nothing to do).
        """

    def on_arrival(self, now_s: float) -> None:  # noqa: B027 - optional hook
        """A request arrived at the gateway. Adaptive policies learn from this."""

    def params(self) -> dict[str, Any]:
        """The policy's parameters, for records (run.json, /state)."""
        return {"policy": self.name, **dataclasses.asdict(self)}
