"""How the engine (llama-cpp-python and its ggml) is built, and what a build reports.

Why a deliberate build: llama.cpp's default, GGML_NATIVE, compiles with -march=native.
On a build machine with AMX (Intel Sapphire Rapids and later) that compiles ggml's AMX
path, and ggml then repacks the weights into an AMX buffer and crashes at the first
decode (llama.cpp issue 20824, Ollama issue 17205). A native build is also only tested
on the machine that built it. So on x86-64 the build names every instruction-set
extension itself: the x86-64-v3 set (AVX2, FMA, F16C, BMI2) plus the AVX-512 subsets
and AVX-VNNI the build machine has, and never AMX, whatever the machine has.

pip's wheel cache is keyed by the package version only, so a wheel built with other
flags would be reused silently. `tools/setup-venv.sh` keeps the engine's wheels in a
wheelhouse of their own, one folder per `build_key` (the version, the interpreter and
the CMake arguments), and writes the build record (`engine-build.json`) into the
virtualenv, where `installed_build` finds it for run.json, the report and
`scalezero doctor`.

Only the standard library is used: the setup script runs this file as a script before
the package is installed:

    python3 src/scalezero/system/engine_build.py plan --version 0.3.36 --cuda 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: The record of the installed engine build, inside the virtualenv (sys.prefix).
BUILD_RECORD_NAME = "engine-build.json"
#: Extra CMake arguments a user adds to the engine build (appended last, so they win).
EXTRA_ARGS_ENV = "SCALEZERO_ENGINE_CMAKE_ARGS"
#: Options every build gets: the multimodal helper is not used and adds minutes.
COMMON_ARGS = ("-DLLAVA_BUILD=off",)
#: CPU features ggml can use, as /proc/cpuinfo spells them (what doctor lists).
GGML_CPU_FEATURES = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f", "avx512cd",
    "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16",
    "amx_tile", "amx_int8", "amx_bf16",
)  # fmt: skip
# ggml's x86 options and the cpuinfo flags each needs. AVX512 means F+CD+VL+DQ+BW
# (ggml passes all five to the compiler when it is on).
_X86_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GGML_SSE42", ("sse4_2",)),
    ("GGML_AVX", ("avx",)),
    ("GGML_AVX2", ("avx2",)),
    ("GGML_FMA", ("fma",)),
    ("GGML_F16C", ("f16c",)),
    ("GGML_BMI2", ("bmi2",)),
    ("GGML_AVX_VNNI", ("avx_vnni",)),
    ("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")),
    ("GGML_AVX512_VBMI", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
                          "avx512vbmi")),
    ("GGML_AVX512_VNNI", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
                          "avx512_vnni")),
    ("GGML_AVX512_BF16", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
                          "avx512_bf16")),
)  # fmt: skip
#: Never on: the AMX path is what crashes (see the module docstring).
_AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def read_cpu_flags(cpuinfo: Path | str = "/proc/cpuinfo") -> set[str]:
    """The `flags` of the first processor in /proc/cpuinfo (empty where unreadable)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model_name(cpuinfo: Path | str = "/proc/cpuinfo") -> str:
    """The processor's `model name`, or the platform's word for it."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_cmake_args(cpu_flags: Iterable[str], machine: str | None = None) -> list[str]:
    """The CPU part of the engine's CMake arguments for a machine with `cpu_flags`.

    x86-64: native off, each ggml x86 option on exactly when the machine has what it
    needs, AMX always off. Other architectures have no AMX: ggml's defaults stay.
    """
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return []
    flags = set(cpu_flags)
    args = ["-DGGML_NATIVE=OFF"]
    for option, needs in _X86_OPTIONS:
        args.append(f"-D{option}={'ON' if flags.issuperset(needs) else 'OFF'}")
    args += [f"-D{option}=OFF" for option in _AMX_OPTIONS]
    return args


def engine_cmake_args(
    cuda: bool,
    cpu_flags: Iterable[str],
    machine: str | None = None,
    extra: str = "",
) -> list[str]:
    """Every CMake argument of the engine build: common, CPU, CUDA, then `extra`."""
    args = [*COMMON_ARGS, *cpu_cmake_args(cpu_flags, machine)]
    if cuda:
        args.append("-DGGML_CUDA=on")
    args += extra.split()
    return args


def build_key(version: str, cmake_args: Sequence[str], python_tag: str | None = None) -> str:
    """What decides whether a built wheel may be reused: 16 hex digits of a sha256."""
    python_tag = python_tag or f"cp{sys.version_info.major}{sys.version_info.minor}"
    blob = json.dumps({"version": version, "python": python_tag, "cmake_args": list(cmake_args)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_plan(version: str, cuda: bool, cpuinfo: Path | str = "/proc/cpuinfo",
               machine: str | None = None, env: Mapping[str, str] | None = None
               ) -> dict[str, Any]:
    """The build record for this machine: what the setup script builds and records."""
    env = os.environ if env is None else env
    flags = read_cpu_flags(cpuinfo)
    args = engine_cmake_args(cuda, flags, machine, env.get(EXTRA_ARGS_ENV, ""))
    return {
        "package": "llama-cpp-python",
        "version": version,
        "python": f"cp{sys.version_info.major}{sys.version_info.minor}",
        "cuda": cuda,
        "cmake_args": args,
        "key": build_key(version, args),
        "build_cpu": cpu_model_name(cpuinfo),
        "build_cpu_features": sorted(f for f in GGML_CPU_FEATURES if f in flags),
    }


def installed_build(prefix: Path | str | None = None) -> dict[str, Any] | None:
    """The build record the setup script left in the virtualenv, or None (an engine
    installed some other way, e.g. by conda)."""
    path = Path(prefix or sys.prefix) / BUILD_RECORD_NAME
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def parse_system_info(text: str) -> dict[str, dict[str, str]]:
    """llama.cpp's `llama_print_system_info()` as {backend: {feature: value}}.

    The text reads "CPU : SSE3 = 1 | AVX = 1 | ... | CUDA : ARCHS = 900 | ...".
    """
    backends: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for part in (p.strip() for p in text.split("|")):
        if not part:
            continue
        match = re.match(r"^(\S[^:=]*?)\s*:\s*(.*)$", part)
        if match and "=" not in match.group(1):
            current = backends.setdefault(match.group(1).strip(), {})
            part = match.group(2)
        if current is None or "=" not in part:
            continue
        name, value = (s.strip() for s in part.split("=", 1))
        current[name] = value
    return backends


_SYSTEM_INFO_PROBE = (
    "import json, llama_cpp; print(json.dumps({'version': llama_cpp.__version__, "
    "'gpu_offload': bool(llama_cpp.llama_supports_gpu_offload()), "
    "'system_info': llama_cpp.llama_print_system_info().decode()}))"
)


def engine_report(python: str | None = None, timeout_s: float = 120.0,
                  env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the installed engine says of itself, asked in a child interpreter (loading
    the library here would tie this process to it). Never raises: `error` says why."""
    try:
        proc = subprocess.run([python or sys.executable, "-c", _SYSTEM_INFO_PROBE],
                              capture_output=True, text=True, timeout=timeout_s,
                              env=None if env is None else dict(env))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if proc.returncode != 0:
        return {"error": f"import llama_cpp failed ({describe_exit(proc.returncode)}): "
                         f"{proc.stderr.strip()[-400:]}"}
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    features = parse_system_info(data["system_info"])
    cpu = features.get("CPU", {})
    return {
        "llama_cpp_python": data["version"],
        "gpu_offload": data["gpu_offload"],
        "backends": features,
        # ggml reports compile-time support: AMX_INT8 = 1 means the AMX path is built in.
        "amx_compiled": cpu.get("AMX_INT8") == "1",
    }


def describe_exit(returncode: int) -> str:
    """A child's exit status in words: 'exit code 2' or 'signal SIGSEGV (11)'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {name} ({-returncode})"
    return f"exit code {returncode}"


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plan the engine build for this machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="print the build record (JSON) for this machine")
    plan.add_argument("--version", required=True, help="llama-cpp-python version")
    plan.add_argument("--cuda", type=int, choices=(0, 1), default=0)
    args = parser.parse_args(argv)
    print(json.dumps(build_plan(args.version, bool(args.cuda)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
