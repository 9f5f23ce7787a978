"""The native engine's build plan, cache, install and check (no real build), and where it
is found."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scalezero.system import engine_build
from scalezero.system.engine_build import (
    ENGINE_LIBRARY_FILES,
    SERVER_ARGS,
    SERVER_CMAKE_FILE,
    SERVER_LINKING,
    SERVER_RECORD_NAME,
    SERVER_SOURCE_FILES,
    EngineLibraries,
    build_commands,
    build_plan,
    cached_server,
    check_server,
    engine_libraries,
    engine_llama_build,
    install_server,
    missing_server_sources,
    native_engine_enabled,
    native_engine_required,
    native_server,
    native_server_version,
    server_build_of,
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


def test_server_plan_goes_with_the_engine_build_it_links(tmp_path: Path) -> None:
    engine = _plan(tmp_path)
    plan = server_plan(engine)
    assert plan["key"] == engine["key"] + "-server" and plan["engine_key"] == engine["key"]
    # The CPU and CUDA flags are the engine's (AMX off): the server runs on its ggml.
    assert plan["engine_cmake_args"] == engine["cmake_args"]
    options = _options(plan["engine_cmake_args"])
    assert options["GGML_NATIVE"] == "OFF" and options["GGML_AVX512"] == "ON"
    assert options["GGML_AMX_TILE"] == options["GGML_AMX_INT8"] == options["GGML_AMX_BF16"]
    assert options["GGML_AMX_INT8"] == "OFF"
    assert plan["cmake_args"] == list(SERVER_ARGS)
    assert "GGML_CUDA" not in options and plan["cuda"] is False
    assert plan["linking"] == SERVER_LINKING
    assert plan["version"] == "0.3.36" and plan["build_cpu"] == "Test CPU"


def test_server_plan_follows_cuda_and_the_users_extra_args(tmp_path: Path) -> None:
    extra = "-DGGML_AVX512=OFF"
    engine = _plan(tmp_path, cuda=True, env={"SCALEZERO_ENGINE_CMAKE_ARGS": extra})
    plan = server_plan(engine, extra.split())
    assert plan["cuda"] is True
    assert plan["engine_cmake_args"][-2:] == ["-DGGML_CUDA=on", extra]
    # The user's arguments come last in the server build too, so they win there as well.
    assert plan["cmake_args"][-1] == extra


def test_the_server_cmake_file_imports_the_engine_instead_of_building_it() -> None:
    text = SERVER_CMAKE_FILE.read_text()
    assert "find_package(llama REQUIRED" in text and "add_subdirectory(tools/server)" in text
    assert "SCALEZERO_ENGINE_PREFIX" in text and "SCALEZERO_SERVER_RPATH" in text
    # Nothing of ggml, libllama or llama-common is compiled again.
    for compiled in ("add_subdirectory(ggml)", "add_subdirectory(src)",
                     "add_subdirectory(common)"):
        assert compiled not in text


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


def _fake_build(out_dir: Path, plan: dict[str, Any], script: str = "echo 'version: 1 (abc)'",
                rpath: str = "$ORIGIN/../lib") -> None:
    out_dir.mkdir(parents=True)
    binary = out_dir / "llama-server"
    binary.write_text(f"#!/bin/sh\n{script}\n")
    binary.chmod(0o755)
    (out_dir / SERVER_RECORD_NAME).write_text(json.dumps({**plan, "rpath": rpath,
                                                          "build_s": 1.0}))


def _fake_engine(root: Path, build_number: int = 1, commit: str = "abc") -> EngineLibraries:
    """A site-packages holding what the engine wheel installs for the server build."""
    for name in ENGINE_LIBRARY_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "lib/cmake/llama/llama-config.cmake").write_text(
        f"set(LLAMA_VERSION      0.5.0-dev)\nset(LLAMA_BUILD_COMMIT {commit})\n"
        f"set(LLAMA_BUILD_NUMBER {build_number})\n")
    (root / "llama_cpp").mkdir()
    (root / "llama_cpp" / "__init__.py").write_text("raise ImportError('not to be loaded')\n")
    return EngineLibraries(root, "$ORIGIN/../lib")


def _fake_venv(tmp_path: Path, site: Path, no_site_packages: bool = False) -> Path:
    """A virtualenv whose python finds the fake engine in `site` first (and, with
    `no_site_packages`, nothing installed elsewhere)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    flag = "-S " if no_site_packages else ""
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" {flag}"$@"\n')
    python.chmod(0o755)
    return venv


