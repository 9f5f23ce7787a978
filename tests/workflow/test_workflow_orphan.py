"""A measured run dies with its Snakemake: SIGKILL of Snakemake alone stops the run job,
its gateway, its llama.cpp server and its sampler, and frees the measurement lock."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml
from workflow_helpers import (
    SNAKEMAKE,
    copy_workflow,
    kill_all,
    new_tag,
    tagged_env,
    tagged_servers,
)

from scalezero.system.procs import is_snakemake

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("cmdline", "expected"), [
    (["/venv/bin/python3", "/venv/bin/snakemake", "--cores", "2"], True),
    (["snakemake", "--cores", "2"], True),
    (["/usr/bin/python3", "-m", "snakemake", "-n"], True),
    (["/bin/bash", "-c", "set -euo pipefail; python /w/.snakemake/scripts/tmp.run.py"], False),
    (["python", "/w/.snakemake/scripts/tmpx.run.py"], False),
])
def test_snakemake_itself_is_told_apart_from_its_job_shell(cmdline: list[str],
                                                           expected: bool) -> None:
    assert is_snakemake(cmdline) is expected


def _run_job(tag: str) -> psutil.Process | None:
    """The job process of the measured run (the one that started the gateway)."""
    for proc in tagged_servers(tag):
        if "serve" in " ".join(proc.cmdline()):
            return proc.parent()
    return None


def test_sigkill_of_snakemake_stops_the_run_within_5_s(tmp_path: Path,
                                                       real_model: Path) -> None:
    workdir = copy_workflow(tmp_path / "wf", real_model)
    config = yaml.safe_load((workdir / ".test" / "config.yaml").read_text())
    config["workloads"] = {"slow": {"kind": "poisson", "seed": 1, "rate_rps": 1.0,
                                    "duration_s": 120, "max_tokens": 16, "prompt_words": 8}}
    config["strategies"] = {"always_on": {"policy": "always_on"}}
    config.pop("sharing", None)  # its deployments name the smoke's strategies
    config_path = workdir / ".test" / "slow.yaml"
    config_path.write_text(yaml.safe_dump(config))
    tag = new_tag()
    proc = subprocess.Popen(
        [*SNAKEMAKE, "results/summary/slow.csv", "--cores", "2", "--configfile",
         str(config_path)],
        cwd=workdir, env=tagged_env(tag), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    job: psutil.Process | None = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            names = " ".join(" ".join(p.cmdline()) for p in tagged_servers(tag))
            if "scalezero.serving.instance" in names and "serve" in names:
                job = _run_job(tag)
                break
            assert proc.poll() is None, "snakemake ended before the run started"
            time.sleep(0.5)
        else:
            pytest.fail("the run never started serving")
        assert job is not None
        time.sleep(2.0)
        os.kill(proc.pid, signal.SIGKILL)  # Snakemake alone, not its process group
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 5.0:
            if not tagged_servers(tag) and not job.is_running():
                break
            time.sleep(0.1)
        left = tagged_servers(tag)
        assert not left, [" ".join(p.cmdline()) for p in left]
        assert not job.is_running() or job.status() == psutil.STATUS_ZOMBIE, \
            "the run job outlived its Snakemake"
        # The measurement lock is free for the next invocation.
        lock = workdir / "results" / ".measurement.lock"
        assert lock.is_file()
        with lock.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
        log = (workdir / "logs" / "runs" / "slow" / "always_on" / "1.log").read_text()
        assert "Snakemake (pid" in log and "is gone: stopping this run" in log
    finally:
        if proc.poll() is None:
            proc.kill()
        if job is not None and job.is_running():
            job.kill()
        kill_all(tagged_servers(tag))
