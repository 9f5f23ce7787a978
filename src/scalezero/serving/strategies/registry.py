"""The policy registry: policy modules add themselves with ``@register``; the rest of the
code finds them with ``policy(name)`` and ``policies()``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar

from scalezero.errors import UserError
from scalezero.serving.strategies.base import Policy

_REGISTRY: dict[str, type[Policy]] = {}
P = TypeVar("P", bound=type[Policy])


def register(policy_class: P) -> P:
    """Class decorator: make a policy usable by its ``name`` (config, CLI, run.json)."""
    if not policy_class.name:
        raise ValueError(f"{policy_class.__qualname__} has no name")
    _REGISTRY[policy_class.name] = policy_class
    return policy_class


def policy(policy_name: str) -> type[Policy]:
    """The policy class registered as ``policy_name``; an unknown name is a user error."""
    try:
        return _REGISTRY[policy_name]
    except KeyError:
        known = ", ".join(policies())
        raise UserError(f"unknown policy {policy_name!r} (known: {known})") from None


def policies() -> list[str]:
    """The registered policy names, sorted."""
    return sorted(_REGISTRY)


@contextlib.contextmanager
def registered(policy_class: type[Policy]) -> Iterator[type[Policy]]:
    """Register a policy for the length of a ``with`` block (tests), then forget it."""
    previous = _REGISTRY.get(policy_class.name)
    register(policy_class)
    try:
        yield policy_class
    finally:
        if previous is None:
            _REGISTRY.pop(policy_class.name, None)
        else:
            _REGISTRY[policy_class.name] = previous
