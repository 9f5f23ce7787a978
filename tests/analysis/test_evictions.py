"""The summary's evictions column counts drains with reason evicted inside the window."""

from __future__ import annotations

import pandas as pd

from scalezero.analysis.aggregate import SUMMARY_COLUMNS, count_evictions


def test_evictions_inside_the_window_are_counted() -> None:
    events = pd.DataFrame({
        "t_s": [1.0, 2.0, 3.0, 4.0, 9.0],
        "event": ["drain", "drain", "stopped", "drain", "drain"],
        "reason": ["evicted", "idle_ttl", "evicted", "evicted", "evicted"],
    })
    assert count_evictions(events, (0.0, 5.0)) == 2
    assert count_evictions(events.iloc[:0], (0.0, 5.0)) == 0
    assert "evictions" in SUMMARY_COLUMNS
