"""Sourced constants and projection settings: config keys `constants` and `projections`.

Every constant the projections multiply with (grid carbon intensity, GPU-hour price, power
coefficients, ...) lives in config with its unit, source and date, so the report can
cite it and a change reruns only the steps that use it (projections, figures, report),
never a measured run. PROJECTION_CONFIG_PROPERTIES are the JSON-schema properties of
these two keys; `scalezero.report.config` adds the report's own key beside them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scalezero.errors import UserError

#: Constants the projections and the report use, with the value they ship with. Config
#: entries replace these one by one; a config may add constants of its own (they are
#: listed in the report).
DEFAULT_CONSTANTS: dict[str, dict[str, Any]] = {
    "carbon_intensity_g_per_kwh": {
        "value": 475.0,
        "unit": "gCO2e/kWh",
        "source": "CodeCarbon methodology: world-average carbon intensity of electricity, "
                  "used when the grid region is unknown "
                  "(https://mlco2.github.io/codecarbon/methodology.html)",
        "date": "2019 (IEA world average as used by CodeCarbon)",
    },
    "gpu_hour_price_usd": {
        "value": 0.8048,
        "unit": "USD/h",
        "source": "AWS EC2 On-Demand price of a g6.xlarge instance (1 x NVIDIA L4 24 GB, "
                  "4 vCPU, 16 GiB), US East (N. Virginia), Linux "
                  "(https://aws.amazon.com/ec2/pricing/on-demand/)",
        "date": "2025",
    },
    "gpu_tdp_w": {
        "value": 72.0,
        "unit": "W",
        "source": "NVIDIA L4 Tensor Core GPU datasheet, maximum thermal design power "
                  "(https://www.nvidia.com/en-us/data-center/l4/)",
        "date": "2023",
    },
    "cpu_min_w_per_vcpu": {
        "value": 0.74,
        "unit": "W/vCPU",
        "source": "Cloud Carbon Footprint methodology, AWS average power per vCPU at 0 % "
                  "utilisation, from SPECpower results "
                  "(https://www.cloudcarbonfootprint.org/docs/methodology/)",
        "date": "2021",
    },
    "cpu_max_w_per_vcpu": {
        "value": 3.5,
        "unit": "W/vCPU",
        "source": "Cloud Carbon Footprint methodology, AWS average power per vCPU at 100 % "
                  "utilisation, from SPECpower results "
                  "(https://www.cloudcarbonfootprint.org/docs/methodology/)",
        "date": "2021",
    },
    "ram_w_per_gib": {
        "value": 0.375,
        "unit": "W/GiB",
        "source": "CodeCarbon methodology, memory power of 3 W per 8 GB "
                  "(https://mlco2.github.io/codecarbon/methodology.html)",
        "date": "2023",
    },
    "datacenter_electricity_2024_twh": {
        "value": 415.0,
        "unit": "TWh in 2024",
        "source": "IEA, Energy and AI (2025): estimated electricity use of data centres "
                  "worldwide in 2024 (https://www.iea.org/reports/energy-and-ai)",
        "date": "2025-04",
    },
    "datacenter_electricity_2030_twh": {
        "value": 945.0,
        "unit": "TWh in 2030",
        "source": "IEA, Energy and AI (2025): projected electricity use of data centres "
                  "worldwide in 2030, base case (https://www.iea.org/reports/energy-and-ai)",
        "date": "2025-04",
    },
}

#: Constants the projections cannot do without (the rest have a use but are optional).
REQUIRED_CONSTANTS: tuple[str, ...] = (
    "carbon_intensity_g_per_kwh", "gpu_hour_price_usd", "cpu_min_w_per_vcpu",
    "cpu_max_w_per_vcpu", "ram_w_per_gib",
)

DEFAULT_PROJECTIONS: dict[str, Any] = {
    "traffic_rph": [1, 10, 100, 1000, 10000],
    "hours_per_day": 24,
    "reference_rph": 10,
}

_CONSTANT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["value", "unit", "source", "date"],
    "additionalProperties": False,
    "properties": {
        "value": {"type": "number"},
        "unit": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1,
                   "description": "where the value comes from (publication, price list, URL)"},
        "date": {"type": "string", "minLength": 1,
                 "description": "date of the source or of the price, e.g. 2025-06"},
    },
}

#: JSON-schema properties of the config keys `constants` and `projections`.
PROJECTION_CONFIG_PROPERTIES: dict[str, Any] = {
    "constants": {
        "type": "object",
        "description": "sourced constants: name -> {value, unit, source, date}; entries "
                       "replace the built-in ones of the same name",
        "propertyNames": {"pattern": "^[a-z][a-z0-9_]*$"},
        "additionalProperties": _CONSTANT_SCHEMA,
        "default": copy.deepcopy(DEFAULT_CONSTANTS),
    },
    "projections": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "traffic_rph": {
                "type": "array", "minItems": 1, "uniqueItems": True,
                "items": {"type": "number", "exclusiveMinimum": 0},
                "description": "traffic levels of the sweep, requests per hour (Poisson)",
                "default": list(DEFAULT_PROJECTIONS["traffic_rph"]),
            },
            "hours_per_day": {
                "type": "number", "exclusiveMinimum": 0, "maximum": 24,
                "description": "hours per day the service is offered",
                "default": DEFAULT_PROJECTIONS["hours_per_day"],
            },
            "reference_rph": {
                "type": "number", "exclusiveMinimum": 0,
                "description": "the low traffic level the discussion quotes, requests/h",
                "default": DEFAULT_PROJECTIONS["reference_rph"],
            },
        },
        "default": copy.deepcopy(DEFAULT_PROJECTIONS),
    },
}

PROJECTION_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": PROJECTION_CONFIG_PROPERTIES,
}


@dataclass(frozen=True)
class Constant:
    """One sourced constant."""

    name: str
    value: float
    unit: str
    source: str
    date: str


@dataclass(frozen=True)
class ProjectionSettings:
    """The `constants` and `projections` config keys, checked and with defaults filled in."""

    constants: dict[str, Constant]
    traffic_rph: tuple[float, ...]
    hours_per_day: float
    reference_rph: float

    def value(self, name: str) -> float:
        return self.constants[name].value


def validate_fragment(fragment: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Check a config fragment against `schema`; the first error as a UserError."""
    import jsonschema

    try:
        jsonschema.validate(dict(fragment), dict(schema))
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top)"
        raise UserError(f"config: {where}: {exc.message}") from None


