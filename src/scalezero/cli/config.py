"""The pipeline's configuration: its JSON schema, its checks, and the run plan it implies.

`config/config.schema.json` is generated from `config_schema()` (which merges the schema
fragments that the model, workload and report modules own), so the schema the workflow
validates against and the checks the package makes cannot drift apart; a test checks
that the committed file is current. Regenerate it with
`python -m scalezero.cli.config > config/config.schema.json`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from typing import Any

from scalezero.errors import UserError

DEVICES = ("cpu", "cuda")
ORDERS = ("interleaved", "random")

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
_NAME_RE = re.compile(_NAME["pattern"])
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}


def _value_or_sweep(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema, or a list of such values (a sweep: one strategy per value)."""
    return {"anyOf": [schema, {"type": "array", "items": schema, "minItems": 1,
                               "uniqueItems": True}]}


def _strategy_schema() -> dict[str, Any]:
    from scalezero.serving.strategies import parameter_schema

    return {
        "type": "object",
        "required": ["policy"],
        "properties": {
            "policy": {"type": "string", "description": "registry name of the policy"},
            # The registered policies' parameters, as each policy class declares them; a
            # list sweeps the parameter (expand_strategies).
            **{name: _value_or_sweep(schema) for name, schema in parameter_schema().items()},
        },
        # Policies added later bring their own parameters; make_policy checks them.
        "additionalProperties": _value_or_sweep({"type": ["number", "string", "boolean"]}),
    }


def _value_label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return format(value, "g")
    return str(value)