def test_a_cached_binary_is_reused_only_when_built_the_same_way(tmp_path: Path) -> None:
    plan = server_plan(_plan(tmp_path))
    out_dir = tmp_path / "cache" / plan["key"]
    assert cached_server(plan, out_dir) is None
    _fake_build(out_dir, plan)
    assert cached_server(plan, out_dir) is not None
    assert cached_server(plan, out_dir, "$ORIGIN/../lib") is not None
    # Another RPATH (another Python's site-packages layout) is not the same binary.
    assert cached_server(plan, out_dir, "$ORIGIN/../lib/python3.12") is None
    other = {**plan, "engine_cmake_args": [*plan["engine_cmake_args"], "-DGGML_AVX2=OFF"]}
    assert cached_server(other, out_dir) is None
    assert cached_server({**plan, "cmake_args": [*plan["cmake_args"], "-DX=1"]}, out_dir) is None
    # A binary built the old way (one static build) is not reused either.
    assert cached_server({**plan, "linking": "static"}, out_dir) is None
    (out_dir / "llama-server").unlink()
    assert cached_server(plan, out_dir) is None


def test_the_engine_libraries_are_found_in_the_venv_without_loading_them(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    _fake_engine(site)
    venv = _fake_venv(tmp_path, site)
    found = engine_libraries(venv)
    assert found.prefix == site.resolve()
    # Relative to the venv's bin/, so the binary names no path of the build machine.
    assert found.rpath == "$ORIGIN/" + os.path.relpath(site / "lib", venv / "bin")
    (site / "lib" / "libllama-common.so").unlink()
    with pytest.raises(RuntimeError, match=r"lacks what the server links: lib/libllama-common"):
        engine_libraries(venv)
    bare = _fake_venv(tmp_path / "bare", tmp_path / "empty", no_site_packages=True)
    with pytest.raises(RuntimeError, match=r"llama_cpp\) is not installed"):
        engine_libraries(bare)


def test_the_check_compares_the_servers_build_with_the_wheels(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path / "site", build_number=7, commit="0c1e570")
    assert engine_llama_build(engine.prefix) == (7, "0c1e570")
    assert server_build_of("version: 7 (0c1e570)") == (7, "0c1e570")
    assert server_build_of("version: 0.5.0-dev (build 7, commit 0c1e570)") == (7, "0c1e570")
    assert server_build_of("something else") is None
    binary = tmp_path / "llama-server"
    for says, ok in (("version: 7 (0c1e570)", True), ("version: 8 (0c1e570)", False),
                     ("version: 7 (deadbee)", False)):
        binary.write_text(f"#!/bin/sh\necho '{says}'\necho 'built with cc'\n")
        binary.chmod(0o755)
        if ok:
            assert check_server(binary, engine.prefix) == says
        else:
            with pytest.raises(RuntimeError, match="engine wheel build"):
                check_server(binary, engine.prefix)
    binary.write_text("#!/bin/sh\necho 'libllama-common.so.0: cannot open' >&2\nexit 127\n")
    with pytest.raises(RuntimeError, match="does not run: error: exit code 127"):
        check_server(binary, engine.prefix)


def _setup(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
           build: Any = None) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    """setup_server with a fake engine; `build` stands in for build_server."""
    engine = _fake_engine(tmp_path / "site")
    monkeypatch.setattr(engine_build, "engine_libraries", lambda venv, python=None: engine)
    monkeypatch.setattr(engine_build, "build_server",
                        build or (lambda *a, **k: pytest.fail("built")))
    plan = server_plan(build_plan("0.3.36", False, env=env))
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    record = setup_server("0.3.36", False, tmp_path / "cache", venv, env=env)
    return record, venv, plan


def test_setup_reuses_the_cache_installs_checks_and_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = server_plan(build_plan("0.3.36", False, env={}))
    _fake_build(tmp_path / "cache" / plan["key"], plan)
    record, venv, _ = _setup(tmp_path, {}, monkeypatch)
    assert record["key"] == plan["key"] and record["built"] is True
    assert record["server_version"] == "version: 1 (abc)"
    found = native_server(venv, env={})
    assert found.path == venv / "bin" / "llama-server"
    assert not found.switched_off and not found.failed
    assert found.record is not None and found.record["enabled"] is True
    assert found.record["engine_cmake_args"] == plan["engine_cmake_args"]
    assert found.record["build_s"] == 1.0
    assert native_server_version(found.path) == "version: 1 (abc)"


def test_setup_builds_by_default_and_rebuilds_a_cached_binary_that_fails_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = server_plan(build_plan("0.3.36", False, env={}))
    # Cached, but from a wheel of another llama.cpp build: it fails the check.
    _fake_build(tmp_path / "cache" / plan["key"], plan, script="echo 'version: 9 (old)'")
    builds: list[Path] = []

    def build(plan: dict[str, Any], out_dir: Path, engine: EngineLibraries,
              **_: Any) -> dict[str, Any]:
        builds.append(out_dir)
        shutil.rmtree(out_dir)
        _fake_build(out_dir, plan)
        return {**plan, "rpath": engine.rpath, "build_s": 2.0}

    record, venv, _ = _setup(tmp_path, {}, monkeypatch, build)
    assert builds == [tmp_path / "cache" / plan["key"]]
    assert record["built"] is True and record["build_s"] == 2.0
    assert native_server(venv, env={}).path == venv / "bin" / "llama-server"


def test_a_failed_build_is_recorded_with_its_reason_and_setup_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def build(*_: Any, **__: Any) -> dict[str, Any]:
        raise RuntimeError("cmake --build ... failed (exit code 2)")

    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "llama-server").write_text("an old one")
    record, venv, _ = _setup(tmp_path, {}, monkeypatch, build)
    assert record["built"] is False and "exit code 2" in record["reason"]
    assert "WARNING" in capsys.readouterr().err
    assert not (venv / "bin" / "llama-server").exists()
    found = native_server(venv, env={})
    assert found.path is None and found.failed and not found.switched_off
    assert "the build failed: cmake --build ... failed (exit code 2)" in found.reason
    # Asked for with SCALEZERO_NATIVE_ENGINE=1, the failure fails setup.
    with pytest.raises(RuntimeError, match="exit code 2"):
        _setup(tmp_path / "required", {"SCALEZERO_NATIVE_ENGINE": "1"}, monkeypatch, build)


