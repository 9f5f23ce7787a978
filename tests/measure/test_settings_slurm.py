"""A measured run inside a SLURM job: the assigned GPU, the node's lock, the platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalezero.measure.settings import RunSettings

SETTINGS = {
    "workload": "smoke", "strategy": "naive", "rep": 1, "order_index": 0, "policy": "naive",
    "model_name": "m", "device": "cuda", "gpu_index": 0,
    "lock_file": "results/.measurement.lock",
}


def _plan(tmp_path: Path, model: Path, settings: dict) -> RunSettings:
    return RunSettings.from_workflow(settings, model, tmp_path / "t.csv", tmp_path / "out",
                                     tmp_path / "logs")


def test_a_job_uses_its_gpu_and_its_nodes_lock(tmp_path: Path, fake_model: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    plan = _plan(tmp_path, fake_model, {**SETTINGS, "platform": "h100"})
    assert plan.gateway.gpu_index == 2  # SLURM's choice, not the configured 0
    assert plan.lock_path == Path("results/.measurement.gpu07.lock")
    assert plan.platform == "h100"
    cpu = _plan(tmp_path, fake_model, {**SETTINGS, "device": "cpu"})
    assert cpu.gateway.gpu_index is None


def test_outside_a_job_the_configuration_decides(tmp_path: Path, fake_model: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    plan = _plan(tmp_path, fake_model, {**SETTINGS, "gpu_index": 1})
    assert plan.gateway.gpu_index == 1
    assert plan.lock_path == Path("results/.measurement.lock")
    assert plan.platform == ""
