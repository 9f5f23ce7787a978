"""The report's model-sharing section: several models sharing one device under a memory
budget against each on its own (`_generated/sharing.md`), the `sharing` variables its
text and the discussion cite, and the memory figure. The tables are
results/sharing/summary.csv and per_deployment.csv (`scalezero.analysis.sharing`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from scalezero.analysis.numbers import num
from scalezero.analysis.sharing import DEDICATED, SHARED, memory_over_time
from scalezero.report.format import NA, fmt, fmt_int, markdown_table

NOT_CONFIGURED = ("The model-sharing experiment was not configured (`sharing:` in the "
                  "configuration, e.g. `config/sharing.yaml`), so this report does not "
                  "compare models sharing one device with each model on its own.\n")


def _range(values: Sequence[float], digits: int = 3, integer: bool = False) -> str:
    """One value, or "low to high" over the variants."""
    finite = sorted(v for v in (num(x) for x in values) if math.isfinite(v))
    if not finite:
        return NA
    show = fmt_int if integer else (lambda v: fmt(v, digits))
    low, high = show(finite[0]), show(finite[-1])
    return low if low == high else f"{low} to {high}"


def _reference_dedicated(summary: pd.DataFrame) -> pd.Series | None:
    """The dedicated variant memory is compared with: always_on (every model held all
    the time) when measured, else the first dedicated one."""
    dedicated = summary[summary["kind"] == DEDICATED]
    if dedicated.empty:
        return None
    always_on = dedicated[dedicated["policy"] == "always_on"]
    return (always_on if not always_on.empty else dedicated).iloc[0]


def sharing_variables(summary: pd.DataFrame | None) -> dict[str, str]:
    """The `sharing` variables (display strings); `configured` is "no" without data."""
    if summary is None or summary.empty:
        return {"configured": "no", "divide": ""}
    shared = summary[summary["kind"] == SHARED]
    dedicated = _reference_dedicated(summary)
    out = {
        "configured": "yes",
        "variants": ", ".join(summary["variant"].astype(str)),
        "deployments": fmt_int(summary["deployments"].max()),
        "budget_mib": _range(shared["budget_mib"].tolist(), 4),
        "shared_mem_mean_mib": _range(shared["mem_mean_mib"].tolist()),
        "shared_mem_peak_mib": _range(shared["mem_peak_mib"].tolist()),
        "shared_cold_starts": _range(shared["cold_starts"].tolist(), integer=True),
        "shared_eviction_cold_starts": _range(shared["eviction_cold_starts"].tolist(),
                                              integer=True),
        "shared_evictions": _range(shared["evictions"].tolist(), integer=True),
        "shared_ttft_p99_ms": _range(shared["ttft_p99_ms"].tolist()),
        "shared_errors": fmt_int(shared[["status_429", "status_503", "status_504"]]
                                 .to_numpy().sum()),
        "dedicated_variant": NA if dedicated is None else str(dedicated["variant"]),
        "dedicated_mem_mean_mib": NA if dedicated is None else fmt(dedicated["mem_mean_mib"]),
        "dedicated_mem_peak_mib": NA if dedicated is None else fmt(dedicated["mem_peak_mib"]),
        "dedicated_cold_starts": NA if dedicated is None else fmt_int(dedicated["cold_starts"]),
        "dedicated_ttft_p99_ms": NA if dedicated is None else fmt(dedicated["ttft_p99_ms"]),
    }
    over = shared[pd.to_numeric(shared["mem_peak_mib"], errors="coerce")
                  > pd.to_numeric(shared["budget_mib"], errors="coerce")]
    out["over_budget"] = "" if over.empty else (
        f"In {', '.join(over['variant'].astype(str))} the instances' resident memory "
        "peaked above the budget: the gateway counts a model at its estimate (file size "
        "plus KV cache, plus what measured instances held beyond their estimates) until "
        "an instance of it has been measured, so starts admitted on estimates can hold "
        "more than the budget.")
    out["divide"] = _divide_sentence(out, shared, dedicated)
    return out


def _divide_sentence(v: Mapping[str, str], shared: pd.DataFrame,
                     dedicated: pd.Series | None) -> str:
    """The discussion's paragraph on sharing a device, from the measured variants."""
    if shared.empty or dedicated is None:
        return ""
    peak_ratio = num(shared["mem_peak_mib"].max()) / num(dedicated["mem_peak_mib"])
    share = (f", {fmt(100.0 * peak_ratio)} % of it" if math.isfinite(peak_ratio) else "")
    return (
        f"A dedicated device per model is what the {v['dedicated_variant']} variant "
        f"stands for: its {v['deployments']} models held up to "
        f"{v['dedicated_mem_peak_mib']} MiB together, memory a small lab would have to buy "
        f"as that many devices. Sharing one device under a budget of {v['budget_mib']} MiB "
        f"peaked at {v['shared_mem_peak_mib']} MiB{share}; the price was "
        f"{v['shared_cold_starts']} cold starts (against {v['dedicated_cold_starts']}), "
        f"{v['shared_eviction_cold_starts']} of them caused by "
        f"{v['shared_evictions']} evictions, and a TTFT p99 of {v['shared_ttft_p99_ms']} ms "
        f"against {v['dedicated_ttft_p99_ms']} ms (see Model sharing).")


