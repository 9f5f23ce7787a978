"""Where the pipeline's files live: results/, resources/ and logs/.

Every path under those folders is spelled here and nowhere else: the workflow's rules
(through workflow/rules/common.smk), the aggregate, projection and report steps and the
command-line tools all ask a `Layout`. Standard library only, so that the workflow can
import it before any rule runs.

    results/traces/<workload>.csv
    results/runs/<workload>/<strategy>/<rep>/{requests,tokens,events,telemetry}.csv, run.json
    results/summary/<workload>{,_ci,_requests,_energy,_cold_starts}.csv
    with `platforms:` configured, runs and summaries one folder deeper:
        results/runs/<platform>/<workload>/<strategy>/<rep>/, results/summary/<platform>/,
        and results/summary/platforms.csv compares the platforms
    results/projections/<workload>{,_model,_runs,_phases}.csv, <workload>_constants.json
    results/simulation/<workload>_profile.json, <workload>_validation.csv
    results/figures/<workload>/<figure>.png, results/figures/size_sweep.png
    results/report/report.html, variables.yml
    results/sweep/trace.csv, size_sweep.csv, runs/<model>/, bandwidth/<model>.json,
        page_cache/<model>.json
    results/simulation/<workload>_{scenarios,grid,sim_projections}.csv (scenarios)
    results/.measurement.lock (results/.measurement.<node>.lock in a SLURM job)
    resources/models/<model>.gguf
    logs/<step>/.../<name>.log

Path parts may be Snakemake wildcard patterns such as "{workload}": they are kept as
written, so `str(Layout().run_dir("{workload}", "{strategy}", "{rep}"))` is a rule's
output pattern.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from scalezero.errors import UserError

#: The embedded default model's name (config/config.yaml's `model:`).
DEFAULT_MODEL_NAME = "smollm2-135m"
MODEL_SUFFIX = ".gguf"

#: The files of a run folder, by kind, in the order a run writes them.
RUN_FILE_NAMES: dict[str, str] = {
    "requests": "requests.csv",
    "tokens": "tokens.csv",
    "events": "events.csv",
    "telemetry": "telemetry.csv",
    "run_json": "run.json",
}
#: A workload's summary files, by kind: <workload><suffix>.
SUMMARY_SUFFIXES: dict[str, str] = {
    "summary": ".csv",
    "ci": "_ci.csv",
    "requests": "_requests.csv",
    "energy": "_energy.csv",
    "cold_starts": "_cold_starts.csv",
}
#: A workload's projection files, by kind: <workload><suffix>.
PROJECTION_SUFFIXES: dict[str, str] = {
    "sweep": ".csv",
    "model": "_model.csv",
    "runs": "_runs.csv",
    "phases": "_phases.csv",
    "constants": "_constants.json",
}
#: A workload's simulation files, by kind: <workload><suffix>.
SIMULATION_SUFFIXES: dict[str, str] = {
    "profile": "_profile.json",
    "validation": "_validation.csv",
}
RUNS_NAME = "runs"
# Next to a strategy's run folders, not inside one (those hold only the run's outputs);
# the strategy's repeats share it.
CONTEXT_PROBE_NAME = ".context-probe.gguf"

#: A workload's simulated scenarios, by kind, beside its simulation files: the
#: production hour, the rate x TTL grid and the simulated yearly projections.
SCENARIO_SUFFIXES: dict[str, str] = {
    "hour": "_scenarios.csv",
    "grid": "_grid.csv",
    "projections": "_sim_projections.csv",
}


class RunKey(NamedTuple):
    """What a run folder's names say: results/runs/[<platform>/]<workload>/<strategy>/<rep>."""

    workload: str
    strategy: str
    rep: str
    #: None for a folder outside results/runs/<platform>/ (no platforms configured).
    platform: str | None = None


