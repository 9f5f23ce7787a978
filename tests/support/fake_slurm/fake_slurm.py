"""A stand-in SLURM on one machine, for tests of the workflow under the SLURM executor.

The commands here (sbatch, squeue, sacct, scancel, sinfo, scontrol, srun: small scripts
beside this module that call `main`) answer in the formats the Snakemake SLURM executor
plugin parses. `sbatch` runs the job script in the background, on this machine, in a
session of its own; a job's record (JSON) in the state folder says its state. Standard
library only.

Environment:
    FAKE_SLURM_DIR         the state folder (required)
    FAKE_SLURM_PARTITIONS  partitions, comma-separated; the first is the default
                           (default: "debug"); each has one node, node-<partition>,
                           and no GPU: a job that asks for one is refused
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED")


def _state_dir() -> Path:
    path = Path(os.environ["FAKE_SLURM_DIR"])
    (path / "jobs").mkdir(parents=True, exist_ok=True)
    return path


def _partitions() -> list[str]:
    names = os.environ.get("FAKE_SLURM_PARTITIONS", "debug")
    return [p.strip() for p in names.split(",") if p.strip()]


def node_of(partition: str) -> str:
    return f"node-{partition}"


@contextlib.contextmanager
def _locked():
    with (_state_dir() / "lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _job_file(job_id: str) -> Path:
    return _state_dir() / "jobs" / f"{job_id}.json"


def read_job(job_id: str) -> dict[str, Any]:
    return json.loads(_job_file(job_id).read_text())


def _write_job(job: dict[str, Any]) -> None:
    path = _job_file(str(job["id"]))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    tmp.replace(path)


def _update_job(job_id: str, **changes: Any) -> dict[str, Any]:
    with _locked():
        job = read_job(job_id)
        if job["state"] in FINAL_STATES and "state" in changes:
            changes.pop("state")  # a cancelled job stays cancelled
        job.update(changes)
        _write_job(job)
        return job


def all_jobs() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((_state_dir() / "jobs").glob("*.json"))]


def _next_id() -> str:
    with _locked():
        counter = _state_dir() / "next_id"
        value = int(counter.read_text()) if counter.exists() else 1001
        counter.write_text(str(value + 1))
        return str(value)


def job_env(job: dict[str, Any]) -> dict[str, str]:
    """The SLURM variables a job's processes see."""
    return {
        "SLURM_JOB_ID": job["id"], "SLURM_JOBID": job["id"], "SLURM_JOB_NAME": job["name"],
        "SLURM_JOB_PARTITION": job["partition"], "SLURMD_NODENAME": job["node"],
        "SLURM_JOB_NODELIST": job["node"], "SLURM_NODELIST": job["node"],
        "SLURM_CPUS_PER_TASK": str(job["cpus"]), "SLURM_CPUS_ON_NODE": str(job["cpus"]),
        "SLURM_SUBMIT_DIR": job["workdir"],
    }


