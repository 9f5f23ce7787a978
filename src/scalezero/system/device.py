"""Which accelerator instances run on, and whether this installation can use it."""

from __future__ import annotations

import subprocess
import sys

from scalezero.errors import UserError
from scalezero.system.procs import package_env

CUDA_REBUILD_HINT = (
    "rebuild it with CUDA: `SCALEZERO_CUDA=1 tools/setup-venv.sh` (needs nvcc), or run "
    "`snakemake --use-conda` with `device: cuda`, which uses envs/scalezero-cuda.yaml"
)


def llama_cpp_supports_gpu_offload() -> bool:
    """Whether the installed llama-cpp-python was built with a GPU backend.

    Asked in a child interpreter: loading the library here would tie this process's
    memory and GPU context to a library it does not otherwise need.
    """
    result = subprocess.run(
        [sys.executable, "-c",
         "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 3)"],
        env=package_env(), capture_output=True, text=True, timeout=120,
    )
    if result.returncode not in (0, 3):
        raise UserError(f"cannot import llama_cpp: {result.stderr.strip()[-500:]}")
    return result.returncode == 0


def device_env(device: str, gpu_index: int | None) -> dict[str, str]:
    """Environment entries that make a child see exactly the configured device.

    A CPU run must not create a CUDA context, so it sees no GPU. NVML numbers GPUs by
    PCI bus while CUDA by default puts the fastest first; putting CUDA in PCI order
    makes `gpu_index` name the same GPU for the instances and the telemetry sampler.
    """
    if device == "cpu":
        return {"CUDA_VISIBLE_DEVICES": ""}
    if gpu_index is None:
        return {}
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(gpu_index)}


def default_gpu_layers(device: str, n_gpu_layers: int | None = None) -> int:
    """Layers to offload: as given, else all of them on cuda and none on cpu."""
    if n_gpu_layers is not None:
        return n_gpu_layers
    return -1 if device == "cuda" else 0


def require_device(device: str) -> None:
    """Refuse, with the fix, to run `device: cuda` on a CPU-only llama-cpp-python."""
    if device == "cuda" and not llama_cpp_supports_gpu_offload():
        raise UserError(
            "device is cuda, but the installed llama-cpp-python was built without CUDA "
            f"(llama_supports_gpu_offload() is false); {CUDA_REBUILD_HINT}"
        )
    if device not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu or cuda, got {device!r}")