def test_setup_switched_off_builds_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "llama-server").write_text("an old one")
    # On by default; only 0 switches it off; only 1 makes a failure fail setup.
    assert native_engine_enabled({}) and native_engine_enabled({"SCALEZERO_NATIVE_ENGINE": "1"})
    assert not native_engine_enabled({"SCALEZERO_NATIVE_ENGINE": "0"})
    assert native_engine_required({"SCALEZERO_NATIVE_ENGINE": "1"})
    assert not native_engine_required({})
    _, venv, _ = _setup(tmp_path, {"SCALEZERO_NATIVE_ENGINE": "0"}, monkeypatch)
    assert not (venv / "bin" / "llama-server").exists()
    found = native_server(venv, env={})
    assert found.path is None and found.switched_off and not found.failed
    assert "SCALEZERO_NATIVE_ENGINE=0" in found.reason and "switched off" in found.reason


def test_where_the_binary_is_or_why_not(tmp_path: Path) -> None:
    missing = native_server(tmp_path, env={})
    assert missing.path is None and not missing.switched_off and not missing.failed
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
    assert "engine_build.py server" in script and "SCALEZERO_NATIVE_ENGINE=0" in script
    # After the engine wheel is installed: the server links it.
    assert script.index("engine_build.py server") > script.index("--force-reinstall")


def _server_subcommand(tmp_path: Path, native_engine: str | None
                       ) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir()
    not_an_sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    not_an_sdist.write_bytes(b"not a tar file")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SCALEZERO_NATIVE_ENGINE")}
    if native_engine is not None:
        env["SCALEZERO_NATIVE_ENGINE"] = native_engine
    _fake_engine(tmp_path / "site")
    venv = _fake_venv(tmp_path, tmp_path / "site")
    script = Path(engine_build.__file__)
    return subprocess.run(
        [sys.executable, str(script), "server", "--version", "0.3.36", "--cache",
         str(tmp_path / "cache"), "--venv", str(venv), "--sdist", str(not_an_sdist)],
        capture_output=True, text=True, timeout=60, env=env)


