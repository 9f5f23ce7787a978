"""tiered: loaded for ``loaded_ttl_s`` after going idle, then runtime-warm (process up,
model unloaded) for ``runtime_warm_s``, then stopped.

``naive`` is tiered(0, 0) and ``keep_warm`` is tiered(T, 0): a zero ``runtime_warm_s``
stops the instance when its loaded TTL runs out, as they do.
"""

from __future__ import annotations

import dataclasses

from scalezero.serving.strategies.base import Policy
from scalezero.serving.strategies.registry import register


@register
@dataclasses.dataclass
class Tiered(Policy):
    name = "tiered"
    #: Seconds an idle instance keeps its model loaded (T1).
    loaded_ttl_s: float = dataclasses.field(default=10.0, metadata={"minimum": 0})
    #: Seconds it then stays runtime-warm before it is stopped (T2).
    runtime_warm_s: float = dataclasses.field(default=60.0, metadata={"minimum": 0})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loaded_ttl_s < 0:
            raise ValueError("loaded_ttl_s must be >= 0")
        if self.runtime_warm_s < 0:
            raise ValueError("runtime_warm_s must be >= 0")

    def idle_ttl_s(self, now_s: float) -> float | None:
        return self.loaded_ttl_s

    def runtime_warm_ttl_s(self, now_s: float) -> float | None:
        return self.runtime_warm_s
