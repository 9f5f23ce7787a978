"""A workflow run of a sharing variant: the deployments file says what the gateway
serves; the workflow's settings add the device, instance, gateway and identity."""

from __future__ import annotations

from pathlib import Path

import yaml

from scalezero.cli.config import sharing_variant_deployments
from scalezero.measure.settings import RunSettings

CONFIG = Path(__file__).resolve().parents[2] / "config" / "sharing.yaml"


def test_settings_serve_the_variants_deployments(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    deployments = tmp_path / "sharing" / "deployments" / "shared-lru.yaml"
    deployments.parent.mkdir(parents=True)
    # Relative model paths are read against the file's folder.
    deployments.write_text(yaml.safe_dump(
        sharing_variant_deployments(config, "shared-lru", "../../models")))
    settings = {"workload": "zipf_mix", "strategy": "shared-lru", "rep": 1,
                "order_index": 0, "device": "cpu", "gpu_index": 0,
                "instance": {"n_ctx": 512}, "gateway": {"max_queue": 256}, "seed": 11}
    plan = RunSettings.from_workflow(settings, tmp_path / "unused.gguf",
                                     tmp_path / "trace.csv", tmp_path / "run",
                                     log_dir=tmp_path / "logs",
                                     deployments_path=deployments)
    gateway = plan.gateway
    assert gateway.model_alias == "smollm2"
    assert gateway.model_path.resolve() == (tmp_path / "models" / "smollm2-135m.gguf")
    assert set(gateway.deployments) == {"synth-smollm2", "synth-tiny"}
    assert (gateway.memory_budget_mib, gateway.eviction) == (480, "lru")
    assert gateway.policy == "keep_warm" and gateway.policy_params == {"keep_warm_ttl_s": 60}
    assert gateway.instance.n_ctx == 512 and gateway.gateway.max_queue == 256
    assert (plan.strategy, plan.workload, plan.seed) == ("shared-lru", "zipf_mix", 11)

    deployments.write_text(yaml.safe_dump(
        sharing_variant_deployments(config, "dedicated-naive", "../../models")))
    plan = RunSettings.from_workflow(settings, tmp_path / "unused.gguf",
                                     tmp_path / "trace.csv", tmp_path / "run",
                                     log_dir=tmp_path / "logs",
                                     deployments_path=deployments)
    assert plan.gateway.memory_budget_mib is None
    assert {d.policy for d in plan.gateway.deployments.values()} == {"naive"}
    assert plan.gateway.policy == "naive"
