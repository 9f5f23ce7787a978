"""What a SLURM allocation says about the job a measured run is in.

SLURM describes a job to its processes through environment variables; a run records
them in run.json (`slurm:`), takes the GPU SLURM assigned rather than the configured
index, and serializes runs per node rather than across the whole shared file system.
Outside a job (no SLURM_JOB_ID) every function here answers None.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def in_job(environ: Mapping[str, str] | None = None) -> bool:
    return bool(_environ(environ).get("SLURM_JOB_ID"))


def job_node(environ: Mapping[str, str] | None = None) -> str | None:
    """The node this process runs on, inside a job."""
    env = _environ(environ)
    if not in_job(env):
        return None
    return env.get("SLURMD_NODENAME") or env.get("SLURM_NODELIST") or None


def _cpus(env: Mapping[str, str]) -> int | None:
    for key in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        with contextlib.suppress(ValueError):
            if env.get(key):
                return int(env[key])
    return None


def job_record(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """run.json's `slurm:` entry: job id, node, partition, GPU allocation, cores."""
    env = _environ(environ)
    if not in_job(env):
        return None
    return {
        "job_id": env["SLURM_JOB_ID"],
        "node": job_node(env),
        "partition": env.get("SLURM_JOB_PARTITION"),
        # SLURM_JOB_GPUS: the node's GPU indices; CUDA_VISIBLE_DEVICES: what the job sees.
        "allocation": env.get("SLURM_JOB_GPUS") or env.get("CUDA_VISIBLE_DEVICES") or None,
        "cpus": _cpus(env),
    }


def _nvml_index_of_uuid(uuid: str) -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            return int(pynvml.nvmlDeviceGetIndex(handle))
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def allocated_gpu_index(environ: Mapping[str, str] | None = None) -> int | None:
    """The NVML index of the (first) GPU SLURM assigned to this job; None outside a job
    or without a GPU.

    SLURM puts the assigned GPUs in CUDA_VISIBLE_DEVICES: indices in PCI bus order (the
    order NVML numbers them in, and the one device_env makes CUDA use; renumbered from
    0 where the job's cgroup hides the other GPUs, as NVML then does too) or UUIDs,
    which NVML resolves.
    """
    env = _environ(environ)
    if not in_job(env):
        return None
    first = (env.get("CUDA_VISIBLE_DEVICES") or "").split(",")[0].strip()
    if not first:
        return None
    if first.isdigit():
        return int(first)
    return _nvml_index_of_uuid(first)


__all__ = ["allocated_gpu_index", "in_job", "job_node", "job_record"]
