"""Configuration: the committed schema is current, shipped configs pass, mistakes are named."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from scalezero.cli.config import (
    check_config,
    config_schema,
    expand_strategies,
    run_order,
    workload_strategies,
)
from scalezero.errors import UserError
from scalezero.measure.settings import TelemetrySettings, config_sha256
from scalezero.serving.settings import InstanceSettings, QueueSettings

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [ROOT / "config" / "config.yaml", ROOT / ".test" / "config.yaml",
           ROOT / "config" / "policy-lab.yaml"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_committed_schema_is_generated_from_the_package() -> None:
    committed = json.loads((ROOT / "config" / "config.schema.json").read_text())
    assert committed == config_schema(), (
        "config/config.schema.json is stale: python -m scalezero.cli.config > "
        "config/config.schema.json")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_are_valid(path: Path) -> None:
    config = _load(path)
    jsonschema.Draft202012Validator(config_schema()).validate(config)
    check_config(config)


def test_every_top_level_key_is_documented() -> None:
    doc = (ROOT / "config" / "README.md").read_text(encoding="utf-8")
    for key in config_schema()["properties"]:
        assert f"`{key}`" in doc, key


def test_schema_rejects_unknown_keys_and_bad_values() -> None:
    validator = jsonschema.Draft202012Validator(config_schema())
    config = _load(CONFIGS[1])
    assert not list(validator.iter_errors(config))
    typo = copy.deepcopy(config) | {"repeat": 3}
    assert list(validator.iter_errors(typo))
    bad_device = copy.deepcopy(config) | {"device": "gpu"}
    assert list(validator.iter_errors(bad_device))
    bad_hash = copy.deepcopy(config)
    bad_hash["models"]["smollm2-135m"]["sha256"] = "abc"
    assert list(validator.iter_errors(bad_hash))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(model="nope"), "model 'nope' is not a key of models"),
        (lambda c: c["strategies"]["keep_warm"].update(ttl=3), "keep_warm.*no parameter"),
        (lambda c: c["strategies"]["naive"].update(policy="lazy"), "unknown policy 'lazy'"),
        (lambda c: c["workloads"]["smoke"].pop("seed"), "seed"),
        (lambda c: c["size_sweep"].update(models=["missing"]), "size_sweep.models"),
    ],
)
def test_cross_reference_mistakes_are_named(change, message: str) -> None:
    config = _load(CONFIGS[1])
    change(config)
    with pytest.raises(UserError, match=message):
        check_config(config)


def test_run_order_interleaves_repeats_and_shuffles_reproducibly() -> None:
    assert run_order(["a", "b"], 2, "interleaved", 0) == [("a", 1), ("b", 1), ("a", 2),
                                                          ("b", 2)]
    shuffled = run_order(["a", "b", "c"], 3, "random", 5)
    assert shuffled == run_order(["a", "b", "c"], 3, "random", 5)
    assert sorted(shuffled) == sorted(run_order(["a", "b", "c"], 3, "interleaved", 0))
    assert shuffled != run_order(["a", "b", "c"], 3, "interleaved", 0)
    with pytest.raises(UserError, match="order must be one of interleaved, random, got "
                                        "'alphabetical'"):
        run_order(["a"], 1, "alphabetical", 0)


def test_config_hash_ignores_key_order() -> None:
    assert config_sha256({"a": 1, "b": [1, 2]}) == config_sha256({"b": [1, 2], "a": 1})
    assert config_sha256({"a": 1}) != config_sha256({"a": 2})


def _readme_defaults(section: str, prefix: str = "") -> dict[str, str]:
    """key -> default cell of the table under ``## `section` ...`` in config/README.md."""
    doc = (ROOT / "config" / "README.md").read_text(encoding="utf-8")
    body = doc.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
    cells = {}
    for line in body.splitlines():
        match = re.match(r"\| `([^`]+)` \| ([^|]+) \|", line)
        if match and match.group(1).startswith(prefix):
            cells[match.group(1).removeprefix(prefix)] = match.group(2).strip()
    return cells


