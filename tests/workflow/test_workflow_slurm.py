"""The workflow under the SLURM executor plugin, on stand-in SLURM commands.

tests/support/fake_slurm/ holds sbatch, squeue, sacct, scancel, sinfo, scontrol and srun
for one machine: sbatch runs the job in the background, sacct reports its state, and
two partitions stand for two platforms (both on the CPU). The dry run checks what the
profile asks SLURM for; the slow test runs a tiny configuration through the real plugin
and the real DAG.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from workflow_helpers import (
    REPO_ROOT,
    copy_workflow,
    kill_all,
    new_tag,
    planned_jobs,
    snakemake,
    tagged_servers,
    wait_no_servers,
)

SMOKE = ".test/config.yaml"
PROFILE = "workflow/profiles/slurm"
FAKE_SLURM = REPO_ROOT / "tests" / "support" / "fake_slurm"
PARTITIONS = ("part-a", "part-b")


def _tiny_config(workdir: Path, *, cluster: dict | None = None, **platform_extra) -> Path:
    """The smoke configuration cut down: one strategy, a three-request trace, no size
    sweep, two platforms on the two stand-in partitions."""
    config = yaml.safe_load((workdir / SMOKE).read_text())
    trace = workdir / ".test" / "three.csv"
    trace.write_text("t_sched_s\n0\n3\n6\n")
    config["workloads"] = {"three": {"kind": "trace_csv", "path": ".test/three.csv",
                                     "seed": 7, "max_tokens": 4, "prompt_words": 8}}
    config["strategies"] = {"naive": {"policy": "naive"}}
    config.pop("sharing", None)  # its deployments name the smoke's strategies
    config.pop("size_sweep", None)
    config["models"] = {"smollm2-135m": config["models"]["smollm2-135m"]}
    config["platforms"] = {"cpu-a": {"partition": "part-a", **platform_extra},
                           "cpu-b": {"partition": "part-b"}}
    config["cluster"] = cluster or {"runtime_min": 10, "mem_mb": 2000, "cpus": 2}
    path = workdir / ".test" / "slurm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _slurm_env(state: Path) -> dict[str, str]:
    """PATH with the stand-in commands (and this interpreter, which runs them) first."""
    return {
        "PATH": os.pathsep.join([str(FAKE_SLURM), str(Path(sys.executable).parent),
                                 os.environ.get("PATH", "")]),
        "FAKE_SLURM_DIR": str(state),
        "FAKE_SLURM_PARTITIONS": ",".join(PARTITIONS),
    }


def _resources(dry_run: str, rule: str) -> list[dict[str, str]]:
    """The `resources:` of every planned job of `rule`, with its wildcards."""
    found = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        if not re.match(rf"(?:local)?rule {rule}:", block.strip()):
            continue
        wildcards = re.search(r"wildcards: (.*)", block)
        resources = re.search(r"resources: (.*)", block)
        entry = dict(kv.split("=", 1) for kv in resources.group(1).split(", ")) \
            if resources else {}
        entry["wildcards"] = wildcards.group(1).strip() if wildcards else ""
        found.append(entry)
    return found


def test_the_slurm_profile_plans_measured_runs_per_platform(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "dry")
    config = _tiny_config(workdir, cluster={"exclusive": True, "runtime_min": 30,
                                            "mem_mb": 8000, "cpus": 4})
    result = snakemake(workdir, "-n", "--profile", PROFILE, "--configfile", str(config),
                       tag=new_tag())
    out = result.stdout + result.stderr
    jobs = planned_jobs(out)
    assert jobs["run"] == 2 and jobs["aggregate"] == 2, jobs
    assert jobs["platform_comparison"] == 1 and jobs["report"] == 1, jobs
    runs = {r["wildcards"]: r for r in _resources(out, "run")}
    assert set(runs) == {"platform=cpu-a, workload=three, strategy=naive, rep=1",
                         "platform=cpu-b, workload=three, strategy=naive, rep=1"}
    for wildcards, partition in zip(sorted(runs), PARTITIONS, strict=True):
        job = runs[wildcards]
        assert job["slurm_partition"] == partition, job
        assert job["slurm_extra"] == "--exclusive", job
        assert (job["runtime"], job["mem_mb"], job["cpus_per_task"]) == ("30", "8000", "4")
        assert "gpu" not in job, job  # both platforms are on the CPU
    # Runs and summaries one folder deeper, per platform.
    assert "results/runs/cpu-b/three/naive/1/run.json" in out
    assert "results/summary/cpu-a/three.csv" in out
    assert "results/summary/platforms.csv" in out
    # Light rules stay on the submitting host: they ask for no partition.
    assert all("slurm_partition" not in r for r in _resources(out, "aggregate"))


def test_a_cuda_platform_asks_for_one_gpu_of_its_model(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "dry")
    config = _tiny_config(workdir, device="cuda", gpu_model="h100", host="gpu-node-1")
    result = snakemake(workdir, "-n", "--profile", PROFILE, "--configfile", str(config),
                       tag=new_tag())
    runs = {r["wildcards"].split(",")[0]: r for r in _resources(result.stdout, "run")}
    assert runs["platform=cpu-a"]["gpu"] == "1", runs
    assert runs["platform=cpu-a"]["gpu_model"] == "h100", runs
    assert runs["platform=cpu-a"]["slurm_extra"] == "--nodelist=gpu-node-1", runs
    assert "gpu" not in runs["platform=cpu-b"], runs


def _slurm(env: dict[str, str], *command: str, stdin: str | None = None
           ) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), env={**os.environ, **env}, input=stdin,
                          capture_output=True, text=True, timeout=30)


def _wait_state(env: dict[str, str], name: str, job_id: str, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        out = _slurm(env, "sacct", "-X", "--parsable2", "--noheader",
                     "--format=JobIdRaw,State", "--name", name).stdout
        state = dict(line.split("|") for line in out.splitlines()).get(job_id, "")
        if state in ("COMPLETED", "FAILED", "CANCELLED") or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_the_stand_in_slurm_answers_as_the_plugin_expects(tmp_path: Path) -> None:
    env = _slurm_env(tmp_path / "state")
    assert _slurm(env, "sinfo", "-o", "%P").stdout.split() == ["PARTITION", "part-a*",
                                                               "part-b"]
    assert "MaxArraySize" in _slurm(env, "scontrol", "show", "config").stdout
    out = tmp_path / "logs" / "%j.log"
    submitted = _slurm(env, "sbatch", "--parsable", "--job-name", "r1", "--output", str(out),
                       "-p", "part-b", "--cpus-per-task=3", "-D", str(tmp_path),
                       "--wrap=srun -n1 --cpu-bind=q --nodes=1 sh -c "
                       "'echo $SLURM_JOB_PARTITION $SLURMD_NODENAME $SLURM_CPUS_PER_TASK'")
    job_id = submitted.stdout.strip()
    assert submitted.returncode == 0 and job_id.isdigit(), submitted
    assert _wait_state(env, "r1", job_id) == "COMPLETED"
    assert (tmp_path / "logs" / f"{job_id}.log").read_text().split() == [
        "part-b", "node-part-b", "3"]
    failing = _slurm(env, "sbatch", "--parsable", "--job-name", "r1", "-D", str(tmp_path),
                     "/dev/stdin", stdin="#!/bin/sh\nexit 3\n").stdout.strip()
    assert _wait_state(env, "r1", failing) == "FAILED"
    sleeping = _slurm(env, "sbatch", "--parsable", "--job-name", "r2", "-D", str(tmp_path),
                      "--wrap=sleep 60").stdout.strip()
    assert _slurm(env, "scancel", sleeping).returncode == 0
    assert _wait_state(env, "r2", sleeping) == "CANCELLED"
    squeue = _slurm(env, "squeue", "--format=%i|%T", "--states=all", "--noheader",
                    "--name", "r2").stdout
    assert squeue == f"{sleeping}|CANCELLED\n"
    refused = _slurm(env, "sbatch", "-p", "nowhere", "--wrap=true")
    assert refused.returncode != 0 and "invalid partition" in refused.stderr
    assert _slurm(env, "sbatch", "--gpus=1", "--wrap=true").returncode != 0  # no GPU here
    deadline = time.monotonic() + 10
    while _job_processes(tmp_path / "state") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _job_processes(tmp_path / "state")


def _job_processes(state: Path) -> list[psutil.Process]:
    alive = []
    for record in (state / "jobs").glob("*.json"):
        pid = json.loads(record.read_text()).get("pid")
        try:
            proc = psutil.Process(pid) if pid else None
            if proc is not None and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.mark.slow
def test_two_platforms_through_the_slurm_plugin(tmp_path: Path, real_model: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = copy_workflow(tmp_path / "wf", real_model)
    config = _tiny_config(workdir)
    state = tmp_path / "slurm"
    for key, value in _slurm_env(state).items():  # snakemake() passes them on
        monkeypatch.setenv(key, value)
    tag = new_tag()
    try:
        snakemake(workdir, "--profile", PROFILE, "--configfile", str(config),
                  "--slurm-init-seconds-before-status-checks", "1", "--jobs", "2",
                  tag=tag, timeout_s=600)
    finally:
        leaked = wait_no_servers(tag, 10.0)
        kill_all(leaked)
        jobs_left = _job_processes(state)
        kill_all(jobs_left)
    assert not leaked, [" ".join(p.cmdline()) for p in leaked]
    assert not jobs_left, "stand-in SLURM jobs still running"

    # One SLURM job per measured run, on its platform's partition; nothing else submitted.
    records = [json.loads(p.read_text()) for p in sorted((state / "jobs").glob("*.json"))]
    assert sorted(r["partition"] for r in records) == list(PARTITIONS), records
    assert all(r["state"] == "COMPLETED" for r in records), records
    results = workdir / "results"
    for platform, partition in (("cpu-a", "part-a"), ("cpu-b", "part-b")):
        run = json.loads((results / "runs" / platform / "three" / "naive" / "1" /
                          "run.json").read_text())
        assert run["status"] == "ok" and run["platform"] == platform
        job = next(r for r in records if r["partition"] == partition)
        assert run["slurm"]["job_id"] == job["id"], run["slurm"]
        assert run["slurm"]["partition"] == partition
        assert run["slurm"]["node"] == f"node-{partition}"
        assert run["slurm"]["cpus"] == 2
        summary = pd.read_csv(results / "summary" / platform / "three.csv")
        assert list(summary["strategy"]) == ["naive"] and summary["ok"].iloc[0] == 3
    comparison = pd.read_csv(results / "summary" / "platforms.csv")
    assert list(comparison["platform"]) == ["cpu-a", "cpu-b"]
    html = (results / "report" / "report.html").read_text(encoding="utf-8")
    assert "cpu-a" in html and "cpu-b" in html
    assert not tagged_servers(tag)
