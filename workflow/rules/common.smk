# Configuration checks and helpers shared by the rules.

import glob
import os
import sys
from pathlib import Path

from snakemake.utils import validate

# The package is used from the source tree, so a checkout works without installing it
# (the conda environments carry only its dependencies).
SRC_DIR = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC_DIR))

# Defaults are applied where values are used: the schema has oneOf branches (model
# sources) whose defaults must not leak into each other.
validate(config, "../../config/config.schema.json", set_default=False)

try:
    from scalezero.cli.config import (
        MEASURED_RESOURCE_KEYS,
        check_config,
        expand_strategies,
        measured_resources,
        platform_names,
        platform_spec,
        run_order,
        sharing_variant_deployments,
        sharing_variants,
        workload_strategies,
    )
    from scalezero.report.figure_list import figure_keys, timeline_key
    from scalezero.serving.strategies import policy_source_file
    from scalezero.simulate.settings import simulation_settings
    from scalezero.system.layout import Layout
except ImportError as exc:  # the package's light modules need only the standard library
    raise WorkflowError(f"cannot import scalezero from {SRC_DIR}: {exc}") from exc

try:
    check_config(config)
    #: Workload -> the strategies run on it (its `strategies:` subset, else all).
    WORKLOAD_STRATEGIES = workload_strategies(config)
    # A list of values for a policy parameter is a sweep: one strategy per value, so that
    # every rule below sees plain strategies.
    config["strategies"] = expand_strategies(config["strategies"])
    SIMULATION = simulation_settings(config)
except Exception as exc:
    raise WorkflowError(str(exc)) from None
# Which strategies run on a workload does not change its trace: the key is left out of
# the spec the workload rule records, so editing the subset regenerates no trace.
for _spec in config["workloads"].values():
    _spec.pop("strategies", None)

#: Every path under results/, resources/ and logs/ comes from here.
LAYOUT = Layout()
MODEL = config["model"]
#: Every workload (each has a trace); WORKLOADS: those strategies run on (the sharing
#: experiment's workload may have none of its own).
ALL_WORKLOADS = list(config["workloads"])
WORKLOADS = [w for w in ALL_WORKLOADS if WORKLOAD_STRATEGIES[w]]
STRATEGIES = list(config["strategies"])
REPEATS = int(config.get("repeats", 1))
REPORT_WORKLOAD = config.get("report", {}).get("workload") or WORKLOADS[0]
SWEEP = config.get("size_sweep", {})
SWEEP_MODELS = list(SWEEP.get("models", []))
TIERS = config.get("tiers", {})
TIERS_ENABLED = bool(TIERS.get("enabled", False))
# The sweep measures cold starts: by default the naive policy, under which every
# request that finds no instance in flight starts one.
SWEEP_STRATEGY = (
    dict(config["strategies"][SWEEP["strategy"]]) if SWEEP.get("strategy") else {"policy": "naive"}
)
LOCK_FILE = str(LAYOUT.lock_file)
# Snakemake lowers a job's threads to the cores it was given, so this makes every
# measured run (and bandwidth measurement) take all of them: measurements never overlap
# whatever --cores says. (workflow.cores would do the same but is undefined in
# `snakemake --report` and `--lint`.)
MEASUREMENT_THREADS = 1024
#: Platforms the runs are measured on (`platforms:`); empty: one unnamed platform, and
#: every path is the same as without the key.
PLATFORMS = platform_names(config)
#: The report's platform: figures, projections and simulation are of its runs.
MAIN_PLATFORM = PLATFORMS[0] if PLATFORMS else None
#: The platform's part of the run, summary and log patterns (none without platforms).
PLATFORM_PARTS = ("{platform}",) if PLATFORMS else ()
#: The model-sharing experiment (`sharing:`): its variants in run order, each one
#: measured run over the sharing workload (empty without the key).
SHARING = config.get("sharing") or {}
SHARING_VARIANTS = list(sharing_variants(config))
#: The simulation is checked against the shared runs with profiles fitted on the
#: dedicated runs, so it needs one of each.
SHARING_SIMULATED = any(v.startswith("shared-") for v in SHARING_VARIANTS) and any(
    v.startswith("dedicated-") for v in SHARING_VARIANTS
)


def serving_env(device):
    """Rules that start llama.cpp servers need its CUDA build on a cuda host."""
    return "../../envs/scalezero-cuda.yaml" if device == "cuda" else "../../envs/scalezero.yaml"


# With platforms, each job's platform says which device (and so which build) it uses.
SERVING_ENV = (
    (lambda wildcards: serving_env(platform_spec(config, platform_of(wildcards))["device"]))
    if PLATFORMS
    else serving_env(config.get("device", "cpu"))
)

#: (strategy, rep) in the order the runs are meant to happen; rep counts from 1.
RUN_ORDER = run_order(
    STRATEGIES, REPEATS, config.get("order", "interleaved"), int(config.get("order_seed", 0))
)


def _names(values):
    return "|".join(sorted(values, key=len, reverse=True))


wildcard_constraints:
    workload=_names(ALL_WORKLOADS),
    strategy=_names(STRATEGIES),
    model=_names(config["models"]),
    rep=r"\d+",
    platform=_names(PLATFORMS) or r"[^/]+",
    variant=_names(SHARING_VARIANTS) or r"[^/]+",


# On a cluster only measured runs are submitted; everything else is light and runs on
# the submitting host (which also reaches the package index for model files).
localrules:
    fetch_model,
    workload,
    aggregate,
    platform_comparison,
    projections,
    figure_latency,
    figure_cold_starts,
    figure_frontier,
    figure_timeline,
    figure_energy,
    figure_projections,
    report,
    fit_profile,
    validate_simulation,
    figure_simulation,
    simulate_hour,
    simulate_grid,
    simulate_projections,
    figure_scenario_heatmap,
    sweep_trace,
    sweep_summary,
    sweep_figure,


# Snakemake takes paths as strings: these wrap the layout's for rules and input functions.


def _strs(paths):
    return {kind: str(path) for kind, path in paths.items()}


def model_file(name):
    return str(LAYOUT.model(name))


def trace_file(workload):
    return str(LAYOUT.trace(workload))


def trace_info_file(workload):
    return str(LAYOUT.trace_info(workload))


def trace_history_file(workload):
    return str(LAYOUT.trace_history(workload))


def run_dir(workload, strategy, rep, platform=None):
    return str(LAYOUT.run_dir(workload, strategy, rep, platform))


def platform_of(wildcards):
    """The platform of a job: its wildcard, else the report's platform (None without
    platforms)."""
    return wildcards.get("platform", MAIN_PLATFORM) if PLATFORMS else None


def measured_rule_resources():
    """Resources of a measured rule, by platform: what the configuration asks a cluster
    for. A key no platform sets is left out, so the profile's default applies (and a
    local run's jobs are as before); a job whose platform leaves it out gets None (unset).
    """
    given = [measured_resources(config, p) for p in PLATFORMS or [None]]
    return {
        key: lambda wildcards, key=key: measured_resources(config, platform_of(wildcards))[key]
        for key in MEASURED_RESOURCE_KEYS
        if any(r[key] is not None for r in given)
    }


def workload_runs(workload):
    """(strategy, rep) of a workload's runs: the planned order, over its strategies only."""
    mine = set(WORKLOAD_STRATEGIES[workload])
    return [(s, r) for s, r in RUN_ORDER if s in mine]


def run_dirs(workload, platform=MAIN_PLATFORM):
    """Every run folder of a workload (on a platform), in the planned order."""
    return [run_dir(workload, s, r, platform) for s, r in workload_runs(workload)]