def summary_table(summary: pd.DataFrame) -> str:
    """Shared against dedicated, one row per variant."""
    rows = []
    for r in summary.itertuples():
        energy = NA if not math.isfinite(num(r.energy_j)) else (
            f"{fmt(r.energy_j)} ({r.energy_basis}, {r.energy_source})")
        rows.append([
            r.variant, fmt(r.budget_mib, 4) if math.isfinite(num(r.budget_mib)) else "none",
            fmt_int(r.requests), fmt_int(r.status_200),
            fmt_int(num(r.status_429) + num(r.status_503) + num(r.status_504)),
            fmt_int(r.status_other), fmt(r.mem_mean_mib), fmt(r.mem_peak_mib),
            fmt_int(r.cold_starts), fmt_int(r.eviction_cold_starts), fmt_int(r.evictions),
            fmt(r.ttft_p50_ms), fmt(r.ttft_p99_ms), energy,
        ])
    return markdown_table(
        ["variant", "budget, MiB", "requests", "200", "429/503/504", "other",
         "memory mean, MiB", "memory peak, MiB", "cold starts", "of which eviction-caused",
         "evictions", "TTFT p50, ms", "TTFT p99, ms", "energy, J (basis, source)"],
        rows, ["l"] + ["r"] * 12 + ["l"])


def per_deployment_table(per_deployment: pd.DataFrame) -> str:
    """Per variant and deployment."""
    rows = [[
        r.variant, r.deployment, r.model, r.policy, fmt_int(r.requests),
        fmt_int(r.status_200),
        fmt_int(num(r.status_429) + num(r.status_503) + num(r.status_504)),
        fmt_int(r.cold_starts), fmt_int(r.eviction_cold_starts), fmt_int(r.evictions),
        fmt(r.ttft_p50_ms), fmt(r.ttft_p99_ms), fmt(r.instance_s),
    ] for r in per_deployment.itertuples()]
    return markdown_table(
        ["variant", "deployment", "model", "policy", "requests", "200", "429/503/504",
         "cold starts", "eviction-caused", "evictions", "TTFT p50, ms", "TTFT p99, ms",
         "instance time, s"],
        rows, ["l", "l", "l", "l"] + ["r"] * 9)


def sharing_md(summary: pd.DataFrame | None, per_deployment: pd.DataFrame | None,
               v: Mapping[str, str], figure_number: int | None = None,
               figure_file: str | None = None) -> str:
    """The generated section body; `v` is the report's `sharing` variables."""
    if summary is None or summary.empty or v.get("configured") != "yes":
        return NOT_CONFIGURED
    parts = [
        f"The same mixed workload (each request asks for one of {v['deployments']} models) "
        f"was replayed once per variant: {v['variants']}. A shared variant serves every "
        f"model behind one gateway under a memory budget of {v['budget_mib']} MiB, evicting "
        "an idle instance (by the policy in its name) when a start needs room; a dedicated "
        "variant has no budget, each model with its own instance under one policy, as if "
        "each had a device of its own. Memory is the resident memory of all instances "
        "together; an eviction-caused cold start is a start of a model whose previous "
        "instance was evicted rather than stopped by its own policy (docs/data.md).\n",
    ]
    if figure_number is not None and figure_file is not None:
        parts.append(
            f"![Figure {figure_number}: Memory held by all instances over the replay, one "
            "panel per variant; the dashed line is the shared variants' memory budget.]"
            f"({figure_file}){{width=100%}}\n")
    parts.append(summary_table(summary) + "\n")
    parts.append(
        f"Shared, the instances held {v['shared_mem_mean_mib']} MiB on average, with a "
        f"peak of {v['shared_mem_peak_mib']} MiB; {v['dedicated_variant']} held "
        f"{v['dedicated_mem_mean_mib']} MiB on average, with a peak of "
        f"{v['dedicated_mem_peak_mib']} MiB. Sharing took {v['shared_cold_starts']} cold "
        f"starts, of which {v['shared_eviction_cold_starts']} eviction-caused, after "
        f"{v['shared_evictions']} evictions ({v['dedicated_variant']}: "
        f"{v['dedicated_cold_starts']} cold starts); the shared variants answered "
        f"{v['shared_errors']} requests with a designed error (429, 503, 504). "
        f"{v.get('over_budget', '')}\n")
    if per_deployment is not None and not per_deployment.empty:
        parts.append("Per deployment:\n\n" + per_deployment_table(per_deployment) + "\n")
    return "\n".join(parts)


