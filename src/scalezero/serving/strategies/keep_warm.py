"""keep_warm: start on demand, stop after ``keep_warm_ttl_s`` seconds with nothing to do."""

from __future__ import annotations

import dataclasses

from scalezero.serving.strategies.base import Policy
from scalezero.serving.strategies.registry import register


@register
@dataclasses.dataclass
class KeepWarm(Policy):
    name = "keep_warm"
    keep_warm_ttl_s: float = dataclasses.field(default=60.0, metadata={"minimum": 0})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.keep_warm_ttl_s < 0:
            raise ValueError("keep_warm_ttl_s must be >= 0")

    def idle_ttl_s(self, now_s: float) -> float | None:
        return self.keep_warm_ttl_s
