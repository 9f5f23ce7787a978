"""always_on: one instance started before the first request and never stopped."""

from __future__ import annotations

import dataclasses

from scalezero.serving.strategies.base import Policy
from scalezero.serving.strategies.registry import register


@register
@dataclasses.dataclass
class AlwaysOn(Policy):
    name = "always_on"
    min_instances: int = 1

    def idle_ttl_s(self, now_s: float) -> float | None:
        return None
