"""The native engine's build plan, cache and install (no build), and where it is found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scalezero.system import engine_build
from scalezero.system.engine_build import (
    SERVER_ARGS,
    SERVER_RECORD_NAME,
    SERVER_SOURCE_FILES,
    build_commands,
    build_plan,
    cached_server,
    install_server,
    missing_server_sources,
    native_engine_enabled,
    native_server,
    native_server_version,
    server_plan,
    setup_server,
)

AMX_MACHINE = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd",
               "avx512vl", "avx512dq", "avx512bw", "amx_tile", "amx_int8", "amx_bf16"}


def _plan(tmp_path: Path, cuda: bool = False, env: dict[str, str] | None = None
          ) -> dict[str, Any]:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: " + " ".join(sorted(AMX_MACHINE))
                       + "\n")
    return build_plan("0.3.36", cuda, cpuinfo, "x86_64", env=env or {})


def _options(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("-D").split("=", 1) for a in args if a.startswith("-D"))


def test_server_plan_uses_the_engines_flags_amx_off_and_builds_one_static_binary(
    tmp_path: Path,
) -> None:
    engine = _plan(tmp_path)
    plan = server_plan(engine)
    assert plan["key"] == engine["key"] + "-server" and plan["engine_key"] == engine["key"]
    assert plan["cmake_args"] == [*SERVER_ARGS, *engine["cmake_args"]]
    options = _options(plan["cmake_args"])
    assert options["GGML_NATIVE"] == "OFF" and options["GGML_AVX512"] == "ON"
    assert options["GGML_AMX_TILE"] == options["GGML_AMX_INT8"] == options["GGML_AMX_BF16"]
    assert options["GGML_AMX_INT8"] == "OFF"
    assert options["BUILD_SHARED_LIBS"] == "OFF"
    assert options["LLAMA_BUILD_SERVER"] == "ON" and options["LLAMA_BUILD_TESTS"] == "OFF"
    assert options["LLAMA_BUILD_EXAMPLES"] == "OFF" and options["LLAMA_OPENSSL"] == "OFF"
    # No web UI and nothing downloaded at build time.
    assert options["LLAMA_BUILD_UI"] == options["LLAMA_USE_PREBUILT_UI"] == "OFF"
    assert "GGML_CUDA" not in options
    assert plan["version"] == "0.3.36" and plan["build_cpu"] == "Test CPU"


def test_server_plan_follows_cuda_and_the_users_extra_args(tmp_path: Path) -> None:
    plan = server_plan(_plan(tmp_path, cuda=True,
                             env={"SCALEZERO_ENGINE_CMAKE_ARGS": "-DGGML_AVX512=OFF"}))
    assert plan["cuda"] is True
    # The user's arguments come last, so they win over the server's and the CPU's.
    assert plan["cmake_args"][-2:] == ["-DGGML_CUDA=on", "-DGGML_AVX512=OFF"]


def test_build_commands_build_the_server_target_only(tmp_path: Path) -> None:
    configure, build = build_commands(tmp_path / "src", tmp_path / "b", ["-DX=1"], jobs=2)
    assert configure == ["cmake", "-S", str(tmp_path / "src"), "-B", str(tmp_path / "b"),
                         "-DX=1"]
    assert build == ["cmake", "--build", str(tmp_path / "b"), "--target", "llama-server",
                     "-j", "2"]


def test_a_trimmed_source_tree_names_what_it_lacks(tmp_path: Path) -> None:
    for name in SERVER_SOURCE_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert missing_server_sources(tmp_path) == []
    (tmp_path / "tools/server/server.cpp").unlink()
    assert missing_server_sources(tmp_path) == ["tools/server/server.cpp"]


def _fake_build(out_dir: Path, plan: dict[str, Any], script: str = "echo 'version: 1 (abc)'"
                ) -> None:
    out_dir.mkdir(parents=True)
    binary = out_dir / "llama-server"
    binary.write_text(f"#!/bin/sh\n{script}\n")
    binary.chmod(0o755)
    (out_dir / SERVER_RECORD_NAME).write_text(json.dumps({**plan, "build_s": 1.0}))


def test_a_cached_binary_is_reused_only_when_built_with_the_same_arguments(
    tmp_path: Path,
) -> None:
    plan = server_plan(_plan(tmp_path))
    out_dir = tmp_path / "cache" / plan["key"]
    assert cached_server(plan, out_dir) is None
    _fake_build(out_dir, plan)
    assert cached_server(plan, out_dir) is not None
    other = {**plan, "cmake_args": [*plan["cmake_args"], "-DGGML_AVX2=OFF"]}
    assert cached_server(other, out_dir) is None
    (out_dir / "llama-server").unlink()
    assert cached_server(plan, out_dir) is None


def test_setup_reuses_the_cache_and_installs_binary_and_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = server_plan(build_plan("0.3.36", False, env={}))
    cache = tmp_path / "cache"
    _fake_build(cache / plan["key"], plan)
    monkeypatch.setattr(engine_build, "build_server", lambda *a, **k: pytest.fail("rebuilt"))
    venv = tmp_path / "venv"
    record = setup_server("0.3.36", False, cache, venv, env={"SCALEZERO_NATIVE_ENGINE": "1"})
    assert record["key"] == plan["key"]
    found = native_server(venv, env={})
    assert found.path == venv / "bin" / "llama-server" and not found.switched_off
    assert found.record is not None and found.record["enabled"] is True
    assert found.record["cmake_args"] == plan["cmake_args"]
    assert native_server_version(found.path) == "version: 1 (abc)"


def test_setup_switched_off_builds_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_build, "build_server", lambda *a, **k: pytest.fail("built"))
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "llama-server").write_text("an old one")
    # Opt-in: off by default and with any value but 1.
    assert not native_engine_enabled({"SCALEZERO_NATIVE_ENGINE": "0"})
    assert not native_engine_enabled({})
    assert native_engine_enabled({"SCALEZERO_NATIVE_ENGINE": "1"})
    setup_server("0.3.36", False, tmp_path / "cache", venv, env={})
    assert not (venv / "bin" / "llama-server").exists()
    found = native_server(venv, env={})
    assert found.path is None and found.switched_off
    assert "SCALEZERO_NATIVE_ENGINE" in found.reason and "opt-in" in found.reason


def test_where_the_binary_is_or_why_not(tmp_path: Path) -> None:
    missing = native_server(tmp_path, env={})
    assert missing.path is None and not missing.switched_off
    assert "not built" in missing.reason and "tools/setup-venv.sh" in missing.reason
    binary = tmp_path / "elsewhere" / "llama-server"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 3\n")
    binary.chmod(0o755)
    chosen = native_server(tmp_path, env={"SCALEZERO_LLAMA_SERVER": str(binary)})
    assert chosen.path == binary.resolve() and "SCALEZERO_LLAMA_SERVER" in chosen.reason
    assert native_server_version(binary).startswith("error: exit code 3")
    wrong = native_server(tmp_path, env={"SCALEZERO_LLAMA_SERVER": str(tmp_path / "no")})
    assert wrong.path is None and "not an executable file" in wrong.reason
    install_server(None, tmp_path, {"enabled": True})  # a record but no binary
    assert native_server(tmp_path, env={}).path is None


def test_the_setup_script_runs_the_server_step_with_the_opt_out() -> None:
    script = (Path(__file__).resolve().parents[2] / "tools" / "setup-venv.sh").read_text()
    assert "engine_build.py server" in script and "SCALEZERO_NATIVE_ENGINE" in script


def test_the_server_subcommand_reports_a_failed_build(tmp_path: Path) -> None:
    """A build that cannot start fails setup with a message saying how to do without."""
    not_an_sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    not_an_sdist.write_bytes(b"not a tar file")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["SCALEZERO_NATIVE_ENGINE"] = "1"
    script = Path(engine_build.__file__)
    proc = subprocess.run(
        [sys.executable, str(script), "server", "--version", "0.3.36", "--cache",
         str(tmp_path / "cache"), "--venv", str(tmp_path / "venv"), "--sdist",
         str(not_an_sdist)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "llama-server build failed" in proc.stderr
    assert "unset SCALEZERO_NATIVE_ENGINE" in proc.stderr


def _fake_sdist(tmp_path: Path, files: tuple[str, ...] = SERVER_SOURCE_FILES) -> Path:
    import tarfile

    root = tmp_path / "sdist-tree" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(tmp_path / "sdist-tree" / "llama_cpp_python-0.3.36",
                    arcname="llama_cpp_python-0.3.36")
    return sdist


def _fake_cmake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `cmake` on PATH that records its calls and "builds" a llama-server script."""
    calls = tmp_path / "cmake-calls"
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    cmake = bin_dir / "cmake"
    cmake.write_text(f"""#!/bin/sh
echo "$@" >> "{calls}"
if [ "$1" = --build ]; then
  mkdir -p "$2/bin" && printf '#!/bin/sh\\necho version: 7\\n' > "$2/bin/llama-server"
  chmod +x "$2/bin/llama-server"
fi
""")
    cmake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_build_server_configures_builds_and_caches_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _fake_cmake(tmp_path, monkeypatch)
    plan = server_plan(_plan(tmp_path))
    out_dir = tmp_path / "cache" / plan["key"]
    record = engine_build.build_server(plan, out_dir, jobs=3, sdist=_fake_sdist(tmp_path),
                                       log=lambda line: None)
    configure, build = calls.read_text().splitlines()
    assert configure.startswith("-S ") and "/vendor/llama.cpp -B " in configure
    assert configure.endswith(" ".join(plan["cmake_args"]))
    assert build.endswith("--target llama-server -j 3")
    assert record["build_s"] >= 0 and record["jobs"] == 3
    assert cached_server(plan, out_dir) is not None
    assert native_server_version(out_dir / "llama-server") == "version: 7"
    assert not out_dir.with_name(out_dir.name + ".partial").exists()


def test_build_server_names_the_files_a_trimmed_sdist_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cmake(tmp_path, monkeypatch)
    trimmed = tuple(n for n in SERVER_SOURCE_FILES if not n.startswith("tools/server/"))
    plan = server_plan(_plan(tmp_path))
    with pytest.raises(RuntimeError, match=r"tools/server/CMakeLists\.txt"):
        engine_build.build_server(plan, tmp_path / "out", sdist=_fake_sdist(tmp_path, trimmed),
                                  log=lambda line: None)
    assert not (tmp_path / "out").exists()
