"""Deployment strategies. Adding one: a module beside these whose policy class is decorated
with ``@register`` (and imported below), nothing else."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalezero.errors import UserError

# Imported for their @register: each module adds its policy to the registry.
from scalezero.serving.strategies import (  # noqa: F401
    always_on,
    hybrid_histogram,
    keep_warm,
    naive,
    tiered,
)
from scalezero.serving.strategies.base import Accounting, Policy
from scalezero.serving.strategies.registry import policies, policy, register, registered

_JSON_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}


def make_policy(policy_name: str, params: Mapping[str, Any] | None = None) -> Policy:
    """Build a policy by registry name; unknown names and parameters are user errors."""
    policy_class = policy(policy_name)
    params = dict(params or {})
    fields = {f.name for f in dataclasses.fields(policy_class)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise UserError(
            f"policy {policy_name!r} has no parameter(s) {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(fields))})"
        )
    try:
        return policy_class(**params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"policy {policy_name!r}: {exc}") from None


def recorded_accounting(record: Mapping[str, Any]) -> Accounting:
    """A policy's accounting from run.json's ``policy`` section (or a row naming it).

    Newer records carry it (``accounting``); for older ones the policy is rebuilt from
    its recorded ``name`` and those recorded values that are parameters of that policy,
    and asked. Raises UserError when the record names no known policy.
    """
    saved = record.get("accounting")
    if isinstance(saved, Mapping):
        return Accounting.from_record(saved)
    name = record.get("name")
    if not isinstance(name, str) or not name:
        raise UserError("the record names no policy")
    fields = {f.name for f in dataclasses.fields(policy(name))}
    params = {key: value for key, value in record.items()
              if key in fields and value is not None
              and not (isinstance(value, float) and math.isnan(value))}
    return make_policy(name, params).accounting()


def parameter_schema() -> dict[str, dict[str, Any]]:
    """JSON schema of every registered policy's parameters, by name (for the config schema).

    The type comes from the field's annotation, bounds from its ``metadata`` (``minimum``);
    the parameters all policies share come first, as the base class defines them.
    """
    schema: dict[str, dict[str, Any]] = {}
    # Any: the base class is abstract, and dataclasses.fields takes it all the same.
    classes: list[Any] = [Policy, *(policy(name) for name in policies())]
    for policy_class in classes:
        for field in dataclasses.fields(policy_class):
            if field.name not in schema:
                schema[field.name] = {"type": _JSON_TYPES.get(str(field.type), "number"),
                                      **field.metadata}
    return schema


def parse_param_pairs(pairs: list[str]) -> dict[str, Any]:
    """Policy parameters from command-line KEY=VALUE pairs (numbers become numbers)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param expects KEY=VALUE, got {pair!r}")
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            params[key] = value
    return params


def policy_source_file(policy_name: str) -> Path:
    """The module that defines a policy, so the workflow can rerun a strategy when it changes."""
    return Path(inspect.getfile(policy(policy_name)))


__all__ = ["Accounting", "Policy", "make_policy", "parameter_schema", "parse_param_pairs",
           "policies", "policy", "policy_source_file", "recorded_accounting", "register",
           "registered"]
