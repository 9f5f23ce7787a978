"""Small NaN-aware numeric helpers shared by the analysis and report steps."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def num(value: Any) -> float:
    """`value` as a float; NaN where it is not a number (None, text, empty cell)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def ratio(a: float, b: float) -> float:
    """a / b; NaN when b is 0, infinite or NaN, or a is not finite."""
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def mean(values: Any) -> float:
    """Mean of the numeric values (others dropped); NaN when there are none."""
    s = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    return float(s.mean()) if not s.empty else math.nan


def min_nan(*values: float) -> float:
    """min() that propagates NaN (the builtin's answer depends on the argument order)."""
    return math.nan if any(math.isnan(v) for v in values) else min(values)


__all__ = ["mean", "min_nan", "num", "ratio"]
