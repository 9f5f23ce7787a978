"""Schemathesis hooks for the gateway's fuzz test, loaded through ``SCHEMATHESIS_HOOKS``.

One rule of the chat API cannot be written in JSON Schema: a ``tool_choice`` that names a
function must name one of the ``tools``. Valid requests the fuzzer generates are made to
keep it (invalid ones are left alone), so that a 400 for them still counts as a failure.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: Any) -> Any:
    body = case.body
    positive = case.meta is None or case.meta.generation.mode.is_positive
    if not positive or not isinstance(body, dict):
        return case
    choice, tools = body.get("tool_choice"), body.get("tools")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and tools:
        first = tools[0].get("function") if isinstance(tools[0], dict) else None
        if isinstance(first, dict) and isinstance(first.get("name"), str):
            choice["function"]["name"] = first["name"]
    return case