def expand_strategies(strategies: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Strategy entries with every swept parameter (a list) expanded, in config order.

    ``keep_warm: {policy: keep_warm, keep_warm_ttl_s: [2, 10]}`` becomes ``keep_warm-2``
    and ``keep_warm-10``, each a strategy of its own with its own runs, so adding a value
    measures only the new strategy. Several lists expand to every combination, named
    ``<entry>-<parameter><value>-...``. Entries without a list are kept as they are.
    """
    expanded: dict[str, dict[str, Any]] = {}
    for name, spec in strategies.items():
        swept = [key for key, value in spec.items() if isinstance(value, list)]
        combinations: list[dict[str, Any]] = [{}]
        for key in swept:
            if not spec[key]:
                raise UserError(f"config: strategies.{name}.{key}: an empty list sweeps nothing")
            combinations = [{**done, key: value} for done in combinations for value in spec[key]]
        for chosen in combinations:
            if not swept:
                label = name
            elif len(swept) == 1:
                label = f"{name}-{_value_label(chosen[swept[0]])}"
            else:
                label = name + "".join(f"-{key}{_value_label(chosen[key])}" for key in swept)
            if not _NAME_RE.match(label):
                raise UserError(f"config: strategies.{name}: the swept value makes the "
                                f"strategy name {label!r}, which is not a valid name")
            if label in expanded or (label != name and label in strategies):
                raise UserError(f"config: strategies.{name}: the sweep makes a strategy "
                                f"{label!r}, which is already defined")
            expanded[label] = {**spec, **chosen}
    return expanded


def strategies_by_entry(strategies: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """The strategy names each entry of `strategies:` expands to (expand_strategies)."""
    return {name: list(expand_strategies({name: spec})) for name, spec in strategies.items()}


def workload_strategies(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """The (expanded) strategies each workload runs, in the order of expand_strategies.

    A workload's optional `strategies:` list names entries of the top-level
    `strategies:` as written, before sweep expansion: naming a swept entry takes all of
    its values. Without the key a workload runs every strategy; the workload of
    `sharing:` may have an empty list (only the sharing experiment replays it).
    """
    entries = config.get("strategies", {})
    by_entry = strategies_by_entry(entries)
    every = [s for names in by_entry.values() for s in names]
    sharing_workload = (config.get("sharing") or {}).get("workload")
    chosen: dict[str, list[str]] = {}
    for workload, spec in config.get("workloads", {}).items():
        names = spec.get("strategies") if isinstance(spec, Mapping) else None
        if names is None:
            chosen[workload] = every
            continue
        # An empty list: only the sharing experiment replays the workload.
        empty_allowed = workload == sharing_workload
        if not isinstance(names, list) or (not names and not empty_allowed):
            raise UserError(f"config: workloads.{workload}.strategies must be a non-empty "
                            f"list of strategies: entries (empty only for sharing.workload), "
                            f"got {names!r}")
        for name in names:
            if name not in entries:
                raise UserError(f"config: workloads.{workload}.strategies names {name!r}, "
                                f"not an entry of strategies: ({', '.join(entries)})")
        chosen[workload] = [s for entry in entries if entry in names for s in by_entry[entry]]
    return chosen


def _workload_entry_schema(workload_schema: Mapping[str, Any]) -> dict[str, Any]:
    """One `workloads:` entry: the workload module's schema plus `strategies`, a choice
    of the pipeline (which strategies run on it), not of the trace."""
    entry = json.loads(json.dumps({k: v for k, v in workload_schema.items()
                                   if k not in ("$schema", "title")}))
    strategies = {"type": "array", "items": _NAME, "uniqueItems": True,
                  "description": "strategies: entries (as written, before sweep "
                                 "expansion) run on this workload; default: all; empty "
                                 "(sharing.workload only): no strategy run, only the "
                                 "sharing experiment's"}
    entry.setdefault("properties", {})["strategies"] = strategies
    # Each kind's branch closes its properties: the key has to be admitted there too.
    for branch in entry.get("allOf", []):
        branch["then"]["properties"]["strategies"] = strategies
    return entry


#: What a measured run asks a cluster scheduler for (config key `cluster`).
CLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "what a measured run (rules run, sweep_run, read_bandwidth) asks a "
                   "cluster scheduler for (workflow/profiles/slurm)",
    "properties": {
        "partition": {"type": "string", "description": "SLURM partition of measured runs "
                                                       "(a platform's own partition wins)"},
        "exclusive": {"type": "boolean", "default": False,
                      "description": "a whole node per measured run (sbatch --exclusive)"},
        "runtime_min": {"type": "integer", "minimum": 1,
                        "description": "wall-time limit of a measured run, minutes"},
        "mem_mb": {"type": "integer", "minimum": 1,
                   "description": "memory of a measured run, MB"},
        "cpus": {"type": "integer", "minimum": 1, "description": "cores of a measured run"},
        "gpus": {"type": "integer", "minimum": 0, "default": 1,
                 "description": "GPUs of a measured run on cuda"},
    },
}

#: The same runs on several platforms (config key `platforms`): name -> where.
PLATFORMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": _NAME,
    "description": "optional: the runs on several platforms; runs then go to "
                   "results/runs/<platform>/ and the report compares the platforms (the "
                   "first one is the report's main platform)",
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "partition": {"type": "string", "description": "SLURM partition"},
            "host": {"type": "string", "description": "node to run on (sbatch --nodelist)"},
            "device": {"enum": list(DEVICES), "description": "default: device"},
            "gpu_model": {"type": "string", "description": "GPU model to request "
                          "(sbatch --gpus=<model>:N) and to name in the report"},
            "gpu_index": {"type": "integer", "minimum": 0,
                          "description": "GPU outside a SLURM allocation; default: gpu_index"},
        },
    },
}

#: The resources a measured rule declares (SLURM executor plugin names); None: unset.
MEASURED_RESOURCE_KEYS: tuple[str, ...] = (
    "slurm_partition", "slurm_extra", "runtime", "mem_mb", "cpus_per_task", "gpu",
    "gpu_model",
)


def platform_names(config: Mapping[str, Any]) -> list[str]:
    """The configured platforms, in config order; empty without `platforms:`."""
    return list(config.get("platforms") or {})


def platform_spec(config: Mapping[str, Any], platform: str | None) -> dict[str, Any]:
    """Device, GPU and placement of a platform, the top-level keys filling the gaps.

    `platform` None (no `platforms:` configured) gives the top-level device and GPU.
    """
    spec = dict((config.get("platforms") or {}).get(platform) or {}) if platform else {}
    spec.setdefault("device", config.get("device", "cpu"))
    spec.setdefault("gpu_index", config.get("gpu_index", 0))
    return spec


def measured_resources(config: Mapping[str, Any], platform: str | None
                       ) -> dict[str, int | str | None]:
    """What one measured run asks a cluster scheduler for (MEASURED_RESOURCE_KEYS).

    From `cluster:` and the platform's entry: its partition (else cluster.partition),
    its host, a whole node when cluster.exclusive, wall time, memory and cores, and
    cluster.gpus GPUs (default 1, of the platform's gpu_model) on cuda. Without
    `cluster:` and `platforms:` only a cuda run asks for anything (its GPU), so a local
    run's jobs are the same as ever.
    """
    cluster = config.get("cluster") or {}
    spec = platform_spec(config, platform)
    extra = []
    if cluster.get("exclusive"):
        extra.append("--exclusive")
    if spec.get("host"):
        extra.append(f"--nodelist={spec['host']}")
    gpus = int(cluster.get("gpus", 1)) if spec["device"] == "cuda" else 0
    return {
        "slurm_partition": spec.get("partition") or cluster.get("partition"),
        "slurm_extra": " ".join(extra) or None,
        "runtime": cluster.get("runtime_min"),
        "mem_mb": cluster.get("mem_mb"),
        "cpus_per_task": cluster.get("cpus"),
        "gpu": gpus or None,
        "gpu_model": spec.get("gpu_model") if gpus else None,
    }


EVICTIONS = ("lru", "longest_idle", "cost_aware")
#: Policies of the sharing experiment's dedicated variants (each model on its own).
DEDICATED_POLICIES = ("always_on", "naive")

#: Several models sharing one device under a memory budget (config/sharing.yaml).
SHARING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "several models behind one gateway under a memory budget, against each "
    "model on its own",
    "required": ["deployments", "budget_mib", "workload"],
    "additionalProperties": False,
    "properties": {
        "deployments": {
            "type": "object",
            "minProperties": 2,
            "propertyNames": _NAME,
            "additionalProperties": {
                "type": "object",
                "required": ["model", "strategy"],
                "additionalProperties": False,
                "properties": {
                    "model": {**_NAME, "description": "models: entry"},
                    "strategy": {**_NAME, "description": "strategies: entry (its policy)"},
                },
            },
        },
        "budget_mib": {**_POSITIVE, "description": "memory all instances may hold, MiB"},
        "memory_wait_s": {**_POSITIVE, "default": 30,
                          "description": "longest wait of a start for memory before 503"},
        "evictions": {"type": "array", "items": {"enum": list(EVICTIONS)},
                      "uniqueItems": True, "minItems": 1, "default": list(EVICTIONS),
                      "description": "eviction policies compared"},
        "workload": {**_NAME, "description": "workloads: entry whose models: mix names "
                     "the deployments"},
        "dedicated": {"type": "array", "items": {"enum": list(DEDICATED_POLICIES)},
                      "uniqueItems": True, "default": list(DEDICATED_POLICIES),
                      "description": "policies of the dedicated variants (no budget, every "
                      "deployment with this policy, as if on a device of its own)"},
    },
}

#: Prefixes of the sharing experiment's variant names.
SHARED_PREFIX, DEDICATED_PREFIX = "shared-", "dedicated-"


def sharing_variants(config: Mapping[str, Any]) -> dict[str, dict[str, str | None]]:
    """The measured variants of ``sharing:``, in run order: ``shared-<eviction>`` for each
    of ``sharing.evictions`` (under the budget), then ``dedicated-<policy>`` for each of
    ``sharing.dedicated`` (no budget, every deployment with that policy).

    Each value says ``eviction`` (None: no budget) and ``policy`` (None: each deployment's
    own strategy). Empty without ``sharing:``.
    """
    sharing = config.get("sharing")
    if not sharing:
        return {}
    variants: dict[str, dict[str, str | None]] = {}
    for eviction in sharing.get("evictions", list(EVICTIONS)):
        variants[f"{SHARED_PREFIX}{eviction}"] = {"eviction": eviction, "policy": None}
    for policy in sharing.get("dedicated", list(DEDICATED_POLICIES)):
        variants[f"{DEDICATED_PREFIX}{policy}"] = {"eviction": None, "policy": policy}
    return variants


def sharing_variant_deployments(config: Mapping[str, Any], variant: str,
                                models_dir: str = "resources/models") -> dict[str, Any]:
    """The deployments file of one variant of :func:`sharing_variants`."""
    variants = sharing_variants(config)
    if variant not in variants:
        raise UserError(f"sharing: unknown variant {variant!r} ({', '.join(variants)})")
    spec = variants[variant]
    data = sharing_deployments(config, spec["eviction"], models_dir)
    if spec["policy"] is not None:
        # The dedicated policy replaces each deployment's strategy and its parameters.
        data["deployments"] = {
            name: {"model": entry["model"], "policy": spec["policy"]}
            for name, entry in data["deployments"].items()}
    return data


def sharing_deployments(config: Mapping[str, Any], eviction: str | None,
                        models_dir: str = "resources/models") -> dict[str, Any]:
    """The deployments file (``scalezero serve/run --deployments``) of ``sharing:`` with
    one eviction policy; ``eviction`` None: no budget (every model as if on its own)."""
    sharing = config["sharing"]
    strategies = expand_strategies(config.get("strategies", {}))
    deployments: dict[str, Any] = {}
    for name, entry in sharing["deployments"].items():
        spec = strategies[entry["strategy"]]
        deployments[name] = {"model": f"{models_dir}/{entry['model']}.gguf",
                             **{k: v for k, v in spec.items()}}
    data: dict[str, Any] = {"deployments": deployments}
    if eviction is not None:
        data.update(memory_budget_mib=sharing["budget_mib"], eviction=eviction,
                    memory_wait_s=sharing.get("memory_wait_s", 30))
    return data


def _check_sharing(config: Mapping[str, Any], strategies: Mapping[str, Any]) -> None:
    sharing = config.get("sharing")
    if sharing is None:
        return
    for name, entry in sharing["deployments"].items():
        if entry["model"] not in config.get("models", {}):
            raise UserError(f"config: sharing.deployments.{name}.model {entry['model']!r} is "
                            "not a key of models:")
        if entry["strategy"] not in strategies:
            raise UserError(f"config: sharing.deployments.{name}.strategy "
                            f"{entry['strategy']!r} is not a strategy")
    workload = config.get("workloads", {}).get(sharing["workload"])
    if workload is None:
        raise UserError(f"config: sharing.workload {sharing['workload']!r} is not a key of "
                        "workloads:")
    mix = workload.get("models") or {}
    named = mix.get("models", []) if "popularity" in mix else list(mix)
    unknown = [name for name in named if name not in sharing["deployments"]]
    if not named or unknown:
        raise UserError(f"config: workloads.{sharing['workload']}.models must name "
                        f"sharing.deployments (unknown: {unknown or 'none given'})")


def config_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of config/config.yaml."""
    from scalezero.measure.settings import TelemetrySettings
    from scalezero.models.schema import MODEL_SCHEMA
    from scalezero.report.config import REPORT_CONFIG_SCHEMA
    from scalezero.serving.settings import InstanceSettings, QueueSettings, config_schema_of
    from scalezero.simulate.settings import SIMULATION_SCHEMA
    from scalezero.workload.spec import WORKLOAD_SCHEMA

    model_entry = {k: v for k, v in MODEL_SCHEMA.items() if k not in ("$schema", "title")}
    workload_entry = _workload_entry_schema(WORKLOAD_SCHEMA)
    properties: dict[str, Any] = {
        "model": {**_NAME, "description": "the models: entry every strategy serves"},
        "models": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME,
            "additionalProperties": model_entry,
        },
        "size_sweep": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "models": {"type": "array", "items": _NAME, "uniqueItems": True},
                "strategy": {"type": "string", "description": "strategies: entry to use"},
                "requests": {"type": "integer", "minimum": 1, "default": 3},
                "spacing_s": {**_POSITIVE, "default": 3},
                "max_tokens": {"type": "integer", "minimum": 1, "default": 8},
            },
        },
        "tiers": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean", "default": False},
                "repeats": {"type": "integer", "minimum": 1, "default": 3},
                "clients": {"type": "array", "minItems": 1, "uniqueItems": True,
                            "items": {"type": "integer", "minimum": 1},
                            "default": [1, 4, 8]},
                "requests_per_client": {"type": "integer", "minimum": 1, "default": 3},
                "max_tokens": {"type": "integer", "minimum": 1, "default": 16},
            },
        },
        "device": {"enum": list(DEVICES), "default": "cpu"},
        "gpu_index": {"type": "integer", "minimum": 0, "default": 0},
        "cluster": CLUSTER_SCHEMA,
        "platforms": PLATFORMS_SCHEMA,
        # The gateway's and the sampler's settings state their keys and defaults once,
        # in their models.
        "instance": config_schema_of(InstanceSettings),
        "gateway": config_schema_of(QueueSettings),
        "workloads": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME,
            "additionalProperties": workload_entry,
        },
        "strategies": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME,
            "additionalProperties": _strategy_schema(),
        },
        "repeats": {"type": "integer", "minimum": 1, "default": 1},
        "order": {"enum": list(ORDERS), "default": "interleaved"},
        "order_seed": {"type": "integer", "minimum": 0, "default": 0},
        "telemetry": config_schema_of(TelemetrySettings),
        "slo_sets": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["ttft_ms", "tpot_ms"],
                "additionalProperties": False,
                "properties": {"ttft_ms": _POSITIVE, "tpot_ms": _POSITIVE},
            },
        },
        **REPORT_CONFIG_SCHEMA["properties"],
        "simulation": SIMULATION_SCHEMA,
        "sharing": SHARING_SCHEMA,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "scalezero pipeline configuration",
        "type": "object",
        "required": ["model", "models", "workloads", "strategies"],
        "additionalProperties": False,
        "properties": properties,
    }


