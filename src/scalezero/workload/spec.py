"""Workload configuration: the accepted keys per kind, their validation and JSON schema.

One table (KEYS_BY_KIND) drives both the runtime checks and WORKLOAD_SCHEMA, so the
schema that config validation uses and the checks that generate_trace makes cannot
drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scalezero.errors import UserError

MINUTES_PER_DAY = 1440
ARRIVALS_WITHIN_MINUTE = ("uniform", "even", "poisson")
TOKEN_MAPPINGS = ("clamp", "scale")


@dataclass(frozen=True)
class Key:
    """One configuration key.

    `type` is one of: number, integer, string, choice, tokens (an integer >= 1 or a
    {min, max} mapping of such integers), offset (a number >= 0 or "first").
    """

    name: str
    type: str
    help: str
    required: bool = False
    default: Any = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None
    choices: tuple[str, ...] = ()


COMMON_KEYS: tuple[Key, ...] = (
    Key(
        "seed",
        "integer",
        "seed of the random streams (arrivals, lengths, prompts)",
        required=True,
        minimum=0,
    ),
    Key(
        "max_tokens",
        "tokens",
        "output tokens per request: an int or {min, max} (uniform)",
        default=64,
    ),
    Key(
        "prompt_words",
        "tokens",
        "prompt length in words: an int or {min, max} (uniform)",
        default=32,
    ),
    Key("max_requests", "integer", "keep only the first N requests", minimum=1),
    Key("description", "string", "free text, ignored"),
)

# Recorded traces (trace_csv, azure_llm) share the meaning of time_scale.
_TIME_SCALE = Key(
    "time_scale",
    "number",
    "compression factor: 10 replays ten times faster",
    default=1.0,
    minimum=0,
    exclusive_minimum=True,
)

KEYS_BY_KIND: dict[str, tuple[Key, ...]] = {
    "poisson": (
        Key(
            "rate_rps",
            "number",
            "mean arrival rate",
            required=True,
            minimum=0,
            exclusive_minimum=True,
        ),
        Key(
            "duration_s",
            "number",
            "arrivals fall in [0, duration_s)",
            required=True,
            minimum=0,
            exclusive_minimum=True,
        ),
    ),
    "gamma": (
        Key(
            "rate_rps",
            "number",
            "mean arrival rate",
            required=True,
            minimum=0,
            exclusive_minimum=True,
        ),
        Key(
            "burstiness",
            "number",
            "gamma shape of inter-arrival times (CV^2 = 1/burstiness; 1 = Poisson)",
            required=True,
            minimum=0,
            exclusive_minimum=True,
        ),
        Key(
            "duration_s",
            "number",
            "arrivals fall in [0, duration_s)",
            required=True,
            minimum=0,
            exclusive_minimum=True,
        ),
    ),
    "bursty": (
        Key(
            "bursts",
            "integer",
            "number of bursts (each has at least one request)",
            required=True,
            minimum=1,
        ),
        Key(
            "burst_duration_s",
            "number",
            "length of each burst window",
            required=True,
            minimum=0,
            exclusive_minimum=True,
        ),
        Key(
            "burst_rate_rps",
            "number",
            "Poisson arrival rate inside a burst",
            required=True,
            minimum=0,
            exclusive_minimum=True,
        ),
        Key(
            "idle_gap_s",
            "number",
            "silence between the end of a burst and the next",
            required=True,
            minimum=0,
        ),
        Key("first_burst_at_s", "number", "start of the first burst", default=0.0, minimum=0),
    ),
    "trace_csv": (
        Key("path", "string", "CSV with a t_sched_s (or timestamp_s) column", required=True),
        _TIME_SCALE,
        Key(
            "start_offset_s",
            "offset",
            "source time that becomes t=0 (earlier rows dropped); 'first' = earliest row",
            default=0.0,
        ),
    ),
    "azure_functions": (
        Key("path", "string", "invocations_per_function_md.anon.dNN.csv", required=True),
        Key(
            "function",
            "string",
            "a HashFunction, 'busiest' or 'index:N' (0-based row)",
            default="busiest",
        ),
        Key("app", "string", "HashApp, to pick among functions with the same HashFunction"),
        Key(
            "start_minute",
            "integer",
            "first minute column taken (1..1440)",
            default=1,
            minimum=1,
            maximum=MINUTES_PER_DAY,
        ),
        Key(
            "minutes",
            "integer",
            "number of minutes taken (default: to the end of the day)",
            minimum=1,
            maximum=MINUTES_PER_DAY,
        ),
        Key(
            "time_compression",
            "number",
            "60 = one trace minute replays in one second",
            default=1.0,
            minimum=0,
            exclusive_minimum=True,
        ),
        Key(
            "arrivals_within_minute",
            "choice",
            "how a minute's count becomes send times",
            default="uniform",
            choices=ARRIVALS_WITHIN_MINUTE,
        ),
    ),
    "azure_llm": (
        Key(
            "path",
            "string",
            "CSV with exactly TIMESTAMP, ContextTokens, GeneratedTokens (Azure LLM traces)",
            required=True,
        ),
        Key(
            "window_start_s",
            "number",
            "start of the replayed window, seconds after the file's first request",
            default=0.0,
            minimum=0,
        ),
        Key(
            "window_s",
            "number",
            "length of the window in trace seconds (default: to the end of the file)",
            minimum=0,
            exclusive_minimum=True,
        ),
        Key(
            "training_s",
            "number",
            "trace seconds before window_start_s whose thinned, time-scaled arrivals "
            "become the workload's history, learned by adaptive policies before the run "
            "(0: none)",
            default=0.0,
            minimum=0,
        ),
        Key(
            "keep_probability",
            "number",
            "keep each request with this probability (seeded; default 1)",
            minimum=0,
            exclusive_minimum=True,
            maximum=1,
        ),
        Key(
            "target_rate_rps",
            "number",
            "thin to this mean replayed rate over the window (instead of keep_probability)",
            minimum=0,
            exclusive_minimum=True,
        ),
        _TIME_SCALE,
        Key(
            "token_mapping",
            "choice",
            "clamp: min(count, limit); scale: the window's maximum lands on the limit",
            default="clamp",
            choices=TOKEN_MAPPINGS,
        ),
        Key(
            "max_prompt_tokens",
            "integer",
            "limit for ContextTokens; the mapped count is the prompt's word count",
            default=256,
            minimum=1,
        ),
        Key(
            "max_output_tokens",
            "integer",
            "limit for GeneratedTokens; the mapped count is the request's max_tokens",
            default=128,
            minimum=1,
        ),
    ),
}

KINDS: tuple[str, ...] = tuple(KEYS_BY_KIND)

# Common keys a kind does not take, with the reason given when a config sets one: a
# recorded LLM trace carries its own prompt and output lengths.
UNUSED_COMMON_KEYS: dict[str, dict[str, str]] = {
    "azure_llm": {
        "max_tokens": "the trace's GeneratedTokens set it; limit with max_output_tokens",
        "prompt_words": "the trace's ContextTokens set it; limit with max_prompt_tokens",
    },
}

# Pairs of keys of one kind that may not both be set.
EXCLUSIVE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "azure_llm": (("keep_probability", "target_rate_rps"),),
}


def kind_keys(kind: str) -> tuple[Key, ...]:
    """The keys kind `kind` accepts: the common ones it uses, then its own."""
    unused = UNUSED_COMMON_KEYS.get(kind, {})
    return tuple(key for key in COMMON_KEYS if key.name not in unused) + KEYS_BY_KIND[kind]


def _fail(workload: str, key: str, message: str) -> UserError:
    return UserError(f"workload {workload!r}: key {key!r} {message}")


def _is_number(value: Any) -> bool:
    # bool is an int subclass; `true` for a rate is a config mistake, not 1.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(workload: str, key: str, value: Any) -> int:
    if _is_number(value) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise _fail(workload, key, f"must be an integer, got {value!r}")


def _check_bounds(workload: str, key: Key, value: float) -> None:
    if key.minimum is not None:
        if key.exclusive_minimum and not value > key.minimum:
            raise _fail(workload, key.name, f"must be > {key.minimum:g}, got {value!r}")
        if not key.exclusive_minimum and value < key.minimum:
            raise _fail(workload, key.name, f"must be >= {key.minimum:g}, got {value!r}")
    if key.maximum is not None and value > key.maximum:
        raise _fail(workload, key.name, f"must be <= {key.maximum:g}, got {value!r}")


def _tokens(workload: str, key: str, value: Any) -> tuple[int, int]:
    if isinstance(value, Mapping):
        extra = set(value) - {"min", "max"}
        if extra or "min" not in value or "max" not in value:
            raise _fail(workload, key, f"must be an integer or {{min, max}}, got {value!r}")
        low = _integer(workload, f"{key}.min", value["min"])
        high = _integer(workload, f"{key}.max", value["max"])
    else:
        low = high = _integer(workload, key, value)
    if low < 1:
        raise _fail(workload, key, f"must be >= 1, got {value!r}")
    if low > high:
        raise _fail(workload, key, f"needs min <= max, got {value!r}")
    return low, high


def _value(workload: str, key: Key, value: Any) -> Any:
    if key.type == "number":
        if not _is_number(value) or not math.isfinite(value):
            raise _fail(workload, key.name, f"must be a finite number, got {value!r}")
        _check_bounds(workload, key, float(value))
        return float(value)
    if key.type == "integer":
        number = _integer(workload, key.name, value)
        _check_bounds(workload, key, number)
        return number
    if key.type == "string":
        if not isinstance(value, str) or not value:
            raise _fail(workload, key.name, f"must be a non-empty string, got {value!r}")
        return value
    if key.type == "choice":
        if value not in key.choices:
            raise _fail(workload, key.name, f"must be one of {list(key.choices)}, got {value!r}")
        return value
    if key.type == "tokens":
        return _tokens(workload, key.name, value)
    if key.type == "offset":
        if value == "first":
            return value
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise _fail(workload, key.name, f"must be a number >= 0 or 'first', got {value!r}")
        return float(value)
    raise AssertionError(f"unknown key type {key.type}")


def validate_spec(workload: str, spec: Any) -> dict[str, Any]:
    """Check one workload entry and return it with defaults filled in.

    Token-like keys (max_tokens, prompt_words) come back as (min, max) tuples; absent
    optional keys without a default come back as None. Common keys a kind does not use
    (UNUSED_COMMON_KEYS) are refused and left out of the result.
    """
    if not isinstance(spec, Mapping):
        raise UserError(f"workload {workload!r}: must be a mapping, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind is None:
        raise _fail(workload, "kind", f"is missing; one of {list(KINDS)}")
    if kind not in KEYS_BY_KIND:
        raise _fail(workload, "kind", f"must be one of {list(KINDS)}, got {kind!r}")
    keys = kind_keys(kind)
    for name, reason in UNUSED_COMMON_KEYS.get(kind, {}).items():
        if name in spec:
            raise _fail(workload, name, f"is not used by kind {kind!r}: {reason}")
    for first, second in EXCLUSIVE_KEYS.get(kind, ()):
        if first in spec and second in spec:
            raise _fail(workload, second, f"cannot be set together with {first!r}; choose one")
    known = {key.name for key in keys} | {"kind", "strategies", "models"}
    unknown = sorted(str(name) for name in spec if name not in known)
    if unknown:
        raise _fail(workload, unknown[0], f"is not a {kind} setting; allowed: {sorted(known)}")
    resolved: dict[str, Any] = {"kind": kind}
    for key in keys:
        if key.name in spec:
            resolved[key.name] = _value(workload, key, spec[key.name])
        elif key.required:
            raise _fail(workload, key.name, f"is required for kind {kind!r}")
        else:
            default = key.default
            resolved[key.name] = _value(workload, key, default) if default is not None else None
    return resolved


def _key_schema(key: Key) -> dict[str, Any]:
    schema: dict[str, Any]
    if key.type in ("number", "integer"):
        schema = {"type": key.type}
        if key.minimum is not None:
            schema["exclusiveMinimum" if key.exclusive_minimum else "minimum"] = key.minimum
        if key.maximum is not None:
            schema["maximum"] = key.maximum
    elif key.type == "string":
        schema = {"type": "string", "minLength": 1}
    elif key.type == "choice":
        schema = {"enum": list(key.choices)}
    elif key.type == "tokens":
        schema = {
            "oneOf": [
                {"type": "integer", "minimum": 1},
                {
                    "type": "object",
                    "required": ["min", "max"],
                    "properties": {
                        "min": {"type": "integer", "minimum": 1},
                        "max": {"type": "integer", "minimum": 1},
                    },
                    "additionalProperties": False,
                },
            ]
        }
    elif key.type == "offset":
        schema = {"anyOf": [{"type": "number", "minimum": 0}, {"const": "first"}]}
    else:
        raise AssertionError(f"unknown key type {key.type}")
    schema["description"] = key.help
    if key.default is not None:
        schema["default"] = key.default
    return schema


#: The optional model mix of a workload (checked in detail by generate_trace).
MODELS_SCHEMA: dict[str, Any] = {
    "description": "a mix of models: {popularity: zipf|uniform, s: exponent, models: "
    "[names]} over this workload's arrivals, or {name: {keys over this workload's}} for "
    "one arrival process per model; each request's model goes into the trace's model column",
    "type": "object",
    "minProperties": 1,
}


def build_schema() -> dict[str, Any]:
    """JSON schema (draft 2020-12) for one entry of the `workloads:` mapping.

    Self-contained (no $ref), so it can be pasted under any property of a larger schema.
    """
    branches = []
    for kind in KEYS_BY_KIND:
        keys = kind_keys(kind)
        properties: dict[str, Any] = {"kind": {"const": kind}}
        properties.update({key.name: _key_schema(key) for key in keys})
        properties["models"] = MODELS_SCHEMA
        then: dict[str, Any] = {
            "required": ["kind", *(key.name for key in keys if key.required)],
            "properties": properties,
            "additionalProperties": False,
        }
        exclusive = EXCLUSIVE_KEYS.get(kind, ())
        if exclusive:
            then["not"] = {"anyOf": [{"required": list(pair)} for pair in exclusive]}
        branches.append(
            {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]}, "then": then}
        )
    return {
        "title": "workload",
        "description": "A seeded request trace; `kind` selects the generator.",
        "type": "object",
        "required": ["kind", "seed"],
        "properties": {"kind": {"enum": list(KINDS)}},
        "allOf": branches,
    }


WORKLOAD_SCHEMA: dict[str, Any] = build_schema()