def merged_constants(constants: Mapping[str, Any] | None) -> dict[str, Constant]:
    """Built-in constants overridden (entry by entry) by the config's."""
    raw = copy.deepcopy(DEFAULT_CONSTANTS)
    raw.update(copy.deepcopy(dict(constants or {})))
    out: dict[str, Constant] = {}
    for name, entry in raw.items():
        value = float(entry["value"])
        if not math.isfinite(value):
            raise UserError(f"config: constants.{name}.value must be a finite number")
        out[name] = Constant(name, value, str(entry["unit"]), str(entry["source"]),
                             str(entry["date"]))
    for name in REQUIRED_CONSTANTS:
        if out[name].value < 0:
            raise UserError(f"config: constants.{name}.value must be >= 0")
    if out["cpu_max_w_per_vcpu"].value < out["cpu_min_w_per_vcpu"].value:
        raise UserError("config: constants.cpu_max_w_per_vcpu must be >= cpu_min_w_per_vcpu")
    return out


def projection_settings(config: Mapping[str, Any] | None) -> ProjectionSettings:
    """Read `constants` and `projections` from a config mapping (the whole config or just
    these keys); missing keys take their defaults."""
    config = dict(config or {})
    fragment = {k: config[k] for k in ("constants", "projections")
                if config.get(k) is not None}
    validate_fragment(fragment, PROJECTION_CONFIG_SCHEMA)
    projections = {**DEFAULT_PROJECTIONS, **fragment.get("projections", {})}
    return ProjectionSettings(
        constants=merged_constants(fragment.get("constants")),
        traffic_rph=tuple(float(x) for x in projections["traffic_rph"]),
        hours_per_day=float(projections["hours_per_day"]),
        reference_rph=float(projections["reference_rph"]),
    )


def constants_as_dict(constants: Mapping[str, Constant]) -> dict[str, dict[str, Any]]:
    """Constants back in config form (name -> {value, unit, source, date})."""
    return {c.name: {"value": c.value, "unit": c.unit, "source": c.source, "date": c.date}
            for c in constants.values()}


__all__ = [
    "DEFAULT_CONSTANTS", "DEFAULT_PROJECTIONS", "PROJECTION_CONFIG_PROPERTIES",
    "PROJECTION_CONFIG_SCHEMA", "REQUIRED_CONSTANTS", "Constant", "ProjectionSettings",
    "constants_as_dict", "merged_constants", "projection_settings", "validate_fragment",
]
