"""The model-sharing experiment's rules: planned from `sharing:` (one measured run per
variant, then the tables and the figure), absent without the key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from workflow_helpers import (
    REPO_ROOT,
    SNAKEMAKE,
    copy_workflow,
    new_tag,
    planned_jobs,
    planned_wildcards,
    snakemake,
)

SHARING_JOBS = ("sharing_deployments", "sharing_run", "sharing_analysis", "sharing_figure")


def _plan(workdir: Path, *configfiles: str) -> str:
    result = snakemake(workdir, "-n", "--forceall", "--cores", "2", "--configfile",
                       *configfiles, tag=new_tag())
    return result.stdout + result.stderr


def test_the_experiment_config_plans_every_variant(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "wf")
    output = _plan(workdir, "config/sharing.yaml")
    jobs = planned_jobs(output)
    assert (jobs["sharing_deployments"], jobs["sharing_run"], jobs["sharing_analysis"],
            jobs["sharing_figure"]) == (5, 5, 1, 1), jobs
    assert sorted(planned_wildcards(output, "sharing_run")) == sorted(
        f"variant={v}" for v in ("shared-lru", "shared-longest_idle", "shared-cost_aware",
                                 "dedicated-always_on", "dedicated-naive"))
    # Its outputs are where the contract puts them.
    for path in ("results/sharing/runs/shared-cost_aware/run.json",
                 "results/sharing/runs/dedicated-naive/events.csv",
                 "results/sharing/deployments/dedicated-always_on.yaml",
                 "results/sharing/summary.csv", "results/sharing/per_deployment.csv"):
        assert path in output, path


def test_the_smoke_config_plans_one_shared_and_one_dedicated_run(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "wf")
    output = _plan(workdir, ".test/config.yaml")
    assert sorted(planned_wildcards(output, "sharing_run")) == \
        ["variant=dedicated-always_on", "variant=shared-lru"]
    # The sharing workload is replayed by the sharing runs only.
    runs = planned_wildcards(output, "run")
    assert runs and not [w for w in runs if "workload=zipf_mix" in w], runs


def test_without_the_key_no_sharing_job(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "wf")
    config = yaml.safe_load((workdir / ".test" / "config.yaml").read_text())
    del config["sharing"]
    del config["workloads"]["zipf_mix"]
    (workdir / ".test" / "plain.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(_plan(workdir, ".test/plain.yaml"))
    assert not set(jobs) & set(SHARING_JOBS), jobs
    assert jobs["report"] == 1


def test_lint_is_clean_with_the_sharing_rules() -> None:
    result = subprocess.run([*SNAKEMAKE, "--lint", "--configfile", "config/sharing.yaml"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr
