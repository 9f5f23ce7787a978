"""Strategy registry. Adding a strategy: one module beside these, one line in REGISTRY."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalezero.errors import UserError
from scalezero.serving.strategies.always_on import AlwaysOn
from scalezero.serving.strategies.base import Policy
from scalezero.serving.strategies.keep_warm import KeepWarm
from scalezero.serving.strategies.naive import Naive

REGISTRY: dict[str, type[Policy]] = {
    AlwaysOn.name: AlwaysOn,
    Naive.name: Naive,
    KeepWarm.name: KeepWarm,
}


def register(policy_class: type[Policy]) -> type[Policy]:
    """Add a policy class under its ``name`` (usable as a class decorator)."""
    if not policy_class.name:
        raise ValueError(f"{policy_class.__qualname__} has no name")
    REGISTRY[policy_class.name] = policy_class
    return policy_class


def make_policy(policy_name: str, params: Mapping[str, Any] | None = None) -> Policy:
    """Build a policy by registry name; unknown names and parameters are user errors."""
    try:
        policy_class = REGISTRY[policy_name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UserError(f"unknown policy {policy_name!r} (known: {known})") from None
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
    return Path(inspect.getfile(REGISTRY[policy_name]))


__all__ = ["REGISTRY", "Policy", "make_policy", "parse_param_pairs", "policy_source_file",
           "register"]
