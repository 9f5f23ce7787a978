"""Display formatting of the report's numbers and its Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scalezero.analysis.stats import mean_ci

NA = "n/a"
CI_LEVEL = 0.95


def fmt(value: Any, digits: int = 3, *, thousands: bool = True) -> str:
    """A number for prose: `digits` significant digits, thousands separators, no
    scientific notation for everyday magnitudes; NaN/None as "n/a"."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return NA
    if not math.isfinite(x):
        return NA
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 15 or magnitude < -6:
        return f"{x:.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    rounded = round(x, decimals)
    text = f"{rounded:,.{decimals}f}" if thousands else f"{rounded:.{decimals}f}"
    if "." in text:  # 1.50 -> 1.5, 24.0 -> 24: zeros after the point say nothing here
        text = text.rstrip("0").rstrip(".")
    return text


def fmt_int(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return NA
    return f"{round(x):,}" if math.isfinite(x) else NA


def fmt_pct(share: Any, digits: int = 3) -> str:
    """A 0-1 share as a percentage ("12.5 %")."""
    try:
        x = float(share)
    except (TypeError, ValueError):
        return NA
    if not math.isfinite(x):
        return NA
    if 0 < abs(x) < 1e-4:
        return "< 0.01 %"
    return f"{fmt(100.0 * x, digits)} %"


def fmt_ci(values: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    """Mean over repeats, with the half-width of its 95 % interval when there are two
    or more finite values."""
    ci = mean_ci([float(v) * scale for v in values], CI_LEVEL)
    if ci.n == 0:
        return NA
    half = (ci.high - ci.low) / 2.0 if ci.n > 1 else math.nan
    if not math.isfinite(half) or half == 0:
        return fmt(ci.mean, digits)
    return f"{fmt(ci.mean, digits)} ± {fmt(half, 2)}"


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
    """A pipe table; align per column: "l" or "r" (default: first left, rest right)."""
    align = list(align or ["l"] + ["r"] * (len(header) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


__all__ = ["CI_LEVEL", "NA", "fmt", "fmt_ci", "fmt_int", "fmt_pct", "markdown_table"]