def test_the_server_subcommand_reports_a_failed_build(tmp_path: Path) -> None:
    """A build that cannot start: recorded and setup goes on, or with
    SCALEZERO_NATIVE_ENGINE=1 setup fails with a message saying how to do without."""
    proc = _server_subcommand(tmp_path / "default", None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING: llama-server (the native engine) is not available" in proc.stderr
    record = json.loads((tmp_path / "default" / "venv" / SERVER_RECORD_NAME).read_text())
    assert record["built"] is False and "the build failed" in record["reason"]
    proc = _server_subcommand(tmp_path / "required", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "llama-server build failed" in proc.stderr
    assert "SCALEZERO_NATIVE_ENGINE=0 sets up without it" in proc.stderr


def _fake_sdist(tmp_path: Path, files: tuple[str, ...] = SERVER_SOURCE_FILES) -> Path:
    import tarfile

    package = tmp_path / "sdist-tree" / "llama_cpp_python-0.3.36"
    root = package / "vendor" / "llama.cpp"
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (package / "llama_cpp").mkdir(parents=True)
    (package / "llama_cpp" / "__init__.py").write_text("")
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(package, arcname="llama_cpp_python-0.3.36")
    return sdist


def _fake_cmake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_build: bool = False
                ) -> Path:
    """A `cmake` on PATH that records its calls, keeps the top-level CMakeLists.txt it
    configures, and "builds" a llama-server script (or fails)."""
    calls = tmp_path / "cmake-calls"
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    cmake = bin_dir / "cmake"
    cmake.write_text(f"""#!/bin/sh
echo "$@" >> "{calls}"
if [ "$1" = -S ]; then
  cp "$2/CMakeLists.txt" "{tmp_path}/configured-CMakeLists.txt"
  ls "$2" > "{tmp_path}/configured-files"
fi
if [ "$1" = --build ]; then
  {"echo 'error: it broke'; exit 2" if fail_build else ""}
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
    engine = EngineLibraries(tmp_path / "site", "$ORIGIN/../lib/python3.11/site-packages/lib")
    out_dir = tmp_path / "cache" / plan["key"]
    record = engine_build.build_server(plan, out_dir, engine, jobs=3,
                                       sdist=_fake_sdist(tmp_path), log=lambda line: None)
    configure, build = calls.read_text().splitlines()
    assert configure.startswith("-S ") and "/vendor/llama.cpp -B " in configure
    assert configure.endswith(" ".join([*plan["cmake_args"],
                                        f"-DSCALEZERO_ENGINE_PREFIX={tmp_path / 'site'}",
                                        f"-DSCALEZERO_SERVER_RPATH={engine.rpath}"]))
    # The tree's top-level file is the server build's; the upstream one is kept beside it.
    assert (tmp_path / "configured-CMakeLists.txt").read_text() == SERVER_CMAKE_FILE.read_text()
    assert "CMakeLists.upstream.txt" in (tmp_path / "configured-files").read_text().split()
    assert build.endswith("--target llama-server -j 3")
    assert record["build_s"] >= 0 and record["jobs"] == 3 and record["rpath"] == engine.rpath
    assert cached_server(plan, out_dir, engine.rpath) is not None
    assert native_server_version(out_dir / "llama-server") == "version: 7"
    assert not out_dir.with_name(out_dir.name + ".partial").exists()


def test_a_failed_build_keeps_its_log_and_caches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cmake(tmp_path, monkeypatch, fail_build=True)
    plan = server_plan(_plan(tmp_path))
    out_dir = tmp_path / "cache" / plan["key"]
    with pytest.raises(RuntimeError, match="it broke"):
        engine_build.build_server(plan, out_dir, EngineLibraries(tmp_path, "$ORIGIN"),
                                  sdist=_fake_sdist(tmp_path), log=lambda line: None)
    assert not out_dir.exists()
    assert "error: it broke" in out_dir.with_name(out_dir.name + ".log").read_text()


def test_build_server_names_the_files_a_trimmed_sdist_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cmake(tmp_path, monkeypatch)
    trimmed = tuple(n for n in SERVER_SOURCE_FILES if not n.startswith("tools/server/"))
    plan = server_plan(_plan(tmp_path))
    with pytest.raises(RuntimeError, match=r"tools/server/CMakeLists\.txt"):
        engine_build.build_server(plan, tmp_path / "out", EngineLibraries(tmp_path, "$ORIGIN"),
                                  sdist=_fake_sdist(tmp_path, trimmed), log=lambda line: None)
    assert not (tmp_path / "out").exists()