def sbatch(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sbatch", add_help=False)
    parser.add_argument("--parsable", action="store_true")
    parser.add_argument("--job-name", "-J", default="sbatch")
    parser.add_argument("--output", "-o", default="slurm-%j.out")
    parser.add_argument("--export", default="ALL")
    parser.add_argument("--comment", default="")
    parser.add_argument("-A", "--account", default=None)
    parser.add_argument("-p", "--partition", default=None)
    parser.add_argument("-t", "--time", default=None)
    parser.add_argument("--mem", default=None)
    parser.add_argument("--mem-per-cpu", default=None)
    parser.add_argument("--ntasks", "-n", default=None)
    parser.add_argument("--cpus-per-task", "-c", type=int, default=1)
    parser.add_argument("--gpus", "-G", default=None)
    parser.add_argument("--gres", default=None)
    parser.add_argument("--exclusive", action="store_true")
    parser.add_argument("--nodelist", "-w", default=None)
    parser.add_argument("-D", "--chdir", default=os.getcwd())
    parser.add_argument("--wrap", default=None)
    parser.add_argument("script", nargs="?")
    opts, unknown = parser.parse_known_args(args)
    partitions = _partitions()
    partition = opts.partition or partitions[0]
    if partition not in partitions:
        print(f"sbatch: error: invalid partition specified: {partition}", file=sys.stderr)
        return 1
    if opts.gpus or (opts.gres and opts.gres.startswith("gpu")):
        print("sbatch: error: Requested node configuration is not available "
              f"(partition {partition} has no GPU)", file=sys.stderr)
        return 1
    node = node_of(partition)
    if opts.nodelist and opts.nodelist != node:
        print(f"sbatch: error: node {opts.nodelist} is not in partition {partition}",
              file=sys.stderr)
        return 1
    if opts.wrap is not None:
        script = "#!/bin/sh\n" + opts.wrap + "\n"
    elif opts.script in (None, "/dev/stdin", "-"):
        script = sys.stdin.read()
    else:
        script = Path(opts.script).read_text()
    job_id = _next_id()
    job = {
        "id": job_id, "name": opts.job_name, "partition": partition, "node": node,
        "cpus": opts.cpus_per_task, "workdir": str(Path(opts.chdir).resolve()),
        "comment": opts.comment, "exclusive": opts.exclusive, "time": opts.time,
        "mem": opts.mem, "unknown_options": unknown, "state": "PENDING", "exit_code": None,
        "pid": None, "script": str(_state_dir() / "jobs" / f"{job_id}.sh"),
        "output": opts.output.replace("%j", job_id),
    }
    Path(job["script"]).write_text(script)
    with _locked():
        _write_job(job)
    output = Path(job["workdir"]) / job["output"]
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("ab") as log:
        # The job runs detached, in a session of its own (scancel signals that group).
        runner = subprocess.Popen(
            [sys.executable, str(HERE / "fake_slurm.py"), "run-job", job_id],
            cwd=job["workdir"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **job_env(job)}, start_new_session=True,
        )
    _update_job(job_id, pid=runner.pid)
    print(job_id if opts.parsable else f"Submitted batch job {job_id}")
    return 0


def run_job(job_id: str) -> int:
    """The job itself: run its script, record how it ended."""
    job = _update_job(job_id, state="RUNNING", pid=os.getpid())
    child = subprocess.Popen(["/bin/sh", job["script"]])

    def cancelled(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, cancelled)
    code = child.wait()
    _update_job(job_id, state="COMPLETED" if code == 0 else "FAILED", exit_code=code)
    return code


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _states(name: str | None) -> str:
    return "".join(f"{j['id']}|{j['state']}\n" for j in all_jobs()
                   if name is None or j["name"] == name)


def squeue(args: list[str]) -> int:
    sys.stdout.write(_states(_option(args, "--name")))
    return 0


def sacct(args: list[str]) -> int:
    # The plugin asks for `JobIdRaw,State` by job name; other questions (the account
    # of past jobs, a failed step's reason) get an empty answer, as on a fresh cluster.
    name = _option(args, "--name")
    if name is not None:
        sys.stdout.write(_states(name))
    return 0


def scancel(args: list[str]) -> int:
    for job_id in (a for a in args if not a.startswith("-")):
        job_id = job_id.split("_")[0]
        if not _job_file(job_id).exists():
            continue
        job = read_job(job_id)
        if job["state"] in FINAL_STATES:
            continue
        _update_job(job_id, state="CANCELLED")
        if job.get("pid"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job["pid"], signal.SIGTERM)
    return 0


def sinfo(args: list[str]) -> int:
    partitions = _partitions()
    print("PARTITION")
    print("\n".join([partitions[0] + "*", *partitions[1:]]))
    return 0


def scontrol(args: list[str]) -> int:
    if args[:2] == ["show", "config"]:
        print("MinJobAge               = 300 sec")
        print("MaxArraySize            = 1001")
    elif args[:2] == ["show", "partition"]:
        for p in _partitions():
            print(f"PartitionName={p}\n   Nodes={node_of(p)} TotalCPUs=2 TotalNodes=1\n")
    return 0


def srun(args: list[str]) -> int:
    """A job step: the command after the options, with the job's SLURM variables back."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        rest.pop(0)
    if not rest:
        print("srun: fatal: no command given", file=sys.stderr)
        return 1
    env = dict(os.environ)
    if env.get("SLURM_JOB_ID") and _job_file(env["SLURM_JOB_ID"]).exists():
        env.update(job_env(read_job(env["SLURM_JOB_ID"])))
        env["SLURM_STEP_ID"] = "0"
    os.execvpe(rest[0], rest, env)


COMMANDS = {"sbatch": sbatch, "squeue": squeue, "sacct": sacct, "scancel": scancel,
            "sinfo": sinfo, "scontrol": scontrol, "srun": srun}


def main(command: str, args: list[str]) -> int:
    return COMMANDS[command](args)


if __name__ == "__main__":
    if sys.argv[1:2] == ["run-job"]:
        sys.exit(run_job(sys.argv[2]))
    sys.exit(main(sys.argv[1], sys.argv[2:]))