#: Per-deployment counts and times of the simulation check, summed over deployments.
_SIMULATED_SUMS = (("cold_starts", "cold starts"), ("evictions", "evictions"),
                   ("eviction_cold_starts", "eviction-caused"),
                   ("memory_refused", "503 for memory"), ("instance_s", "instance-s"))


def simulated_table(simulated: pd.DataFrame) -> str:
    """Measured against simulated, one row per shared variant: counts and instance-s
    summed over its deployments, and the budget's memory peak."""
    rows = []
    for variant, frame in simulated.groupby("variant", sort=True):
        cells: list[str] = [str(variant)]
        per_deployment = frame[frame["deployment"].fillna("").astype(str) != ""]
        for metric, _ in _SIMULATED_SUMS:
            picked = per_deployment[per_deployment["metric"] == metric]
            measured = pd.to_numeric(picked["measured"], errors="coerce").sum(min_count=1)
            simulated_sum = pd.to_numeric(picked["simulated"], errors="coerce").sum(min_count=1)
            as_text = fmt if metric == "instance_s" else fmt_int
            cells.append(f"{as_text(measured)} / {as_text(simulated_sum)}")
        whole = frame[(frame["deployment"].fillna("").astype(str) == "")
                      & (frame["metric"] == "memory_peak_mib")]
        cells.append(NA if whole.empty else
                     f"{fmt(whole['measured'].iloc[0])} / {fmt(whole['simulated'].iloc[0])}")
        rows.append(cells)
    return markdown_table(
        ["variant", *[label for _, label in _SIMULATED_SUMS], "memory peak, MiB"], rows,
        ["l"] + ["r"] * (len(_SIMULATED_SUMS) + 1))


def simulated_md(simulated: pd.DataFrame | None) -> str:
    """The simulation check's paragraph and table ('' without the check)."""
    if simulated is None or simulated.empty:
        return ""
    return (
        "The simulator replays each shared run's requests with the same budget and "
        "eviction policy, each model's start and service times and memory fitted on the "
        "dedicated runs (so a shared run is never predicted from itself). Measured / "
        "simulated, summed over the models (per model and metric in "
        "results/sharing/simulated.csv):\n\n" + simulated_table(simulated) + "\n")


def plot_sharing_memory(run_dirs: Sequence[Path], out: Path) -> Path:
    """Memory held by the instances over each variant's replay, one panel per variant
    on one scale."""
    from scalezero.analysis.runs import read_run_meta
    from scalezero.report.figures import _plt, _save

    plt = _plt()
    dirs = [Path(d) for d in run_dirs]
    fig, axes = plt.subplots(len(dirs), 1, figsize=(8, 1.9 * max(1, len(dirs)) + 0.6),
                             sharex=True, sharey=True, squeeze=False)
    top_mib = 0.0
    for ax, run_dir in zip(axes[:, 0], dirs, strict=True):
        meta = read_run_meta(run_dir)
        series = memory_over_time(run_dir)
        ax.step(series["t_rel_s"], series["mem_mib"], where="post", color="C0", lw=1.2)
        top_mib = max(top_mib, float(pd.to_numeric(series["mem_mib"], errors="coerce").max()
                                     if len(series) else 0.0))
        budget = (meta.get("memory") or {}).get("budget_mib")
        if budget is not None:
            ax.axhline(float(budget), color="0.3", ls="--", lw=1.0)
            top_mib = max(top_mib, float(budget))
        ax.set_title(str(meta.get("strategy") or run_dir.name), loc="left")
        ax.set_ylabel("MiB")
    # One scale for every panel, set once all are drawn: a limit set while drawing the
    # first panel would cut off a later panel's higher memory.
    if math.isfinite(top_mib) and top_mib > 0:
        axes[0, 0].set_ylim(0.0, top_mib * 1.08)
    axes[-1, 0].set_xlabel("time since replay start, s")
    fig.tight_layout()
    return _save(fig, out)


def read_sharing(files: Mapping[str, Path] | None
                 ) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The summary and per-deployment tables, when the experiment ran."""
    if files is None:
        return None, None
    return pd.read_csv(files["summary"]), pd.read_csv(files["per_deployment"])


def read_simulated(files: Mapping[str, Path] | None) -> pd.DataFrame | None:
    """The simulation check's table (results/sharing/simulated.csv), when it ran."""
    if files is None or "simulated" not in files:
        return None
    return pd.read_csv(files["simulated"])


__all__ = ["NOT_CONFIGURED", "per_deployment_table", "plot_sharing_memory", "read_sharing",
           "read_simulated", "sharing_md", "sharing_variables", "simulated_md",
           "simulated_table", "summary_table"]