def check_config(config: Mapping[str, Any]) -> None:
    """Checks the schema cannot express: cross references and policy parameters."""
    from scalezero.serving.strategies import make_policy
    from scalezero.simulate.settings import simulation_settings
    from scalezero.workload.spec import validate_spec

    models = config.get("models", {})
    if config.get("model") not in models:
        raise UserError(f"config: model {config.get('model')!r} is not a key of models: "
                        f"({', '.join(models)})")
    for name in config.get("size_sweep", {}).get("models", []):
        if name not in models:
            raise UserError(f"config: size_sweep.models names {name!r}, not a key of models:")
    for name, spec in config.get("workloads", {}).items():
        validate_spec(name, spec)
    workload_strategies(config)
    strategies = expand_strategies(config.get("strategies", {}))
    for name, spec in strategies.items():
        params = {k: v for k, v in spec.items() if k != "policy"}
        try:
            make_policy(spec["policy"], params)
        except UserError as exc:
            raise UserError(f"config: strategies.{name}: {exc}") from None
    _check_sharing(config, strategies)
    sweep_strategy = config.get("size_sweep", {}).get("strategy")
    if sweep_strategy is not None and sweep_strategy not in strategies:
        raise UserError(f"config: size_sweep.strategy {sweep_strategy!r} is not a strategy "
                        f"({', '.join(strategies)})")
    simulation_settings(config)
    report = config.get("report", {})
    if report.get("workload") is not None and report["workload"] not in config["workloads"]:
        raise UserError(f"config: report.workload {report['workload']!r} is not a key of "
                        "workloads:")