def aggregate_inputs(wildcards):
    """The run files an aggregate job summarizes: its workload's, on its platform."""
    return run_files(run_dirs(wildcards.workload, platform_of(wildcards)))


def summary_files(workload, platform=MAIN_PLATFORM):
    return _strs(LAYOUT.summary(workload, platform))


def log_file(step, *parts):
    return str(LAYOUT.log(step, *parts))


def log_dir(step, *parts):
    return str(LAYOUT.log_dir(step, *parts))


def order_index(strategy, rep):
    return RUN_ORDER.index((strategy, int(rep)))


def policy_file(wildcards):
    """The module defining the strategy's policy: editing it reruns that strategy only."""
    return str(policy_source_file(config["strategies"][wildcards.strategy]["policy"]))


def model_inputs(wildcards):
    """A synthetic model's tokenizer donor, when that donor is another models: entry."""
    spec = config["models"][wildcards.model]
    donor = spec.get("donor") if spec.get("source") == "synthetic" else None
    if isinstance(donor, str) and donor in config["models"] and donor != wildcards.model:
        return {"donor": model_file(donor)}
    if spec.get("source") == "local":
        return {"local": spec["path"]}
    return {}


def workload_inputs(wildcards):
    """A recorded trace file a workload replays (trace_csv, azure_functions)."""
    spec = config["workloads"][wildcards.workload]
    return {"source": spec["path"]} if "path" in spec else {}


def _canonical(value):
    """Mappings with sorted keys: the order of keys in a config file must not rerun a run."""
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _measured_run_settings(
    *, workload, strategy, rep, order, strategy_spec, model_name, seed, platform=None
):
    """What a measured run needs besides its input files; a change reruns that run.

    Strategy runs and size-sweep runs differ only in these arguments: the device,
    instance, gateway and telemetry settings are the same for both. A platform's entry
    names its device and GPU; the key `platform` is there only with platforms, so a run
    without them has the settings it always had.
    """
    spec = dict(strategy_spec)
    device = platform_spec(config, platform)
    identity = {"platform": platform} if platform else {}
    return _canonical(
        {
            **identity,
            "workload": workload,
            "strategy": strategy,
            "rep": rep,
            "order_index": order,
            "policy": spec.pop("policy"),
            "policy_params": spec,
            "model_name": model_name,
            "device": device["device"],
            "gpu_index": device["gpu_index"],
            "instance": config.get("instance", {}),
            "gateway": config.get("gateway", {}),
            "telemetry": config.get("telemetry", {}),
            "seed": seed,
            "lock_file": LOCK_FILE,
        }
    )


def run_settings(wildcards):
    """Settings of one strategy run."""
    return _measured_run_settings(
        workload=wildcards.workload,
        strategy=wildcards.strategy,
        rep=int(wildcards.rep),
        order=order_index(wildcards.strategy, wildcards.rep),
        strategy_spec=config["strategies"][wildcards.strategy],
        model_name=MODEL,
        seed=config["workloads"][wildcards.workload].get("seed"),
        platform=platform_of(wildcards),
    )


def sweep_settings(wildcards):
    """Settings of one size-sweep model's run."""
    return _measured_run_settings(
        workload="size_sweep",
        strategy=SWEEP.get("strategy") or "naive",
        rep=1,
        order=SWEEP_MODELS.index(wildcards.model),
        strategy_spec=SWEEP_STRATEGY,
        model_name=wildcards.model,
        seed=None,
        platform=MAIN_PLATFORM,
    )


# Report helpers: projections, figures and the report's inputs.


def projection_files(workload):
    return _strs(LAYOUT.projections(workload))


def simulation_files(workload):
    return _strs(LAYOUT.simulation(workload))


def simulation_run_inputs(wildcards):
    """The run files the simulation's fit reads (those the aggregate step reads)."""
    files = run_files(run_dirs(wildcards.workload))
    return {kind: files[kind] for kind in ("run_json", "requests", "tokens", "events", "telemetry")}


def figure_file(workload, name):
    return str(LAYOUT.figure(workload, name))


def report_figures(workload):
    """Figure key -> file, in the report's order (one timeline per strategy). The size
    sweep's figure is the sweep's own output, not the workload's."""
    return {key: figure_file(workload, key) for key in figure_keys(WORKLOAD_STRATEGIES[workload])}


def run_dir_files(run_dir):
    """The files of one run folder, by kind (the run rule's outputs)."""
    return _strs(LAYOUT.run_files(run_dir))


def run_files(dirs):
    """The files of run folders: kind -> one path per folder."""
    files = [run_dir_files(d) for d in dirs]
    return {kind: [f[kind] for f in files] for kind in LAYOUT.run_files(".")}


def first_run_dir(workload, strategy):
    """The lowest repeat of a strategy: its run is the one drawn as a timeline."""
    return str(LAYOUT.first_run(run_dirs(workload), strategy))


# The files of its run a timeline draws from (it does not use tokens.csv).
TIMELINE_RUN_FILES = ("run_json", "requests", "events", "telemetry")


def timeline_inputs(wildcards):
    """The files of the run a strategy's timeline shows."""
    files = run_files([first_run_dir(wildcards.workload, wildcards.strategy)])
    return {kind: files[kind][0] for kind in TIMELINE_RUN_FILES}


def report_inputs(wildcards):
    workload = REPORT_WORKLOAD
    inputs = {
        "summary": summary_files(workload)["summary"],
        "requests": summary_files(workload)["requests"],
        "cold_starts": summary_files(workload)["cold_starts"],
        "energy": summary_files(workload)["energy"],
        "ci": summary_files(workload)["ci"],
        "trace": trace_file(workload),
        "run_json": run_files(run_dirs(workload))["run_json"],
        # The report source (not the captions of `snakemake --report`): an edit reruns it.
        "source": sorted(
            p
            for p in glob.glob("report/**/*", recursive=True)
            if Path(p).is_file()
            and not p.startswith("report/captions/")
            and p != "report/workflow.rst"
        ),
    }
    # The trace's record (what it was made from), where the workload rule writes one.
    if trace_info_file("{workload}") in rules.workload.output:
        inputs["trace_info"] = trace_info_file(workload)
    inputs.update({f"proj_{k}": v for k, v in projection_files(workload).items()})
    inputs.update(scenario_report_inputs(workload))
    if SWEEP_MODELS:
        inputs["sweep_summary"] = str(LAYOUT.sweep_summary)
        inputs["sweep_figure"] = str(LAYOUT.sweep_figure)
    inputs.update({f"fig_{k}": v for k, v in report_figures(workload).items()})
    inputs.update({f"sim_{k}": v for k, v in simulation_files(workload).items()})
    inputs["sim_figure"] = figure_file(workload, "simulation")
    if PLATFORMS:
        inputs["platforms"] = str(LAYOUT.platform_comparison)
    if TIERS_ENABLED:
        inputs.update({f"tiers_{k}": str(v) for k, v in LAYOUT.tiers_files().items()})
    inputs.update({f"sharing_{k}": v for k, v in sharing_outputs().items()})
    return inputs


def scenario_files(workload):
    return _strs(LAYOUT.scenarios(workload))


def scenario_inputs(wildcards):
    """The inputs of every scenario step, by name: the measured profile (fit_profile
    writes it), the Azure LLM trace and the published profiles."""
    return {
        "profile": simulation_files(wildcards.workload)["profile"],
        "trace": SIMULATION.trace,
        "published": SIMULATION.published_file,
    }


def scenario_report_inputs(workload):
    """The scenario tables and the heatmap, as inputs of the report (scen_*)."""
    inputs = {f"scen_{k}": v for k, v in scenario_files(workload).items()}
    inputs["scen_heatmap"] = str(LAYOUT.scenario_heatmap(workload))
    return inputs


