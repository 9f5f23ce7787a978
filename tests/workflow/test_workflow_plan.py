"""What the workflow plans for a configuration (dry runs: nothing is measured)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from workflow_helpers import copy_workflow, new_tag, planned_wildcards, snakemake

SMOKE = ".test/config.yaml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("plan"))


def _dry_run(workdir: Path, config: dict, name: str, check: bool = True) -> str:
    path = workdir / ".test" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(path),
                       tag=new_tag(), check=check)
    return result.stdout + result.stderr


def _runs_of(out: str, workload: str) -> list[str]:
    prefix = f"workload={workload}, strategy="
    return sorted(w.removeprefix(prefix) for w in planned_wildcards(out, "run")
                  if w.startswith(prefix))


def test_a_workload_plans_runs_of_its_strategies_only(workdir: Path) -> None:
    config = yaml.safe_load((workdir / SMOKE).read_text())
    config["workloads"]["smoke"]["strategies"] = ["always_on", "keep_warm"]
    config["workloads"]["azure_slice"]["strategies"] = ["keep_warm"]
    out = _dry_run(workdir, config, "subset")
    assert _runs_of(out, "smoke") == ["always_on, rep=1", "keep_warm-2, rep=1",
                                      "keep_warm-30, rep=1"]
    assert _runs_of(out, "azure_slice") == ["keep_warm-2, rep=1", "keep_warm-30, rep=1"]
    # The report's workload draws a timeline of its own strategies only.
    assert sorted(planned_wildcards(out, "figure_timeline")) == [
        "workload=smoke, strategy=always_on", "workload=smoke, strategy=keep_warm-2",
        "workload=smoke, strategy=keep_warm-30"]


def test_without_a_list_a_workload_runs_every_strategy(workdir: Path) -> None:
    config = yaml.safe_load((workdir / SMOKE).read_text())
    out = _dry_run(workdir, config, "shipped")
    every = ["always_on, rep=1", "keep_warm-2, rep=1", "keep_warm-30, rep=1", "naive, rep=1",
             "tiered, rep=1"]
    assert _runs_of(out, "smoke") == every
    # The shipped smoke configuration gives its trace slice a subset.
    assert _runs_of(out, "azure_slice") == ["naive, rep=1"]


def test_an_unknown_strategy_of_a_workload_stops_the_workflow(workdir: Path) -> None:
    config = yaml.safe_load((workdir / SMOKE).read_text())
    config["workloads"]["smoke"]["strategies"] = ["naive", "lazy"]
    out = _dry_run(workdir, config, "unknown", check=False)
    assert "workloads.smoke.strategies names 'lazy'" in out, out[-3000:]
    assert "Job stats" not in out