def run_order(strategies: list[str], repeats: int, order: str, order_seed: int
              ) -> list[tuple[str, int]]:
    """The planned sequence of measured runs, as (strategy, rep) pairs.

    `interleaved` runs every strategy once per round (rep 1 of all, then rep 2 of all),
    so slow drift of the machine (thermal, background load) spreads over all strategies
    instead of biasing one; `random` shuffles the whole list with `order_seed`.
    """
    plan = [(s, rep) for rep in range(1, repeats + 1) for s in strategies]
    if order == "random":
        random.Random(order_seed).shuffle(plan)
    elif order != "interleaved":
        raise UserError(f"config: order must be one of {', '.join(ORDERS)}, got {order!r}")
    return plan


def sharing_cli(args: Any) -> int:
    """Write the deployments file of a configuration's ``sharing:`` for one eviction."""
    from pathlib import Path

    import yaml

    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    if not isinstance(config, dict) or "sharing" not in config:
        raise UserError(f"{args.config}: no 'sharing:' key")
    check_config(config)
    eviction = None if args.eviction == "none" else args.eviction
    # Absolute: the file's relative paths would be read against its own folder.
    data = sharing_deployments(config, eviction, str(Path(args.models_dir).resolve()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return 0


def add_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sharing-deployments",
        help="write the deployments file of a configuration's sharing: key",
        description="Write the YAML file that 'scalezero run/serve --deployments' take, for "
        "the sharing: key of a configuration and one eviction policy ('none': no budget, "
        "every model with memory of its own).",
    )
    parser.add_argument("--config", required=True, help="configuration with a sharing: key")
    parser.add_argument("--eviction", required=True, choices=(*EVICTIONS, "none"))
    parser.add_argument("--models-dir", default="resources/models",
                        help="folder of the fetched models (default: %(default)s)")
    parser.add_argument("--out", required=True, help="deployments file to write")
    parser.set_defaults(func=sharing_cli)


def main() -> None:
    """Print the schema (python -m scalezero.cli.config > config/config.schema.json)."""
    print(json.dumps(config_schema(), indent=2))


if __name__ == "__main__":
    main()


__all__ = ["CLUSTER_SCHEMA", "MEASURED_RESOURCE_KEYS", "PLATFORMS_SCHEMA", "check_config",
           "config_schema", "expand_strategies", "measured_resources", "platform_names",
           "platform_spec", "run_order", "sharing_deployments", "sharing_variant_deployments",
           "sharing_variants", "strategies_by_entry",
           "workload_strategies"]