@pytest.mark.parametrize(
    ("model", "section", "prefix"),
    [(InstanceSettings, "device`, `gpu_index`, `instance", "instance."),
     (QueueSettings, "gateway", ""),
     (TelemetrySettings, "telemetry", "")],
    ids=["instance", "gateway", "telemetry"],
)
def test_readme_defaults_are_the_models_defaults(model, section: str, prefix: str) -> None:
    cells = _readme_defaults(section, prefix)
    assert set(cells) == set(model.model_fields), "config/README.md lists other keys"
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if default is None:
            continue  # written in words ("llama.cpp's default")
        cell = cells[name].strip("`")
        try:
            written = json.loads(cell)
        except ValueError:
            written = cell  # a word: `cpu`, `/v1/models`, `127.0.0.1`
        assert written == (list(default) if isinstance(default, tuple) else default), name


def test_a_parameter_list_expands_to_one_strategy_per_value_in_order() -> None:
    strategies = {
        "always_on": {"policy": "always_on"},
        "keep_warm": {"policy": "keep_warm", "keep_warm_ttl_s": [2, 10, 0.5], "max_instances": 1},
    }
    assert expand_strategies(strategies) == {
        "always_on": {"policy": "always_on"},
        "keep_warm-2": {"policy": "keep_warm", "keep_warm_ttl_s": 2, "max_instances": 1},
        "keep_warm-10": {"policy": "keep_warm", "keep_warm_ttl_s": 10, "max_instances": 1},
        "keep_warm-0.5": {"policy": "keep_warm", "keep_warm_ttl_s": 0.5, "max_instances": 1},
    }


def test_several_lists_expand_to_every_combination_named_by_parameter() -> None:
    expanded = expand_strategies({"kw": {"policy": "keep_warm", "keep_warm_ttl_s": [5, 60],
                                         "max_instances": [1, 2]}})
    assert list(expanded) == ["kw-keep_warm_ttl_s5-max_instances1",
                              "kw-keep_warm_ttl_s5-max_instances2",
                              "kw-keep_warm_ttl_s60-max_instances1",
                              "kw-keep_warm_ttl_s60-max_instances2"]
    assert expanded["kw-keep_warm_ttl_s60-max_instances2"] == {
        "policy": "keep_warm", "keep_warm_ttl_s": 60, "max_instances": 2}


