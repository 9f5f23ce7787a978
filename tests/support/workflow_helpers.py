"""Helpers for tests that run the Snakemake workflow in a scratch copy of the project."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# What a workflow copy needs; results/, resources/ and logs/ start empty.
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", ".test", "envs", "report", "src",
                  "data")
SERVER_MARKERS = ("scalezero.serving.instance", "llama_cpp.server", "llama-server",
                  "scalezero.cli serve", "scalezero.cli telemetry")


def copy_workflow(dest: Path, model: Path | None = None, model_name: str = "smollm2-135m"
                  ) -> Path:
    """A scratch copy of the workflow in `dest`, with the default model pre-placed."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = REPO_ROOT / part
        if not src.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(src, dest / part)
    if model is not None:
        target = dest / "resources" / "models" / f"{model_name}.gguf"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(model, target)
        except OSError:
            shutil.copy2(model, target)
    return dest


def tagged_env(tag: str) -> dict[str, str]:
    """The environment for a workflow run whose descendants can be found by `tag`."""
    env = dict(os.environ)
    env["SCALEZERO_TEST_TAG"] = tag
    env.pop("PYTHONPATH", None)
    return env


def new_tag() -> str:
    return uuid.uuid4().hex


def tagged_servers(tag: str) -> list[psutil.Process]:
    """Live processes started under `tag` that serve, proxy or sample."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if not any(m in cmdline for m in SERVER_MARKERS):
                continue
            if proc.environ().get("SCALEZERO_TEST_TAG") == tag and proc.status() != "zombie":
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_no_servers(tag: str, timeout_s: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = tagged_servers(tag)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def kill_all(procs: Sequence[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def snakemake(workdir: Path, *args: str, tag: str, timeout_s: float = 900,
              check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*SNAKEMAKE, *args], cwd=workdir, env=tagged_env(tag), capture_output=True,
        text=True, timeout=timeout_s,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run.

    Empty only when Snakemake says there is nothing to be done; output with neither
    (an error, a changed format) fails, so that a test expecting no job cannot pass on
    output it did not understand. The rows must add up to the table's total.
    """
    jobs: dict[str, int] = {}
    table = dry_run_output.split("Job stats:", 1)
    if len(table) < 2:
        if "Nothing to be done" in dry_run_output:
            return jobs
        raise AssertionError("dry run printed neither a 'Job stats:' table nor 'Nothing "
                             f"to be done':\n{dry_run_output[-3000:]}")
    total = None
    for line in table[1].splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) == "total":
            total = int(match.group(2))
        else:
            jobs[match.group(1)] = int(match.group(2))
    if not jobs or total != sum(jobs.values()):
        raise AssertionError(f"cannot read the 'Job stats:' table:\n{table[1][:2000]}")
    return jobs


def planned_wildcards(dry_run_output: str, rule: str) -> list[str]:
    """The `wildcards:` lines of every planned job of `rule` in a dry run."""
    found = []
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output)
    for block in blocks:
        if re.match(rf"(?:local)?rule {rule}:", block.strip()):
            match = re.search(r"wildcards: (.*)", block)
            found.append(match.group(1).strip() if match else "")
    return found
