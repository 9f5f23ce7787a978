"""The `simulation:` configuration key: what the scenario rules simulate, and how much.

Standard library only: the workflow imports it when it loads (for the rules' params),
and the configuration schema merges `SIMULATION_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scalezero.errors import UserError

#: The shipped Azure LLM inference trace (code service): one production hour.
DEFAULT_TRACE = "data/azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv"
#: The shipped published-profiles data file (scalezero.simulate.published).
DEFAULT_PUBLISHED_FILE = "data/profiles/published.yaml"

DEFAULTS: dict[str, Any] = {
    "trace": DEFAULT_TRACE,
    "thinning": [1.0, 0.1, 0.01],
    "rates_rph": [10, 30, 100, 300, 1000],
    "ttl_s": [0, 10, 30, 60, 300, 900],
    "requests_per_level": 1000,
    "profiles": ["h100", "a100", "l40s", "l4"],
    "published_file": DEFAULT_PUBLISHED_FILE,
    "seed": 0,
}

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}

SIMULATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "trace-driven simulation of the strategies on the measured profile "
                   "and on published GPU profiles",
    "properties": {
        "trace": {"type": "string", "default": DEFAULT_TRACE,
                  "description": "Azure LLM trace CSV whose whole hour is simulated"},
        "thinning": {"type": "array", "minItems": 1, "uniqueItems": True,
                     "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                     "default": DEFAULTS["thinning"],
                     "description": "keep probabilities of the hour's requests (1: all)"},
        "rates_rph": {"type": "array", "minItems": 1, "uniqueItems": True,
                      "items": _POSITIVE, "default": DEFAULTS["rates_rph"],
                      "description": "Poisson traffic rates of the rate x TTL grid"},
        "ttl_s": {"type": "array", "minItems": 1, "uniqueItems": True,
                  "items": {"type": "number", "minimum": 0}, "default": DEFAULTS["ttl_s"],
                  "description": "keep_warm TTLs of the rate x TTL grid"},
        "requests_per_level": {"type": "integer", "minimum": 1,
                               "default": DEFAULTS["requests_per_level"],
                               "description": "expected Poisson requests simulated per grid "
                                              "cell and per projection traffic level"},
        "profiles": {"type": "array", "uniqueItems": True, "items": {"type": "string"},
                     "default": DEFAULTS["profiles"],
                     "description": "published GPU profiles simulated beside the measured "
                                    "one (names in published_file)"},
        "published_file": {"type": "string", "default": DEFAULT_PUBLISHED_FILE,
                           "description": "data file of the published profiles"},
        "seed": {"type": "integer", "minimum": 0, "default": 0,
                 "description": "seed of the thinning, the arrivals and the request sizes"},
    },
}


@dataclass(frozen=True)
class SimulationSettings:
    """The `simulation:` key with its defaults applied."""

    trace: str
    thinning: tuple[float, ...]
    rates_rph: tuple[float, ...]
    ttl_s: tuple[float, ...]
    requests_per_level: int
    profiles: tuple[str, ...]
    published_file: str
    seed: int

    def record(self) -> dict[str, Any]:
        """Plain values (a rule's params: a change reruns the simulation)."""
        return {"trace": self.trace, "thinning": list(self.thinning),
                "rates_rph": list(self.rates_rph), "ttl_s": list(self.ttl_s),
                "requests_per_level": self.requests_per_level,
                "profiles": list(self.profiles), "published_file": self.published_file,
                "seed": self.seed}


def simulation_settings(config: Mapping[str, Any] | None) -> SimulationSettings:
    """The settings from a whole config (or just its `simulation` mapping's parent);
    missing keys take DEFAULTS."""
    given = dict((config or {}).get("simulation") or {})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise UserError(f"config: simulation has unknown keys {sorted(unknown)}")
    values = {**DEFAULTS, **given}
    thinning = tuple(float(x) for x in values["thinning"])
    if not thinning or any(not 0 < x <= 1 for x in thinning):
        raise UserError("config: simulation.thinning needs keep probabilities in (0, 1]")
    rates = tuple(float(x) for x in values["rates_rph"])
    ttls = tuple(float(x) for x in values["ttl_s"])
    if not rates or any(x <= 0 for x in rates):
        raise UserError("config: simulation.rates_rph needs rates > 0")
    if not ttls or any(x < 0 for x in ttls):
        raise UserError("config: simulation.ttl_s needs TTLs >= 0")
    if int(values["requests_per_level"]) < 1:
        raise UserError("config: simulation.requests_per_level must be >= 1")
    return SimulationSettings(
        trace=str(values["trace"]), thinning=thinning, rates_rph=rates, ttl_s=ttls,
        requests_per_level=int(values["requests_per_level"]),
        profiles=tuple(str(p) for p in values["profiles"]),
        published_file=str(values["published_file"]), seed=int(values["seed"]))


__all__ = [
    "DEFAULTS", "DEFAULT_PUBLISHED_FILE", "DEFAULT_TRACE", "SIMULATION_SCHEMA",
    "SimulationSettings", "simulation_settings",
]
