"""naive scale-to-zero: start on demand, stop as soon as nothing is in flight."""

from __future__ import annotations

import dataclasses

from scalezero.serving.strategies.base import Policy
from scalezero.serving.strategies.registry import register


@register
@dataclasses.dataclass
class Naive(Policy):
    name = "naive"

    def idle_ttl_s(self, now_s: float) -> float | None:
        return 0.0
