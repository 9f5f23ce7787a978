"""config/sharing.yaml passes the schema and the cross checks; its deployments files."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from scalezero.cli.config import (
    check_config,
    config_schema,
    sharing_deployments,
    sharing_variant_deployments,
    sharing_variants,
    workload_strategies,
)
from scalezero.errors import UserError
from scalezero.serving.settings import GatewaySettings
from scalezero.workload import generate_trace

ROOT = Path(__file__).resolve().parents[2]
SHARING = ROOT / "config" / "sharing.yaml"


def _config() -> dict:
    return yaml.safe_load(SHARING.read_text(encoding="utf-8"))


def test_sharing_config_is_valid() -> None:
    config = _config()
    jsonschema.Draft202012Validator(config_schema()).validate(config)
    check_config(config)


def test_its_workload_asks_for_the_deployments() -> None:
    config = _config()
    trace = generate_trace("zipf_mix", config["workloads"]["zipf_mix"])
    assert set(trace["model"]) == set(config["sharing"]["deployments"])


def test_deployments_files_per_eviction_and_without_budget() -> None:
    config = _config()
    data = sharing_deployments(config, "cost_aware")
    assert data["memory_budget_mib"] == 480 and data["eviction"] == "cost_aware"
    assert data["deployments"]["synth-tiny"] == {
        "model": "resources/models/synth-tiny.gguf", "policy": "keep_warm",
        "keep_warm_ttl_s": 60}
    dedicated = sharing_deployments(config, None)
    assert "memory_budget_mib" not in dedicated
    # The shape read_deployments turns into settings.
    first, *_ = dedicated["deployments"]
    assert first == "smollm2"
    GatewaySettings.model_validate({"model_path": "x.gguf", "policy": "naive",
                                    "memory_budget_mib": data["memory_budget_mib"],
                                    "eviction": data["eviction"]})


@pytest.mark.parametrize("change, message", [
    (lambda c: c["sharing"]["deployments"]["smollm2"].update(model="nope"), "not a key of"),
    (lambda c: c["sharing"]["deployments"]["smollm2"].update(strategy="nope"),
     "not a strategy"),
    (lambda c: c["sharing"].update(workload="nope"), "sharing.workload"),
    (lambda c: c["workloads"]["zipf_mix"]["models"].update(models=["smollm2", "other"]),
     "must name sharing.deployments"),
])
def test_cross_references_are_checked(change, message: str) -> None:  # type: ignore[no-untyped-def]
    config = copy.deepcopy(_config())
    change(config)
    with pytest.raises(UserError, match=message):
        check_config(config)


def test_the_command_writes_a_file_run_takes(tmp_path: Path) -> None:
    from scalezero.cli import main
    from scalezero.serving.cli import read_deployments

    out = tmp_path / "d.yaml"
    assert main(["sharing-deployments", "--config", str(SHARING), "--eviction", "lru",
                 "--models-dir", str(tmp_path), "--out", str(out)]) == 0
    data = read_deployments(out)
    assert data["model_name"] == "smollm2" and data["eviction"] == "lru"
    assert data["model_path"] == str(tmp_path / "smollm2-135m.gguf")
    assert list(data["deployments"]) == ["synth-smollm2", "synth-tiny"]
    assert main(["sharing-deployments", "--config", str(SHARING), "--eviction", "none",
                 "--out", str(out)]) == 0
    assert "memory_budget_mib" not in read_deployments(out)


def test_variants_are_one_per_eviction_then_the_dedicated_ones() -> None:
    config = _config()
    assert list(sharing_variants(config)) == [
        "shared-lru", "shared-longest_idle", "shared-cost_aware",
        "dedicated-always_on", "dedicated-naive"]
    config["sharing"].update(evictions=["cost_aware"], dedicated=["naive"])
    assert sharing_variants(config) == {
        "shared-cost_aware": {"eviction": "cost_aware", "policy": None},
        "dedicated-naive": {"eviction": None, "policy": "naive"}}
    jsonschema.Draft202012Validator(config_schema()).validate(config)
    del config["sharing"]
    assert sharing_variants(config) == {}


def test_dedicated_variant_has_no_budget_and_one_policy() -> None:
    config = _config()
    dedicated = sharing_variant_deployments(config, "dedicated-always_on", "models")
    assert "memory_budget_mib" not in dedicated and "eviction" not in dedicated
    assert dedicated["deployments"]["synth-tiny"] == {"model": "models/synth-tiny.gguf",
                                                      "policy": "always_on"}
    shared = sharing_variant_deployments(config, "shared-lru", "models")
    assert shared == sharing_deployments(config, "lru", "models")
    assert shared["deployments"]["synth-tiny"]["policy"] == "keep_warm"
    with pytest.raises(UserError, match="unknown variant"):
        sharing_variant_deployments(config, "shared-fifo")


def test_only_the_sharing_workload_may_have_no_strategy() -> None:
    config = _config()
    config["workloads"]["zipf_mix"]["strategies"] = []
    jsonschema.Draft202012Validator(config_schema()).validate(config)
    assert workload_strategies(config)["zipf_mix"] == []
    config["workloads"]["other"] = {**config["workloads"]["zipf_mix"]}
    with pytest.raises(UserError, match="non-empty"):
        workload_strategies(config)
