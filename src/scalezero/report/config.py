"""Config keys the report owns: `report`, beside `constants` and `projections`.

The sourced constants and the projection settings live in `scalezero.analysis.constants`
(the projections compute with them; the report cites them). REPORT_CONFIG_SCHEMA is the
JSON-schema fragment for all three keys; `scalezero.cli.config.config_schema()` merges it
into the pipeline's schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scalezero.analysis.constants import (
    PROJECTION_CONFIG_PROPERTIES,
    ProjectionSettings,
    projection_settings,
    validate_fragment,
)

DEFAULT_REPORT: dict[str, Any] = {
    "workload": None,
    "title": "Always-on, scale-to-zero and keep-warm LLM serving: latency, energy and cost",
    "author": "",
    "renderer": "auto",
}

REPORT_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **PROJECTION_CONFIG_PROPERTIES,
        "report": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "workload": {"type": ["string", "null"],
                             "description": "workload the report covers (default: the first)"},
                "title": {"type": "string", "default": DEFAULT_REPORT["title"]},
                "author": {"type": "string", "default": DEFAULT_REPORT["author"]},
                "renderer": {"enum": ["auto", "quarto", "pandoc"],
                             "description": "auto: Quarto when on PATH, else pandoc",
                             "default": DEFAULT_REPORT["renderer"]},
            },
        },
    },
}


@dataclass(frozen=True)
class ReportSettings:
    """The report's config keys, checked and with defaults filled in; `projection` holds
    the constants and projection settings the report cites."""

    projection: ProjectionSettings
    workload: str | None = None
    title: str = DEFAULT_REPORT["title"]
    author: str = DEFAULT_REPORT["author"]
    renderer: str = "auto"


def report_settings(config: Mapping[str, Any] | None) -> ReportSettings:
    """Read `constants`, `projections` and `report` from a config mapping (the whole
    config or just these keys); missing keys take their defaults."""
    config = dict(config or {})
    fragment = {k: config[k] for k in ("constants", "projections", "report")
                if config.get(k) is not None}
    # The whole fragment first, so the first error is reported whichever key holds it.
    validate_fragment(fragment, REPORT_CONFIG_SCHEMA)
    report = {**DEFAULT_REPORT, **fragment.get("report", {})}
    return ReportSettings(
        projection=projection_settings(fragment),
        workload=report.get("workload"),
        title=str(report["title"]),
        author=str(report["author"]),
        renderer=str(report["renderer"]),
    )


__all__ = ["DEFAULT_REPORT", "REPORT_CONFIG_SCHEMA", "ReportSettings", "report_settings"]