@pytest.mark.parametrize(("strategies", "message"), [
    ({"kw": {"policy": "keep_warm", "keep_warm_ttl_s": []}}, "empty list sweeps nothing"),
    ({"kw": {"policy": "keep_warm", "keep_warm_ttl_s": [2]},
      "kw-2": {"policy": "naive"}}, "'kw-2', which is already defined"),
    ({"kw": {"policy": "keep_warm", "keep_warm_ttl_s": [2, 2.0]}}, "already defined"),
    ({"kw": {"policy": "keep_warm", "note": ["a b"]}}, "not a valid name"),
])
def test_sweep_mistakes_are_named(strategies: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        expand_strategies(strategies)


def test_a_swept_config_validates_and_each_value_is_checked_by_its_policy() -> None:
    config = _load(ROOT / ".test" / "config.yaml")
    # The sharing experiment's deployments name keep_warm-30, which [2, 5] drops.
    config.pop("sharing")
    config["workloads"].pop("zipf_mix")
    config["strategies"]["keep_warm"]["keep_warm_ttl_s"] = [2, 5]
    jsonschema.Draft202012Validator(config_schema()).validate(config)
    check_config(config)
    config["strategies"]["keep_warm"]["keep_warm_ttl_s"] = [2, -1]
    with pytest.raises(UserError, match=r"strategies\.keep_warm--1: "):
        check_config(config)
    config["strategies"]["keep_warm"]["keep_warm_ttl_s"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(config_schema()).validate(config)


def test_a_workload_runs_only_its_strategies_and_a_swept_entry_covers_all_values() -> None:
    config = _load(ROOT / ".test" / "config.yaml")
    config["workloads"]["smoke"]["strategies"] = ["keep_warm", "always_on"]
    config["workloads"]["azure_slice"].pop("strategies")
    jsonschema.Draft202012Validator(config_schema()).validate(config)
    check_config(config)
    # Config order of the strategies, whatever the order of the list.
    assert workload_strategies(config) == {
        "smoke": ["always_on", "keep_warm-2", "keep_warm-30"],
        "azure_slice": ["always_on", "naive", "tiered", "keep_warm-2", "keep_warm-30"],
        # Replayed by the sharing experiment only.
        "zipf_mix": [],
    }


@pytest.mark.parametrize(("names", "message"), [
    (["naive", "lazy"], "workloads.smoke.strategies names 'lazy', not an entry of "
                        "strategies: (always_on, naive, tiered, keep_warm)"),
    # Entries are named as written, before the sweep expands them.
    (["keep_warm-2"], "names 'keep_warm-2'"),
])
def test_an_unknown_workload_strategy_is_named(names: list[str], message: str) -> None:
    config = _load(ROOT / ".test" / "config.yaml")
    config["workloads"]["smoke"]["strategies"] = names
    with pytest.raises(UserError, match=re.escape(message)):
        check_config(config)


def test_only_the_sharing_workload_may_run_no_strategy() -> None:
    config = _load(ROOT / ".test" / "config.yaml")
    config["workloads"]["smoke"]["strategies"] = []
    with pytest.raises(UserError, match="non-empty"):
        check_config(config)


@pytest.mark.parametrize("value", ["naive", ["naive", "naive"], [3]])
def test_the_schema_refuses_a_malformed_workload_strategy_list(value) -> None:
    config = _load(ROOT / ".test" / "config.yaml")
    config["workloads"]["smoke"]["strategies"] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(config_schema()).validate(config)


def test_every_workload_kind_admits_a_strategy_list() -> None:
    validator = jsonschema.Draft202012Validator(config_schema())
    config = _load(ROOT / ".test" / "config.yaml")
    config["workloads"] = {
        "p": {"kind": "poisson", "seed": 1, "rate_rps": 1, "duration_s": 5,
              "strategies": ["naive"]},
        "t": {"kind": "trace_csv", "seed": 1, "path": "x.csv", "strategies": ["naive"]},
    }
    validator.validate(config)
    config["workloads"]["p"]["strategy"] = ["naive"]  # a typo stays an error
    assert list(validator.iter_errors(config))


def test_the_workload_step_ignores_the_strategy_list() -> None:
    from scalezero.workload.spec import validate_spec

    spec = {"kind": "poisson", "seed": 1, "rate_rps": 1, "duration_s": 5}
    assert validate_spec("w", {**spec, "strategies": ["naive"]}) == validate_spec("w", spec)


def test_measured_resources_come_from_cluster_and_platform() -> None:
    from scalezero.cli.config import MEASURED_RESOURCE_KEYS, measured_resources, platform_spec

    config = {"device": "cpu", "gpu_index": 1,
              "cluster": {"partition": "batch", "exclusive": True, "runtime_min": 45,
                          "mem_mb": 4000, "cpus": 8},
              "platforms": {"h100": {"partition": "gpu", "device": "cuda",
                                     "gpu_model": "h100", "host": "n7"},
                            "cpu": {}}}
    h100 = measured_resources(config, "h100")
    assert list(h100) == list(MEASURED_RESOURCE_KEYS)
    assert h100 == {"slurm_partition": "gpu", "slurm_extra": "--exclusive --nodelist=n7",
                    "runtime": 45, "mem_mb": 4000, "cpus_per_task": 8, "gpu": 1,
                    "gpu_model": "h100"}
    cpu = measured_resources(config, "cpu")
    assert (cpu["slurm_partition"], cpu["gpu"], cpu["gpu_model"]) == ("batch", None, None)
    assert platform_spec(config, "cpu") == {"device": "cpu", "gpu_index": 1}
    # Without cluster: and platforms:, a cpu run asks for nothing, a cuda run for its GPU.
    assert set(measured_resources({"device": "cpu"}, None).values()) == {None}
    assert measured_resources({"device": "cuda"}, None)["gpu"] == 1
