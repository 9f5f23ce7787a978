"""One list of the report's figures: the drawing dispatch and the workflow's rules follow it."""

from __future__ import annotations

import re
from pathlib import Path

from scalezero.report.figure_list import (
    FIGURE_NAMES,
    FIGURE_SPECS,
    figure_keys,
    figure_numbers,
)
from scalezero.report.figures import FIGURES

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "workflow" / "rules"
#: Figures whose rule draws them without scalezero.report.figures' dispatch.
DRAWN_BY_OWN_RULE = {"size_sweep", "sharing_memory"}


def _rule_blocks() -> dict[str, str]:
    """Rule name -> its text, over every rule file."""
    blocks: dict[str, str] = {}
    for path in sorted(RULES_DIR.glob("*.smk")):
        # Rules of an optional step are indented under its `if`.
        parts = re.split(r"^\s*rule (\w+):\n", path.read_text(encoding="utf-8"), flags=re.M)
        blocks.update(zip(parts[1::2], parts[2::2], strict=True))
    return blocks


def test_dispatch_draws_every_listed_figure() -> None:
    assert set(FIGURES) - DRAWN_BY_OWN_RULE == set(FIGURE_NAMES) - DRAWN_BY_OWN_RULE


def test_figure_rules_match_the_list() -> None:
    blocks = _rule_blocks()
    figure_rules = {name for name in blocks if name.startswith("figure_")}
    assert figure_rules == {f"figure_{n}" for n in FIGURE_NAMES
                            if n not in DRAWN_BY_OWN_RULE}
    for spec in FIGURE_SPECS:
        block = blocks[spec.rule]
        assert f'caption="../../report/captions/{spec.caption}"' in block, spec
        assert f'category="{spec.category}"' in block, spec
        assert (REPO_ROOT / "report" / "captions" / spec.caption).is_file(), spec
        if spec.name not in DRAWN_BY_OWN_RULE:
            assert f'figure="{spec.name}"' in block, spec


def test_keys_and_numbers_follow_report_order() -> None:
    strategies = ["always_on", "naive"]
    assert figure_keys(strategies) == ["latency", "cold_starts", "frontier",
                                       "timeline_always_on", "timeline_naive", "energy",
                                       "projections"]
    assert figure_numbers(strategies, size_sweep=True) == {
        "latency": 1, "cold_starts": 2, "frontier": 3, "size_sweep": 4,
        "timeline_always_on": 5, "timeline_naive": 6, "energy": 7, "projections": 8}
