"""A platform profile: what the simulator needs to know of one model on one device.

A profile is either fitted from measured runs (``basis = "measured"``) or assembled from
published figures (``"published"``: every figure has a source in ``sources``); figures
that no source gives are ``"assumed"`` and say so in ``notes``. The simulator uses the
medians below; the samples they came from stay in the profile for the record.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from scalezero.errors import UserError

Basis = Literal["measured", "published", "assumed"]

#: Power states of a device, in the analysis's energy-phase terms plus the two baselines.
POWER_STATES: tuple[str, ...] = (
    "bare_idle",      # no instance process (device idle, no CUDA context)
    "context_idle",   # a process holding the runtime (CUDA context), no model
    "idle_loaded",    # an instance up with its model loaded, nothing in flight
    "runtime_warm",   # only runtime-warm instances (process up, model unloaded); when a
                      # profile lacks it, such an instance draws ``context_idle``
    "active",         # an instance serving a request
    "cold_start",     # an instance starting (spawn to ready)
)


@dataclasses.dataclass(frozen=True)
class PlatformProfile:
    """Timings (s), power (W) and memory (MiB) of one model on one device."""

    name: str
    model: str
    device: str
    basis: Basis
    #: Where the figures come from: run folders for a fitted profile, citations otherwise.
    sources: tuple[str, ...] = ()
    notes: str = ""

    # Cold start, by phase (medians): spawn -> runtime_ready -> model_loaded -> ready.
    spawn_to_runtime_ready_s: float = 0.0
    runtime_ready_to_model_loaded_s: float = 0.0
    model_loaded_to_ready_s: float = 0.0
    #: Extra time of an instance's first request over a warm one (first inference warm-up).
    first_request_extra_s: float = 0.0
    #: Drain to stopped: the process's exit after the pool stops it.
    stop_s: float = 0.0
    #: Wake to ready of a runtime-warm instance (process up, model unloaded): the model's
    #: reload. None (a profile fitted from runs without wakes, a published profile): the
    #: cold start less its runtime phase (``wake_s``).
    runtime_warm_wake_s: float | None = None

    # Service: warm TTFT = ttft_base_s + ttft_s_per_prompt_token * prompt tokens;
    # every output token after the first takes tpot_s.
    ttft_base_s: float = 0.0
    ttft_s_per_prompt_token: float = 0.0
    tpot_s: float = 0.0
    #: Requests one instance serves at once.
    instance_concurrency: int = 1

    #: Mean power per state (POWER_STATES), W; a state missing is unknown.
    power_w: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: Where the power figures come from: nvml_counter, rapl, host_model, published, none.
    energy_source: str = "none"
    #: Memory an instance holds with its model loaded (GPU memory, or host RSS on a CPU).
    instance_mem_mib: float | None = None

    #: The measured values behind the medians (name -> values), for the record.
    samples: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.basis not in ("measured", "published", "assumed"):
            raise UserError(f"profile {self.name!r}: basis must be measured, published or "
                            f"assumed, not {self.basis!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            timing = field.name.endswith("_s") and isinstance(value, float | int)
            if timing and not (math.isfinite(value) and value >= 0):
                raise UserError(f"profile {self.name!r}: {field.name} must be a finite "
                                f"number >= 0, not {value!r}")
        unknown = set(self.power_w) - set(POWER_STATES)
        if unknown:
            raise UserError(f"profile {self.name!r}: unknown power states {sorted(unknown)}; "
                            f"known: {', '.join(POWER_STATES)}")
        if self.instance_concurrency < 1:
            raise UserError(f"profile {self.name!r}: instance_concurrency must be >= 1")

    @property
    def cold_start_s(self) -> float:
        """Spawn to ready."""
        return (self.spawn_to_runtime_ready_s + self.runtime_ready_to_model_loaded_s
                + self.model_loaded_to_ready_s)

    @property
    def wake_s(self) -> float:
        """Wake to ready: ``runtime_warm_wake_s`` when the profile has it, else the cold
        start less its runtime phase (spawn -> runtime_ready), i.e. the model's load and
        the server's readiness, which a wake repeats and the process start does not."""
        if self.runtime_warm_wake_s is not None:
            return float(self.runtime_warm_wake_s)
        return self.runtime_ready_to_model_loaded_s + self.model_loaded_to_ready_s

    def phase_power_w(self, phase: str) -> float | None:
        """Mean power (W) in an energy phase of the analysis (analysis.energy.PHASES), or
        None if unknown: ``empty`` is ``bare_idle``; ``runtime_warm`` is its own state when
        the profile has it, else ``context_idle`` (a sleeping instance holds only its
        runtime, as the context-only probe does); the others are their own states."""
        if phase == "empty":
            state = "bare_idle"
        elif phase == "runtime_warm" and "runtime_warm" not in self.power_w:
            state = "context_idle"
        else:
            state = phase
        value = self.power_w.get(state)
        return None if value is None else float(value)

    def warm_ttft_s(self, prompt_tokens: float) -> float:
        return self.ttft_base_s + self.ttft_s_per_prompt_token * prompt_tokens

    def record(self) -> dict[str, Any]:
        """JSON-safe form (``from_record`` reads it back)."""
        data = dataclasses.asdict(self)
        data["sources"] = list(self.sources)
        data["power_w"] = dict(self.power_w)
        data["samples"] = {k: list(v) for k, v in self.samples.items()}
        return data

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PlatformProfile:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(record) - known
        if unknown:
            raise UserError(f"profile record has unknown keys {sorted(unknown)}")
        data = dict(record)
        data["sources"] = tuple(data.get("sources", ()))
        data["samples"] = {k: tuple(v) for k, v in data.get("samples", {}).items()}
        return cls(**data)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.record(), indent=2, sort_keys=True) + "\n",
                        encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> PlatformProfile:
        try:
            return cls.from_record(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise UserError(f"no such profile {str(path)!r}") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"{str(path)!r} is not a platform profile: {exc}") from exc
