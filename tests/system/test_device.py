"""The cuda switch refuses a CPU-only build of llama-cpp-python, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalezero.errors import UserError
from scalezero.measure.runner import measured_run
from scalezero.measure.settings import RunSettings
from scalezero.serving.settings import GatewaySettings
from scalezero.system.device import llama_cpp_supports_gpu_offload, require_device


def test_cpu_is_always_allowed() -> None:
    require_device("cpu")


def test_unknown_device_is_refused() -> None:
    with pytest.raises(UserError, match="cpu or cuda"):
        require_device("tpu")


@pytest.mark.skipif(llama_cpp_supports_gpu_offload(), reason="this build has a GPU backend")
def test_cuda_on_a_cpu_build_is_refused_before_anything_starts(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("request_id,t_sched_s,max_tokens,prompt\n0,0.1,4,hello\n")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    plan = RunSettings(
        gateway=GatewaySettings(model_path=model, policy="naive", device="cuda"),
        trace_path=trace, out_dir=tmp_path / "run", log_dir=tmp_path / "run" / "logs",
    )
    with pytest.raises(UserError, match=r"built without CUDA.*SCALEZERO_CUDA=1"):
        measured_run(plan)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(llama_cpp_supports_gpu_offload(), reason="this build has a GPU backend")
def test_serve_refuses_cuda_on_a_cpu_build(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from scalezero.cli import main

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    assert main(["serve", "--model", str(model), "--strategy", "naive",
                 "--device", "cuda"]) == 2
    assert "built without CUDA" in capsys.readouterr().err


def test_children_see_exactly_the_configured_device() -> None:
    from scalezero.system.device import default_gpu_layers, device_env

    assert device_env("cpu", 3) == {"CUDA_VISIBLE_DEVICES": ""}
    assert device_env("cuda", 1) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                                      "CUDA_VISIBLE_DEVICES": "1"}
    assert device_env("cuda", None) == {}
    assert (default_gpu_layers("cuda"), default_gpu_layers("cpu")) == (-1, 0)
    assert default_gpu_layers("cuda", 12) == 12
