"""The engine build (AMX-free flags, reuse keyed by flags) and the engine self-check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalezero.system.engine_build import (
    build_key,
    build_plan,
    cpu_cmake_args,
    engine_report,
    installed_build,
    parse_system_info,
)
from scalezero.system.engine_check import generate_in_child

AVX512 = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
X86_64_V3 = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}
# /proc/cpuinfo flags of the three kinds of machine the build must be right on.
SAPPHIRE_RAPIDS = X86_64_V3 | AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16",
                                        "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}
ZEN2 = X86_64_V3 | {"sse4_1", "popcnt"}
SANDY_BRIDGE = {"sse4_2", "avx", "popcnt"}


def _options(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("-D").split("=", 1) for a in args)


def test_amx_machine_gets_avx512_and_never_amx() -> None:
    options = _options(cpu_cmake_args(SAPPHIRE_RAPIDS, "x86_64"))
    assert options["GGML_NATIVE"] == "OFF"  # -march=native would compile AMX in
    assert options["GGML_AMX_TILE"] == options["GGML_AMX_INT8"] == "OFF"
    assert options["GGML_AMX_BF16"] == "OFF"
    for name in ("GGML_AVX2", "GGML_FMA", "GGML_AVX512", "GGML_AVX512_VNNI",
                 "GGML_AVX512_BF16", "GGML_AVX_VNNI"):
        assert options[name] == "ON", name


def test_machine_without_avx512_gets_no_avx512() -> None:
    options = _options(cpu_cmake_args(ZEN2, "x86_64"))
    assert options["GGML_AVX2"] == options["GGML_FMA"] == options["GGML_F16C"] == "ON"
    for name in ("GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16",
                 "GGML_AMX_INT8", "GGML_AVX_VNNI"):
        assert options[name] == "OFF", name


def test_machine_without_avx2_gets_only_what_it_has() -> None:
    options = _options(cpu_cmake_args(SANDY_BRIDGE, "x86_64"))
    assert options["GGML_AVX"] == options["GGML_SSE42"] == "ON"
    assert options["GGML_AVX2"] == options["GGML_FMA"] == options["GGML_BMI2"] == "OFF"


def test_avx512_subset_needs_the_whole_foundation() -> None:
    # VNNI alone, without the F/CD/VL/DQ/BW set ggml compiles AVX512 with, is not enough.
    options = _options(cpu_cmake_args(X86_64_V3 | {"avx512f", "avx512_vnni"}, "x86_64"))
    assert options["GGML_AVX512"] == options["GGML_AVX512_VNNI"] == "OFF"


def test_other_architectures_keep_ggml_defaults() -> None:
    assert cpu_cmake_args({"asimd", "sve"}, "aarch64") == []


def test_build_key_changes_with_flags_cuda_and_version() -> None:
    cpu = cpu_cmake_args(ZEN2, "x86_64")
    base = build_key("0.3.36", cpu, "cp311")
    assert base == build_key("0.3.36", list(cpu), "cp311")
    assert base != build_key("0.3.36", cpu_cmake_args(SAPPHIRE_RAPIDS, "x86_64"), "cp311")
    assert base != build_key("0.3.36", [*cpu, "-DGGML_CUDA=on"], "cp311")
    assert base != build_key("0.3.35", cpu, "cp311")
    assert base != build_key("0.3.36", cpu, "cp312")


def test_extra_cmake_args_come_last(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: " + " ".join(sorted(ZEN2)) + "\n")
    plan = build_plan("0.3.36", True, cpuinfo, "x86_64",
                      env={"SCALEZERO_ENGINE_CMAKE_ARGS": "-DGGML_AVX2=OFF"})
    assert plan["cmake_args"][-2:] == ["-DGGML_CUDA=on", "-DGGML_AVX2=OFF"]
    assert plan["build_cpu"] == "Test CPU" and "avx512f" not in plan["build_cpu_features"]
    assert plan["key"] == build_key("0.3.36", plan["cmake_args"])


def test_system_info_is_parsed_per_backend() -> None:
    text = ("CUDA : ARCHS = 890,900 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | "
            "CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 | ")
    info = parse_system_info(text)
    assert info["CUDA"] == {"ARCHS": "890,900", "USE_GRAPHS": "1", "PEER_MAX_BATCH_SIZE": "128"}
    assert info["CPU"]["AMX_INT8"] == "1" and info["CPU"]["AVX2"] == "1"


def test_installed_engine_has_no_amx_and_is_this_machines_build() -> None:
    report = engine_report()
    assert "error" not in report, report
    cpu = report["backends"]["CPU"]
    # ggml's own capability query: AMX_INT8 is listed only when compiled in.
    assert "AMX_INT8" not in cpu and report["amx_compiled"] is False
    record = installed_build()
    assert record is not None, "the engine was not installed by tools/setup-venv.sh"
    assert all("AMX" not in a or a.endswith("=OFF") for a in record["cmake_args"])
    assert "-DGGML_NATIVE=OFF" in record["cmake_args"]
    # What the engine reports matches the flags it was built with.
    options = _options([a for a in record["cmake_args"] if "=" in a])
    assert (cpu.get("AVX512") == "1") == (options.get("GGML_AVX512") == "ON")
    assert (cpu.get("AVX2") == "1") == (options.get("GGML_AVX2") == "ON")
    assert record["version"] == report["llama_cpp_python"]


@pytest.mark.slow
def test_self_check_generates_with_the_real_model(real_model: Path) -> None:
    result = generate_in_child(real_model, n_tokens=4)
    assert result.ok, result.detail
    assert result.answer is not None and result.answer["completion_tokens"] == 4
    assert result.answer["finish_reason"] == "length"


def _fake_python(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_a_crashing_engine_is_named_with_signal_cpu_flags_and_remedy(tmp_path: Path) -> None:
    crashing = _fake_python(tmp_path, 'echo "decode: about to crash" >&2; kill -SEGV $$')
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "scalezero.system.engine_check", "--model", str(model),
         "--python", str(crashing)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1
    message = proc.stderr
    assert "signal SIGSEGV (11)" in message
    assert "decode: about to crash" in message
    assert "CPU:" in message and "AMX:" in message
    assert "engine build flags:" in message and "remedy:" in message
    assert "tools/setup-venv.sh" in message


def test_an_engine_that_answers_nothing_fails(tmp_path: Path) -> None:
    silent = _fake_python(tmp_path, 'echo \'{"completion_tokens": 0}\'')
    result = generate_in_child(tmp_path / "m.gguf", python=str(silent), timeout_s=30)
    assert not result.ok and result.returncode == 0
    assert "generated no token" in result.detail


def test_an_engine_that_hangs_fails_at_the_timeout(tmp_path: Path) -> None:
    hanging = _fake_python(tmp_path, "exec sleep 30")
    result = generate_in_child(tmp_path / "m.gguf", python=str(hanging), timeout_s=1)
    assert not result.ok and "within 1 s" in result.detail


def test_self_check_cli_reports_success(real_model: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "scalezero.system.engine_check", "--model",
                           str(real_model), "--tokens", "3"], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("engine self-check: ok: 3 tokens")


def test_run_json_environment_records_the_engine_build_and_cpu_features() -> None:
    from scalezero.measure.runner import environment_info

    info = environment_info("cpu")
    assert info["engine"]["build"] == installed_build()
    assert info["engine"]["amx_compiled"] is False
    assert "AVX2" in info["engine"]["backends"]["CPU"]
    # The CPU's features ggml can use, as /proc/cpuinfo lists them.
    cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = set(next(ln for ln in cpuinfo.splitlines() if ln.startswith("flags")).split())
    assert set(info["cpu_features"]) <= flags
    assert ("avx2" in info["cpu_features"]) == ("avx2" in flags)


@pytest.mark.parametrize("env_file", ["envs/scalezero.yaml", "envs/scalezero-cuda.yaml"])
def test_conda_environments_build_the_engine_without_native_or_amx(env_file: str) -> None:
    import yaml

    repo = Path(__file__).resolve().parents[2]
    spec = yaml.safe_load((repo / env_file).read_text())
    pip_lines = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    line = next(p for p in pip_lines if p.startswith("llama-cpp-python"))
    lock = (repo / "requirements.lock").read_text()
    version = next(ln.split("==")[1] for ln in lock.splitlines()
                   if ln.startswith("llama_cpp_python=="))
    assert line.startswith(f"llama-cpp-python[server]=={version} ")
    args = line.split("--config-settings=cmake.args=", 1)[1].split(";")
    options = _options(args)
    assert options["GGML_NATIVE"] == "OFF"
    assert options["GGML_AMX_TILE"] == options["GGML_AMX_INT8"] == options["GGML_AMX_BF16"]
    assert options["GGML_AMX_INT8"] == "OFF" and options["GGML_AVX2"] == "ON"
    assert (options.get("GGML_CUDA") == "on") == ("cuda" in env_file)


def test_report_setup_names_the_engine_build_and_features() -> None:
    from scalezero.report.facts import engine_text, setup_facts

    meta = {"env": {"cpu_features": ["avx2", "avx512f", "amx_int8"],
                    "engine": {"backends": {"CPU": {"AVX2": "1", "AVX512": "1",
                                                    "LLAMAFILE": "1", "AMX_INT8": "0"}},
                               "build": {"cmake_args": ["-DGGML_NATIVE=OFF",
                                                        "-DGGML_AMX_INT8=OFF"]}}}}
    text = engine_text(setup_facts([meta]))
    assert text == ("ggml reports CPU: AVX2 AVX512 LLAMAFILE; CPU offers avx2 avx512f "
                    "amx_int8; build flags GGML_NATIVE=OFF GGML_AMX_INT8=OFF")
    bare = engine_text(setup_facts([{"env": {}}]))
    assert "not recorded" in bare