def sweep_run_dir(model):
    return str(LAYOUT.sweep_run_dir(model))


def sweep_inputs():
    """The size sweep's files of every model, by kind: what its summary reads."""
    runs = run_files([sweep_run_dir(m) for m in SWEEP_MODELS])
    return {
        "models": [model_file(m) for m in SWEEP_MODELS],
        "run_json": runs["run_json"],
        "events": runs["events"],
        "requests": runs["requests"],
        "bandwidth": [str(LAYOUT.sweep_bandwidth(m)) for m in SWEEP_MODELS],
        "page_cache": [str(LAYOUT.sweep_page_cache(m)) for m in SWEEP_MODELS],
    }


def platform_summaries(workload):
    """The summary file of a workload on every platform, by platform."""
    return {p: summary_files(workload, p)["summary"] for p in PLATFORMS}


# The model-sharing experiment (rules in sharing.smk).


def sharing_deployments_file(variant):
    return str(LAYOUT.sharing_deployments(variant))


def sharing_run_dir(variant):
    return str(LAYOUT.sharing_run_dir(variant))


def sharing_run_dirs():
    """The variants' run folders, in run order."""
    return [sharing_run_dir(v) for v in SHARING_VARIANTS]


def sharing_deployments_data(wildcards):
    """The deployments file of a variant, with model paths relative to its folder (a
    deployments file reads them against its own folder)."""
    models_dir = os.path.relpath(
        LAYOUT.model(MODEL).parent, LAYOUT.sharing_deployments(wildcards.variant).parent
    )
    return _canonical(sharing_variant_deployments(config, wildcards.variant, models_dir))


def sharing_model_files():
    """The model files the sharing deployments serve."""
    return [model_file(m) for m in sorted({d["model"] for d in SHARING["deployments"].values()})]


def sharing_policy_files(wildcards):
    """The modules defining a variant's policies: editing one reruns the variant."""
    data = sharing_variant_deployments(config, wildcards.variant)
    policies = sorted({d["policy"] for d in data["deployments"].values()})
    return [str(policy_source_file(p)) for p in policies]


def sharing_run_settings(wildcards):
    """Settings of one sharing variant's run (the deployments file says what it serves)."""
    device = platform_spec(config, MAIN_PLATFORM)
    identity = {"platform": MAIN_PLATFORM} if MAIN_PLATFORM else {}
    return _canonical(
        {
            **identity,
            "workload": SHARING["workload"],
            "strategy": wildcards.variant,
            "rep": 1,
            "order_index": SHARING_VARIANTS.index(wildcards.variant),
            "device": device["device"],
            "gpu_index": device["gpu_index"],
            "instance": config.get("instance", {}),
            "gateway": config.get("gateway", {}),
            "telemetry": config.get("telemetry", {}),
            "seed": config["workloads"][SHARING["workload"]].get("seed"),
            "lock_file": LOCK_FILE,
        }
    )


def sharing_outputs():
    """The sharing experiment's tables and figure, by kind (none without `sharing:`)."""
    if not SHARING_VARIANTS:
        return {}
    return {
        "summary": str(LAYOUT.sharing_summary),
        "per_deployment": str(LAYOUT.sharing_per_deployment),
        "figure": str(LAYOUT.sharing_figure),
        **({"simulated": str(LAYOUT.sharing_simulated)} if SHARING_SIMULATED else {}),
    }


def final_outputs():
    outputs = [str(LAYOUT.report_html)]
    outputs += list(sharing_outputs().values())
    outputs += [summary_files(w, p)["summary"] for w in WORKLOADS for p in PLATFORMS or [None]]
    if SWEEP_MODELS:
        outputs += [str(LAYOUT.sweep_summary), str(LAYOUT.sweep_figure)]
    if TIERS_ENABLED:
        outputs += [str(LAYOUT.tiers_files()["summary"])]
    return outputs
