"""The report's warm-tier section: the tier table, the engine comparison and the goal
checks, from the tier bench's outputs (`scalezero.measure.tiers`)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalezero.measure.tiers import TIERS, read_csv
from scalezero.report.format import NA, fmt, fmt_pct, markdown_table

TIER_NAMES = {"loaded": "loaded", "runtime_warm": "runtime-warm",
              "host_cached": "host-cached", "disk_cold": "disk-cold"}
NOT_MEASURED = ("The warm tiers and the engines were not measured (`tiers.enabled` in the "
                "configuration).\n")


def _median(rows: Sequence[Mapping[str, Any]], column: str) -> float | None:
    values = []
    for row in rows:
        cell = row.get(column)
        if cell not in (None, ""):
            values.append(float(cell))
    return statistics.median(values) if values else None


def tier_table(tier_rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per engine and tier: medians over the repeats."""
    lines: list[list[Any]] = []
    for engine in dict.fromkeys(str(r["engine"]) for r in tier_rows):
        for tier in TIERS:
            rows = [r for r in tier_rows if r["engine"] == engine and r["tier"] == tier]
            if not rows:
                continue
            ok = [r for r in rows if r.get("status") == "ok"]
            if not ok:
                lines.append([engine, TIER_NAMES[tier], NA, NA, NA, NA, NA, NA,
                              f"absent: {rows[0].get('reason') or 'not measured'}"])
                continue
            sources = sorted({str(r.get("energy_source") or "none") for r in ok})
            started = sorted({str(r["start_tier"]) for r in ok if r.get("start_tier")})
            lines.append([
                engine, TIER_NAMES[tier], len(ok), fmt(_median(ok, "wake_s")),
                fmt(_median(ok, "first_token_s")), fmt(_median(ok, "rss_mib")),
                fmt(_median(ok, "page_cache_mib")), fmt(_median(ok, "idle_power_w")),
                ", ".join(sources) + (f"; start measured as {', '.join(started)}"
                                      if started else ""),
            ])
    return markdown_table(
        ["engine", "tier", "repeats", "to ready, s", "to first token, s",
         "memory held (RSS), MiB", "file in page cache, MiB", "idle power, W",
         "energy source; notes"], lines,
        align=["l", "l", "r", "r", "r", "r", "r", "r", "l"])


def engine_table(engine_rows: Sequence[Mapping[str, Any]]) -> str:
    lines: list[list[Any]] = []
    for row in engine_rows:
        if row.get("status") != "ok":
            lines.append([row["engine"], row["clients"], NA, NA, NA, NA,
                          f"absent: {row.get('reason') or 'not measured'}"])
            continue
        lines.append([row["engine"], row["clients"], row["requests"], fmt(row["ttft_p50_ms"]),
                      fmt(row["ttft_p99_ms"]), fmt(row["throughput_tok_s"]),
                      f"{row['path']}, {row['slots']} slot(s)"])
    return markdown_table(["engine", "clients", "requests", "TTFT p50, ms", "TTFT p99, ms",
                           "throughput, tokens/s", "path"], lines,
                          align=["l", "r", "r", "r", "r", "r", "l"])


def _verdict(met: Any) -> str:
    return "met" if met is True else "not met" if met is False else "not checked"


def goal_sentences(summary: Mapping[str, Any]) -> list[str]:
    """The three goal checks, stated from the numbers."""
    out = []
    for engine, check in summary.get("runtime_warm_wake", {}).items():
        if check.get("met") is None:
            out.append(f"Runtime-warm wake of {engine}: not checked ({check.get('reason')}).")
            continue
        out.append(
            f"Runtime-warm wake of {engine}: {fmt(check['runtime_warm_wake_s'])} s against "
            f"{fmt(check['host_cached_start_s'])} s for a host-cached start, "
            f"{fmt_pct(check['share'])} of it (goal: at most {fmt_pct(check['goal_share'])}): "
            f"{_verdict(check['met'])}.")
    for engine, check in summary.get("disk_cold_prediction", {}).items():
        if check.get("measured_difference_s") is None or check.get(
                "predicted_difference_s") is None:
            out.append(f"Disk-cold prediction for {engine}: not checked "
                       f"({check.get('reason')}).")
            continue
        error = check.get("relative_error")
        out.append(
            f"Disk-cold minus host-cached start of {engine}: "
            f"{fmt(check['measured_difference_s'])} s measured against "
            f"{fmt(check['predicted_difference_s'])} s predicted from the read bandwidth "
            + (f"(off by {fmt_pct(error)}; goal: within {fmt_pct(check['tolerance'])}): "
               if error is not None else f"({check.get('reason', 'no prediction')}): ")
            + f"{_verdict(check['met'])}."
            + (f" The host-cached starts alone spread over {fmt(check['host_cached_range_s'])} s."
               if check.get("host_cached_range_s") is not None else ""))
    check = summary.get("native_throughput", {})
    if check.get("met") is None:
        out.append(f"Native throughput: not checked ({check.get('reason', 'not measured')}).")
    else:
        out.append(
            f"At {check['clients']} clients llama-server served {fmt(check['native_tok_s'])} "
            f"tokens/s against {fmt(check['python_tok_s'])} for llama-cpp-python, "
            f"{fmt(check['ratio'])}x (goal: at least {fmt(check['goal_ratio'])}x): "
            f"{_verdict(check['met'])}.")
    return out


def tiers_md(files: Mapping[str, Path] | None) -> str:
    """The section's generated part; without the bench's outputs, a sentence saying so."""
    if files is None:
        return NOT_MEASURED
    tier_rows = read_csv(Path(files["tiers"]))
    engine_rows = read_csv(Path(files["engines"]))
    summary = json.loads(Path(files["summary"]).read_text(encoding="utf-8"))
    bandwidth = summary.get("read_bandwidth", {})
    text = [
        "Each tier's time to ready and to the first token of one tiny request (from the "
        "spawn for the starts, from the wake request for runtime-warm), the memory it "
        "holds while idle (RSS of the instance's processes, none without a process; for "
        "the starts, the model file's pages in the page cache just before) and the "
        "device's idle power in it, medians over the repeats:\n",
        tier_table(tier_rows),
        f"\nThe model file read at {fmt(bandwidth.get('cold_read_mib_s'))} MiB/s after its "
        f"cached pages were dropped ({bandwidth.get('cold_read_method', NA)}) and at "
        f"{fmt(bandwidth.get('page_cache_read_mib_s'))} MiB/s from the page cache.\n",
        "\nThe engines always-on, straight to the instance (no gateway), under concurrent "
        "closed-loop clients:\n",
        engine_table(engine_rows),
        "\n" + "\n".join(f"- {line}" for line in goal_sentences(summary)) + "\n",
    ]
    return "\n".join(text)


__all__ = ["NOT_MEASURED", "engine_table", "goal_sentences", "tier_table", "tiers_md"]
