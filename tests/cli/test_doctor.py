"""`scalezero doctor`: the facts it gathers, and when it says the experiment cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import fake_nvml
import pytest

from scalezero.cli import doctor


def test_doctor_on_this_machine_passes_and_names_every_fact(real_model: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "scalezero.cli", "doctor", "--model",
                           str(real_model)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for line_start in ("CPU ", "ok   engine llama-cpp-python", "           build ",
                       " energy ", " cache  page cache", "ok   report pandoc",
                       " tools  Snakemake", "ok   check  engine self-check"):
        assert line_start in out, line_start
    assert "AMX compiled in: no" in out
    assert "This machine can run the experiment." in out


def test_gpus_energy_counter_and_driver_come_from_nvml(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    fake_nvml.reset([fake_nvml.FakeGpu(uuid="GPU-a", name="NVIDIA H200"),
                     fake_nvml.FakeGpu(uuid="GPU-b", name="Tesla P100",
                                       unsupported={"nvmlDeviceGetTotalEnergyConsumption"})])
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml)
    facts = doctor.gpu_facts()
    assert fake_nvml.state.init_count == 0, "NVML left initialised"
    assert facts["available"] and facts["driver_version"] == "550.54.15"
    assert facts["cuda_driver_version"] == "12.4"
    assert [(g["name"], g["energy_counter"]) for g in facts["gpus"]] == [
        ("NVIDIA H200", True), ("Tesla P100", False)]
    assert facts["gpus"][0]["memory_total_mib"] == 81559


def test_no_nvml_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.reset(init_error=fake_nvml.NVMLError_LibraryNotFound)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml)
    facts = doctor.gpu_facts()
    assert facts == {"available": False, "gpus": [],
                     "reason": "NVMLError_LibraryNotFound: fake NVML error 12"}


def _zone(root: Path, name: str, label: str, energy: bool) -> None:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    if energy:
        (zone / "energy_uj").write_text("123456\n")


def test_rapl_readable_and_unreadable_with_the_fix(tmp_path: Path) -> None:
    readable = tmp_path / "ok"
    _zone(readable, "intel-rapl:0", "package-0", energy=True)
    _zone(readable, "intel-rapl:0:0", "core", energy=True)
    assert doctor.rapl_facts(readable) == {"zones": ["intel-rapl:0"], "readable": True}
    # The counter is missing here as it is unreadable to non-root users elsewhere.
    locked = tmp_path / "locked"
    _zone(locked, "intel-rapl:0", "package-0", energy=False)
    facts = doctor.rapl_facts(locked)
    assert facts["zones"] == ["intel-rapl:0"] and facts["readable"] is False
    assert "chmod a+r" in facts["fix"]
    assert doctor.rapl_facts(tmp_path / "absent") == {"zones": [], "readable": False}


def test_page_cache_of_a_local_file_can_be_dropped(tmp_path: Path) -> None:
    facts = doctor.page_cache_facts(tmp_path)
    assert facts["resident_before"] == 1.0
    assert facts["droppable"] is True and facts["resident_after"] < 0.05


def _facts(**overrides: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpu": {"model": "Test CPU", "logical_cpus": 2, "ggml_features": ["avx2"],
                "amx": False},
        "engine": {"llama_cpp_python": "0.3.36", "gpu_offload": False, "amx_compiled": False,
                   "backends": {"CPU": {"AVX2": "1"}}, "build": None},
        "gpu": {"available": False, "reason": "no NVML", "gpus": []},
        "rapl": {"zones": [], "readable": False},
        "page_cache": {"droppable": True, "directory": "/tmp", "resident_before": 1.0,
                       "resident_after": 0.0},
        "tools": {"pandoc": "3.9", "quarto": None, "snakemake": "9.27.1", "conda": None},
        "self_check": {"model": "m.gguf", "ok": True, "summary": "ok: 8 tokens", "wall_s": 1},
    }
    for key, value in overrides.items():
        facts[key] = {**facts[key], **value}
    return facts


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"self_check": {"ok": False, "summary": "FAILED: signal SIGSEGV (11)"}}, "SIGSEGV"),
    ({"cpu": {"amx": True}, "engine": {"amx_compiled": True}}, "AMX path compiled in"),
    ({"tools": {"pandoc": None}}, "report cannot render"),
    ({"tools": {"snakemake": None}}, "Snakemake is not installed"),
])
def test_doctor_fails_when_the_experiment_cannot_run(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        overrides: dict[str, Any], problem: str) -> None:
    facts = _facts(**overrides)
    for name in ("cpu", "engine", "gpu", "rapl", "page_cache", "tools", "self_check"):
        monkeypatch.setattr(doctor, f"{name}_facts", lambda *a, _f=facts[name], **k: _f)
    code = doctor.run_cli(doctor.argparse.Namespace(model=None, json=False))
    out = capsys.readouterr().out
    assert code == 1
    assert "problem: " in out and problem in out
    assert "can run the experiment" not in out


def test_amx_cpu_with_an_amx_free_engine_is_fine(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    facts = _facts(cpu={"amx": True})
    for name in ("cpu", "engine", "gpu", "rapl", "page_cache", "tools", "self_check"):
        monkeypatch.setattr(doctor, f"{name}_facts", lambda *a, _f=facts[name], **k: _f)
    assert doctor.run_cli(doctor.argparse.Namespace(model=None, json=False)) == 0
    assert "(AMX present)" in capsys.readouterr().out