@dataclass(frozen=True)
class Layout:
    """The three top folders; everything below them is fixed."""

    results: Path = Path("results")
    resources: Path = Path("resources")
    logs: Path = Path("logs")

    @classmethod
    def at(cls, root: Path) -> Layout:
        """The layout of a project checkout at `root`."""
        root = Path(root)
        return cls(results=root / "results", resources=root / "resources", logs=root / "logs")

    # Inputs -----------------------------------------------------------------------------

    def model(self, name: str) -> Path:
        return self.resources / "models" / f"{name}{MODEL_SUFFIX}"

    def default_model(self) -> Path:
        return self.model(DEFAULT_MODEL_NAME)

    def trace(self, workload: str) -> Path:
        return self.results / "traces" / f"{workload}.csv"

    def trace_info(self, workload: str) -> Path:
        """What a workload's trace was made from (source, slice, mapping): JSON."""
        return self.results / "traces" / f"{workload}.json"

    def trace_history(self, workload: str) -> Path:
        """Arrivals before a workload's replay start (its training part): CSV."""
        return self.results / "traces" / f"{workload}.history.csv"

    @property
    def lock_file(self) -> Path:
        """Held by every measured run: runs never overlap, whichever Snakemake started them."""
        return self.results / ".measurement.lock"

    @staticmethod
    def node_lock_file(lock_file: Path | str, node: str) -> Path:
        """The lock of one cluster node beside `lock_file`: runs on one node never
        overlap, runs on different nodes do not wait for each other."""
        path = Path(lock_file)
        return path.with_name(f"{path.stem}.{node}{path.suffix}")

    # Measured runs ----------------------------------------------------------------------

    @property
    def runs_dir(self) -> Path:
        return self.results / RUNS_NAME

    def platform_runs_dir(self, platform: str | None = None) -> Path:
        """results/runs/, or results/runs/<platform>/ when platforms are configured."""
        return self.runs_dir / platform if platform else self.runs_dir

    def run_dir(self, workload: str, strategy: str, rep: int | str,
                platform: str | None = None) -> Path:
        return self.platform_runs_dir(platform) / workload / strategy / str(rep)

    @staticmethod
    def run_files(run_dir: Path | str) -> dict[str, Path]:
        """The files of one run folder, by kind (RUN_FILE_NAMES)."""
        return {kind: Path(run_dir) / name for kind, name in RUN_FILE_NAMES.items()}

    @staticmethod
    def parse_run_dir(run_dir: Path | str) -> RunKey:
        """Workload, strategy, repeat and platform from a run folder's names (run_dir's
        inverse).

        The last three names are workload, strategy and repeat, so a run folder anywhere
        parses the same way. The platform is the name above them when the one above that
        is `runs` (results/runs/<platform>/<workload>/...); None otherwise.
        """
        path = Path(run_dir)
        key = RunKey(path.parent.parent.name, path.parent.name, path.name)
        above = path.parent.parent.parent
        if above.name and above.name != RUNS_NAME and above.parent.name == RUNS_NAME:
            return key._replace(platform=above.name)
        return key

    @staticmethod
    def first_run(run_dirs: Iterable[Path | str], strategy: str) -> Path:
        """The lowest-numbered repeat of a strategy (the run its timeline shows)."""
        mine = [Path(d) for d in run_dirs if Layout.parse_run_dir(d).strategy == strategy]
        if not mine:
            raise UserError(f"no run folder of strategy {strategy!r}")

        def rep_order(d: Path) -> tuple[bool, int, str]:
            digits = d.name.isdigit()
            return (not digits, int(d.name) if digits else 0, d.name)

        return min(mine, key=rep_order)

    def find_run_dirs(self, workload: str, platform: str | None = None) -> list[Path]:
        """The run folders of a workload (on a platform) that hold a run.json, sorted."""
        root = self.platform_runs_dir(platform) / workload
        return sorted(p.parent for p in root.glob(f"*/*/{RUN_FILE_NAMES['run_json']}"))

    @staticmethod
    def context_probe_model(run_dir: Path | str) -> Path:
        """The minimal model a run loads to measure the runtime's own memory and power."""
        return Path(run_dir).parent / CONTEXT_PROBE_NAME

    # Aggregates and projections ---------------------------------------------------------

    @property
    def summary_dir(self) -> Path:
        return self.results / "summary"

    def summary(self, workload: str, platform: str | None = None) -> dict[str, Path]:
        folder = self.summary_dir / platform if platform else self.summary_dir
        return self.summary_files_in(folder, workload)

    @property
    def platform_comparison(self) -> Path:
        """The platforms side by side (only with `platforms:` configured)."""
        return self.summary_dir / "platforms.csv"

    @staticmethod
    def summary_files_in(summary_dir: Path | str, workload: str) -> dict[str, Path]:
        """The summary files of a workload in a given folder, by kind (SUMMARY_SUFFIXES)."""
        return {k: Path(summary_dir) / f"{workload}{s}" for k, s in SUMMARY_SUFFIXES.items()}

    @property
    def projections_dir(self) -> Path:
        return self.results / "projections"

    def projections(self, workload: str) -> dict[str, Path]:
        return self.projection_files_in(self.projections_dir, workload)

    @staticmethod
    def projection_files_in(projections_dir: Path | str, workload: str) -> dict[str, Path]:
        """The projection files of a workload in a given folder, by kind."""
        return {k: Path(projections_dir) / f"{workload}{s}"
                for k, s in PROJECTION_SUFFIXES.items()}

    @property
    def simulation_dir(self) -> Path:
        return self.results / "simulation"

    def simulation(self, workload: str) -> dict[str, Path]:
        return self.simulation_files_in(self.simulation_dir, workload)

    @staticmethod
    def simulation_files_in(simulation_dir: Path | str, workload: str) -> dict[str, Path]:
        """The simulation files of a workload in a given folder, by kind
        (SIMULATION_SUFFIXES): the fitted profile and the leave-one-out validation."""
        return {k: Path(simulation_dir) / f"{workload}{s}"
                for k, s in SIMULATION_SUFFIXES.items()}

    # Figures and the report -------------------------------------------------------------

    def figures_dir(self, workload: str) -> Path:
        return self.results / "figures" / workload

    def figure(self, workload: str, name: str, suffix: str = ".png") -> Path:
        return self.figure_in(self.figures_dir(workload), name, suffix)

    @staticmethod
    def figure_in(figures_dir: Path | str, name: str, suffix: str = ".png") -> Path:
        """A figure's file in a given folder (its key names it)."""
        return Path(figures_dir) / f"{name}{suffix}"

    @property
    def report_dir(self) -> Path:
        return self.results / "report"

    @property
    def report_html(self) -> Path:
        return self.report_dir / "report.html"

    @property
    def report_variables(self) -> Path:
        return self.report_dir / "variables.yml"

    # Size sweep -------------------------------------------------------------------------

    @property
    def sweep_dir(self) -> Path:
        return self.results / "sweep"

    @property
    def sweep_trace(self) -> Path:
        return self.sweep_dir / "trace.csv"

    def sweep_run_dir(self, model: str) -> Path:
        return self.sweep_dir / "runs" / model

    def sweep_bandwidth(self, model: str) -> Path:
        return self.sweep_dir / "bandwidth" / f"{model}.json"

    def sweep_page_cache(self, model: str) -> Path:
        return self.sweep_dir / "page_cache" / f"{model}.json"

    @property
    def sweep_summary(self) -> Path:
        return self.sweep_dir / "size_sweep.csv"

    @property
    def sweep_figure(self) -> Path:
        return self.results / "figures" / "size_sweep.png"

    # Warm tiers and engines ----------------------------------------------------------

    @property
    def tiers_dir(self) -> Path:
        return self.results / "tiers"

    def tiers_files(self) -> dict[str, Path]:
        """The tier bench's outputs: tiers.csv, read_bandwidth.json, engines.csv and the
        goal checks (summary.json)."""
        return {"tiers": self.tiers_dir / "tiers.csv",
                "bandwidth": self.tiers_dir / "read_bandwidth.json",
                "engines": self.tiers_dir / "engines.csv",
                "summary": self.tiers_dir / "summary.json"}

    # Model sharing ----------------------------------------------------------------------

    @property
    def sharing_dir(self) -> Path:
        return self.results / "sharing"

    def sharing_deployments(self, variant: str) -> Path:
        """The deployments file one sharing variant's run serves (YAML)."""
        return self.sharing_dir / "deployments" / f"{variant}.yaml"

    def sharing_run_dir(self, variant: str) -> Path:
        return self.sharing_dir / "runs" / variant

    @property
    def sharing_summary(self) -> Path:
        """One row per sharing variant (scalezero.analysis.sharing.SUMMARY_COLUMNS)."""
        return self.sharing_dir / "summary.csv"

    @property
    def sharing_per_deployment(self) -> Path:
        """One row per variant x deployment (sharing.PER_DEPLOYMENT_COLUMNS)."""
        return self.sharing_dir / "per_deployment.csv"

    @property
    def sharing_simulated(self) -> Path:
        """Measured against simulated figures of the shared runs (sharing_check)."""
        return self.sharing_dir / "simulated.csv"

    @property
    def sharing_figure(self) -> Path:
        """Memory held by the instances over the replay, one panel per variant."""
        return self.results / "figures" / "sharing_memory.png"

    # Simulated scenarios ----------------------------------------------------------------

    def scenarios(self, workload: str) -> dict[str, Path]:
        return self.scenario_files_in(self.simulation_dir, workload)

    @staticmethod
    def scenario_files_in(simulation_dir: Path | str, workload: str) -> dict[str, Path]:
        """The scenario tables of a workload in a given folder, by kind (SCENARIO_SUFFIXES)."""
        return {k: Path(simulation_dir) / f"{workload}{s}" for k, s in SCENARIO_SUFFIXES.items()}

    def scenario_heatmap(self, workload: str) -> Path:
        """The rate x TTL heatmap (a report figure)."""
        return self.figure(workload, "scenario_heatmap")

    # Logs -------------------------------------------------------------------------------

    def log_dir(self, step: str, *parts: str) -> Path:
        """A step's log folder (a failed run's files are kept in one too)."""
        return self.logs.joinpath(step, *parts)

    def log(self, step: str, *parts: str) -> Path:
        """logs/<step>/<parts...>.log: the last part names the file."""
        if not parts:
            raise ValueError("log() needs a file name after the step")
        return self.log_dir(step, *parts[:-1]) / f"{parts[-1]}.log"


def default_model() -> Path:
    """resources/models/<default model>.gguf, where setup and the workflow put it."""
    return Layout().default_model()


__all__ = [
    "CONTEXT_PROBE_NAME", "DEFAULT_MODEL_NAME", "PROJECTION_SUFFIXES", "RUN_FILE_NAMES",
    "SIMULATION_SUFFIXES", "SUMMARY_SUFFIXES", "Layout", "RunKey", "default_model",
]
