"""The report's figures, in the order the report shows them.

One list for the workflow (which rule draws which figure, and the report's inputs), the
drawing dispatch (`scalezero.report.figures.FIGURES`) and the report's figure numbers.
Standard library only: workflow/rules/common.smk imports it when the workflow loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report.

    per_strategy: drawn once per strategy, keyed <name>_<strategy> (the timelines).
    optional: in the report only when what it shows was made (`needs`).
    caption: its caption file under report/captions/ (Snakemake's --report).
    category: its section of Snakemake's --report.
    rule: the workflow rule that draws it.
    needs: for an optional figure, the step whose results it shows (size_sweep, simulation,
    scenarios, sharing).
    """

    name: str
    per_strategy: bool
    optional: bool
    caption: str
    category: str
    rule: str
    needs: str = "size_sweep"


FIGURE_SPECS: tuple[FigureSpec, ...] = (
    FigureSpec("latency", False, False, "latency.rst", "Latency", "figure_latency"),
    FigureSpec("cold_starts", False, False, "cold_starts.rst", "Cold starts",
               "figure_cold_starts"),
    FigureSpec("frontier", False, False, "frontier.rst", "Cold starts", "figure_frontier"),
    # Drawn once for all workloads by the size sweep's own rule.
    FigureSpec("size_sweep", False, True, "size_sweep.rst", "Cold starts", "sweep_figure"),
    FigureSpec("timeline", True, False, "timeline.rst", "Resources over time",
               "figure_timeline"),
    FigureSpec("energy", False, False, "energy.rst", "Energy", "figure_energy"),
    FigureSpec("projections", False, False, "projections.rst", "Projections",
               "figure_projections"),
    FigureSpec("simulation", False, True, "simulation.rst", "Simulation",
               "figure_simulation", needs="simulation"),
    FigureSpec("scenario_heatmap", False, True, "scenario_heatmap.rst", "Simulation",
               "figure_scenario_heatmap", needs="scenarios"),
    # Drawn by the sharing experiment's own rule, from its runs.
    FigureSpec("sharing_memory", False, True, "sharing_memory.rst", "Model sharing",
               "sharing_figure", needs="sharing"),
)

#: Figure names in report order ("timeline" stands for one figure per strategy).
FIGURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FIGURE_SPECS)


def figure_key(name: str, strategy: str | None = None) -> str:
    """A figure's key (and file stem): the name, with _<strategy> for per-strategy ones."""
    return f"{name}_{strategy}" if strategy is not None else name


def timeline_key(strategy: str) -> str:
    return figure_key("timeline", strategy)


def figure_keys(strategies: Sequence[str], size_sweep: bool = False,
                simulation: bool = False, scenarios: bool = False,
                sharing: bool = False) -> list[str]:
    """Every figure's key in report order; the size sweep's only when `size_sweep`, the
    simulation's only when `simulation`, the simulated scenarios' when `scenarios`, the
    model-sharing experiment's when `sharing`."""
    made = {"size_sweep": size_sweep, "simulation": simulation, "scenarios": scenarios,
            "sharing": sharing}
    keys: list[str] = []
    for spec in FIGURE_SPECS:
        if spec.optional and not made[spec.needs]:
            continue
        if spec.per_strategy:
            keys += [figure_key(spec.name, s) for s in strategies]
        else:
            keys.append(spec.name)
    return keys


def figure_numbers(strategies: Sequence[str], size_sweep: bool = False,
                   simulation: bool = False, scenarios: bool = False,
                   sharing: bool = False) -> dict[str, int]:
    """Figure key -> its number in the report (timelines: timeline_<strategy>)."""
    keys = figure_keys(strategies, size_sweep, simulation, scenarios, sharing)
    return {key: i for i, key in enumerate(keys, start=1)}


__all__ = [
    "FIGURE_NAMES", "FIGURE_SPECS", "FigureSpec", "figure_key", "figure_keys",
    "figure_numbers", "timeline_key",
]
