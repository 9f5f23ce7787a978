"""What a SLURM job's environment says: run.json's record, the GPU, the node."""

from __future__ import annotations

import pytest

from scalezero.system import slurm

JOB = {"SLURM_JOB_ID": "4242", "SLURMD_NODENAME": "gpu07", "SLURM_JOB_PARTITION": "h100",
       "SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "3", "SLURM_CPUS_PER_TASK": "16"}


def test_outside_a_job_nothing_is_read() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "1", "SLURMD_NODENAME": "x"}
    assert slurm.job_record(env) is None
    assert slurm.allocated_gpu_index(env) is None
    assert slurm.job_node(env) is None


def test_job_record_names_job_node_partition_allocation_and_cores() -> None:
    assert slurm.job_record(JOB) == {"job_id": "4242", "node": "gpu07", "partition": "h100",
                                     "allocation": "3", "cpus": 16}
    bare = slurm.job_record({"SLURM_JOB_ID": "7", "SLURM_NODELIST": "n1",
                             "SLURM_CPUS_ON_NODE": "4"})
    assert bare == {"job_id": "7", "node": "n1", "partition": None, "allocation": None,
                    "cpus": 4}


@pytest.mark.parametrize(("visible", "index"), [("3", 3), ("0,1", 0), ("", None)])
def test_the_assigned_gpu_is_the_first_visible_one(visible: str, index: int | None) -> None:
    assert slurm.allocated_gpu_index({**JOB, "CUDA_VISIBLE_DEVICES": visible}) == index


def test_a_gpu_uuid_is_resolved_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm, "_nvml_index_of_uuid",
                        lambda uuid: 5 if uuid == "GPU-abc" else None)
    assert slurm.allocated_gpu_index({**JOB, "CUDA_VISIBLE_DEVICES": "GPU-abc"}) == 5
    assert slurm.allocated_gpu_index({**JOB, "CUDA_VISIBLE_DEVICES": "GPU-zzz"}) is None
