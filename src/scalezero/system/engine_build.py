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

The second engine, llama.cpp's own server (`llama-server`), is built from the llama.cpp
source the same llama-cpp-python sdist vendors (`vendor/llama.cpp`), but only what it
adds to the engine: mtmd, the HTTP library and the server itself. `llama_server.cmake`
replaces the tree's top-level CMakeLists.txt and imports the shared libllama,
libllama-common and ggml the engine wheel installed (same source and flags, so the same
ABI, the same CPU features, AMX off, and CUDA when the wheel has it); the binary finds
them at run time through an RPATH relative to the virtualenv's `bin/`. That is about a
third of a standalone build's compiling. It is cached beside the wheel, in
`<build key>-server/`, copied into the virtualenv's `bin/`, checked (it must run and
report the wheel's llama.cpp build) and recorded in `engine-server-build.json`;
`native_server` finds it. On by default: `SCALEZERO_NATIVE_ENGINE=0` switches it off,
`SCALEZERO_NATIVE_ENGINE=1` makes a failed build fail setup (otherwise the failure is
recorded with its reason and setup goes on).

Only the standard library is used: the setup script runs this file as a script before
the package is installed:

    python3 src/scalezero/system/engine_build.py plan --version 0.3.36 --cuda 0
    python3 src/scalezero/system/engine_build.py server --version 0.3.36 --cuda 0 \
        --cache ~/.cache/scalezero/engine --venv .venv
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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

#: "0" switches the native server build off (tools/setup-venv.sh); unset: on, and a
#: failed build is recorded and setup goes on; "1": on, and a failed build fails setup.
NATIVE_ENGINE_ENV = "SCALEZERO_NATIVE_ENGINE"
#: A llama-server binary to use instead of the one setup built (a path).
SERVER_PATH_ENV = "SCALEZERO_LLAMA_SERVER"
#: The record of the native server build: in the virtualenv and beside the cached binary.
SERVER_RECORD_NAME = "engine-server-build.json"
SERVER_BINARY = "llama-server"
#: How the server is built: only what it adds to the engine, linked against the engine
#: wheel's own shared libraries (recorded, and part of what a cached binary must match).
SERVER_LINKING = "shared: libllama, libllama-common and ggml of the installed engine wheel"
#: The CMake file that replaces vendor/llama.cpp's top-level CMakeLists.txt in the server
#: build (the upstream one is kept beside it as CMakeLists.upstream.txt).
SERVER_CMAKE_FILE = Path(__file__).with_name("llama_server.cmake")
#: CMake arguments of the server build; the user's SCALEZERO_ENGINE_CMAKE_ARGS follow.
#: The CPU and CUDA arguments are the engine's business: the server runs on its ggml.
SERVER_ARGS = ("-DCMAKE_BUILD_TYPE=Release",)
#: Files of the vendored llama.cpp tree the server build needs (a trimmed sdist lacking
#: one fails here, with its name, instead of deep inside CMake).
SERVER_SOURCE_FILES = (
    "CMakeLists.txt",
    "cmake/build-info.cmake",
    "cmake/common.cmake",
    "cmake/license.cmake",
    "ggml/cmake/common.cmake",
    "common/common.h",
    "vendor/CMakeLists.txt",
    "vendor/cpp-httplib/CMakeLists.txt",
    "tools/mtmd/CMakeLists.txt",
    "tools/ui/CMakeLists.txt",
    "scripts/ui-assets.cmake",
    "tools/server/CMakeLists.txt",
    "tools/server/server.cpp",
)
#: What the engine wheel installs into site-packages that the server build links (the
#: wheel also has libllama and ggml in llama_cpp/lib; these are llama.cpp's own install).
ENGINE_LIBRARY_FILES = (
    "lib/cmake/llama/llama-config.cmake",
    "lib/cmake/ggml/ggml-config.cmake",
    "lib/libllama.so",
    "lib/libllama-common.so",
    "lib/libggml.so",
    "include/llama.h",
)

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


# ------------------------------------------------------------ the native server


def native_engine_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether setup builds llama-server: unless SCALEZERO_NATIVE_ENGINE=0.

    On by default since the build compiles only what the server adds to the engine wheel
    (mtmd, the HTTP library, the server) and links the wheel's libllama, libllama-common
    and ggml, instead of compiling those a second time."""
    env = os.environ if env is None else env
    return env.get(NATIVE_ENGINE_ENV, "").strip() != "0"


def native_engine_required(env: Mapping[str, str] | None = None) -> bool:
    """Whether a failed server build fails setup: only with SCALEZERO_NATIVE_ENGINE=1
    (by default it is recorded, with the reason, and setup goes on without it)."""
    env = os.environ if env is None else env
    return env.get(NATIVE_ENGINE_ENV, "").strip() == "1"


def server_plan(engine_plan: Mapping[str, Any], extra_args: Sequence[str] = ()
                ) -> dict[str, Any]:
    """The record of the server build that goes with the engine build `engine_plan`.

    Its key is the engine's plus "-server": the cached binary sits beside the wheel and
    is rebuilt whenever the wheel would be (it links that very wheel's libraries). A
    cached binary built with other arguments or linked another way is not reused.
    """
    return {
        "package": "llama-server",
        "source": f"llama-cpp-python {engine_plan['version']} sdist, vendor/llama.cpp",
        "version": engine_plan["version"],
        "cuda": engine_plan["cuda"],
        "target": SERVER_BINARY,
        "linking": SERVER_LINKING,
        "cmake_args": [*SERVER_ARGS, *extra_args],
        "engine_cmake_args": list(engine_plan["cmake_args"]),
        "engine_key": engine_plan["key"],
        "key": f"{engine_plan['key']}-server",
        "build_cpu": engine_plan["build_cpu"],
        "build_cpu_features": list(engine_plan["build_cpu_features"]),
    }


def missing_server_sources(source: Path) -> list[str]:
    """The files of SERVER_SOURCE_FILES a vendored llama.cpp tree lacks."""
    return [name for name in SERVER_SOURCE_FILES if not (source / name).is_file()]


@dataclasses.dataclass(frozen=True)
class EngineLibraries:
    """Where the installed engine wheel's libraries are, and the RPATH that finds them
    from the virtualenv's bin/ (relative, so the binary does not name this build's
    paths)."""

    prefix: Path
    rpath: str


def engine_libraries(venv: Path, python: str | None = None) -> EngineLibraries:
    """The engine wheel's install in `venv`: the site-packages directory holding its
    lib/ and include/ (asked of the venv's interpreter without loading the library)."""
    python = python or str(venv / "bin" / "python")
    probe = ("import importlib.util, pathlib; spec = importlib.util.find_spec('llama_cpp'); "
             "print(pathlib.Path(spec.origin).resolve().parent.parent if spec and spec.origin "
             "else '')")
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    found = proc.stdout.strip()
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"the engine (llama_cpp) is not installed in {venv} "
                           f"({proc.stderr.strip()[-300:] or 'not found'})")
    prefix = Path(found)
    missing = [name for name in ENGINE_LIBRARY_FILES if not (prefix / name).is_file()]
    if missing:
        raise RuntimeError(f"the engine wheel in {prefix} lacks what the server links: "
                           f"{', '.join(missing)}")
    bin_dir = (venv / "bin").resolve()
    return EngineLibraries(prefix, "$ORIGIN/" + os.path.relpath(prefix / "lib", bin_dir))


def engine_llama_build(prefix: Path) -> tuple[int, str]:
    """The llama.cpp build (number, commit) the engine wheel was compiled from, as its
    CMake package records it (lib/cmake/llama/llama-config.cmake)."""
    text = (prefix / "lib" / "cmake" / "llama" / "llama-config.cmake").read_text(
        encoding="utf-8", errors="replace")
    number = re.search(r"^set\(LLAMA_BUILD_NUMBER\s+(\d+)\)", text, re.M)
    commit = re.search(r"^set\(LLAMA_BUILD_COMMIT\s+([^)\s]+)\)", text, re.M)
    if not number or not commit:
        raise RuntimeError(f"no LLAMA_BUILD_NUMBER/LLAMA_BUILD_COMMIT in {prefix}/lib/cmake/"
                           "llama/llama-config.cmake")
    return int(number.group(1)), commit.group(1)


def server_build_of(version_line: str) -> tuple[int, str] | None:
    """The (build number, commit) in llama-server's `--version` line, "version: 1
    (0c1e570)" or "version: 0.5.0-dev (build 1, commit 0c1e570)"; None if neither."""
    match = (re.search(r"build (\d+), commit ([^)\s]+)\)", version_line)
             or re.search(r"version: (\d+) \(([^)\s]+)\)", version_line))
    return (int(match.group(1)), match.group(2)) if match else None


def check_server(binary: Path, prefix: Path) -> str:
    """Run `binary --version`; return its version line if it runs and reports the llama.cpp
    build the engine wheel in `prefix` was compiled from, else raise RuntimeError."""
    version = native_server_version(binary)
    if version.startswith("error"):
        raise RuntimeError(f"{binary} does not run: {version}")
    wheel = engine_llama_build(prefix)
    server = server_build_of(version)
    if server != wheel:
        raise RuntimeError(f"{binary} reports llama.cpp build {server} ({version!r}), the "
                           f"engine wheel build {wheel}")
    return version


def build_commands(source: Path, build_dir: Path, cmake_args: Sequence[str],
                   jobs: int) -> list[list[str]]:
    """CMake's configure and build commands for the llama-server target only."""
    return [
        ["cmake", "-S", str(source), "-B", str(build_dir), *cmake_args],
        ["cmake", "--build", str(build_dir), "--target", SERVER_BINARY, "-j", str(jobs)],
    ]


def _sdist_source(version: str, work: Path, python: str, sdist: Path | None) -> Path:
    """The vendored llama.cpp tree of the llama-cpp-python sdist (downloaded unless given),
    with the server build's top-level CMakeLists.txt in place of the upstream one."""
    if sdist is None:
        download = work / "sdist"
        subprocess.run([python, "-m", "pip", "download", "--disable-pip-version-check", "-q",
                        "--no-binary", ":all:", "--no-deps", "-d", str(download),
                        f"llama-cpp-python=={version}"], check=True)
        found = sorted(download.glob("llama_cpp_python-*.tar.gz"))
        if not found:
            raise RuntimeError(f"pip downloaded no llama-cpp-python {version} sdist")
        sdist = found[0]
    prefix = "/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive:
        # Only the vendored llama.cpp tree: the rest of the sdist is the Python package.
        members = [m for m in archive.getmembers() if prefix in f"/{m.name}/"]
        archive.extractall(work / "src", members=members, filter="data")
    roots = [p for p in (work / "src").iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise RuntimeError(f"unexpected sdist layout: {sorted(p.name for p in roots)}")
    source = roots[0] / "vendor" / "llama.cpp"
    missing = missing_server_sources(source)
    if missing:
        raise RuntimeError(f"the sdist's vendor/llama.cpp lacks what the server build needs: "
                           f"{', '.join(missing)}")
    (source / "CMakeLists.txt").rename(source / "CMakeLists.upstream.txt")
    shutil.copyfile(SERVER_CMAKE_FILE, source / "CMakeLists.txt")
    return source


def build_server(plan: Mapping[str, Any], out_dir: Path, engine: EngineLibraries, *,
                 python: str | None = None, jobs: int | None = None,
                 sdist: Path | None = None, log: Callable[[str], None] = print
                 ) -> dict[str, Any]:
    """Build llama-server as `plan` says, linked against `engine`'s libraries, into
    `out_dir` (replaced whole, atomically); return the record written beside it (the
    plan plus the RPATH and the build's duration). A failed build leaves its log in
    `<out_dir>.log`."""
    jobs = jobs or os.cpu_count() or 1
    started = time.monotonic()
    failed_log = out_dir.with_name(out_dir.name + ".log")
    with tempfile.TemporaryDirectory(prefix="scalezero-server.") as tmp:
        work = Path(tmp)
        source = _sdist_source(plan["version"], work, python or sys.executable, sdist)
        cmake_args = [*plan["cmake_args"], f"-DSCALEZERO_ENGINE_PREFIX={engine.prefix}",
                      f"-DSCALEZERO_SERVER_RPATH={engine.rpath}"]
        build_log = work / "build.log"
        for command in build_commands(source, work / "build", cmake_args, jobs):
            with build_log.open("a", encoding="utf-8") as out:
                code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL).returncode
            if code != 0:
                text = build_log.read_text(encoding="utf-8", errors="replace")
                failed_log.parent.mkdir(parents=True, exist_ok=True)
                failed_log.write_text(text, encoding="utf-8")
                raise RuntimeError(f"{' '.join(command[:3])} ... failed "
                                   f"({describe_exit(code)}; log: {failed_log}); the end of "
                                   f"its output:\n{text[-3000:]}")
        binary = work / "build" / "bin" / SERVER_BINARY
        if not binary.is_file():
            raise RuntimeError(f"the build produced no {binary}")
        record = {**plan, "rpath": engine.rpath,
                  "build_s": round(time.monotonic() - started, 1), "jobs": jobs}
        partial = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        shutil.copy2(binary, partial / SERVER_BINARY)
        (partial / SERVER_RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n",
                                                  encoding="utf-8")
        shutil.rmtree(out_dir, ignore_errors=True)
        partial.rename(out_dir)
    failed_log.unlink(missing_ok=True)
    log(f"setup: llama-server built in {record['build_s']:.0f} s ({jobs} jobs)")
    return record


def cached_server(plan: Mapping[str, Any], out_dir: Path, rpath: str | None = None
                  ) -> dict[str, Any] | None:
    """The record of the binary cached in `out_dir` if it was built as `plan` says (and,
    given `rpath`, finds the engine's libraries the same way)."""
    try:
        record = json.loads((out_dir / SERVER_RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = all(record.get(k) == plan[k] for k in ("key", "version", "cuda", "linking",
                                                  "cmake_args", "engine_cmake_args"))
    same = same and (rpath is None or record.get("rpath") == rpath)
    return dict(record) if same and (out_dir / SERVER_BINARY).is_file() else None


def install_server(out_dir: Path | None, venv: Path, record: Mapping[str, Any]) -> None:
    """Put the cached binary into `venv`/bin and its record into `venv`; with no
    `out_dir`, remove any binary there and record why there is none."""
    target = venv / "bin" / SERVER_BINARY
    if out_dir is None:
        target.unlink(missing_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(SERVER_BINARY + ".partial")
        shutil.copy2(out_dir / SERVER_BINARY, partial)
        partial.replace(target)
    (venv / SERVER_RECORD_NAME).write_text(json.dumps(dict(record), indent=2) + "\n",
                                           encoding="utf-8")


def setup_server(version: str, cuda: bool, cache: Path, venv: Path,
                 env: Mapping[str, str] | None = None, **build: Any) -> dict[str, Any]:
    """What tools/setup-venv.sh does for the native server: build it (unless switched off
    or cached) against the engine installed in `venv`, install it there and check that it
    runs and reports the engine's llama.cpp build. Returns the record installed.

    A build or check that fails is recorded in `venv` with the reason (the binary
    removed) and setup goes on, unless SCALEZERO_NATIVE_ENGINE=1 asked for it: then the
    RuntimeError (or OSError, CalledProcessError) propagates."""
    env = os.environ if env is None else env
    if not native_engine_enabled(env):
        off: dict[str, Any] = {"package": "llama-server", "enabled": False,
                               "reason": f"{NATIVE_ENGINE_ENV}=0 when tools/setup-venv.sh ran "
                                         "(the build is switched off)"}
        install_server(None, venv, off)
        print(f"setup: llama-server not built ({NATIVE_ENGINE_ENV}=0)")
        return off
    plan = server_plan(build_plan(version, cuda, env=env), env.get(EXTRA_ARGS_ENV, "").split())
    out_dir = cache / plan["key"]
    try:
        engine = engine_libraries(venv, build.get("python"))
        record = cached_server(plan, out_dir, engine.rpath)
        if record is not None:
            print(f"setup: reusing llama-server build {plan['key']}")
            install_server(out_dir, venv, {**record, "enabled": True})
            try:
                checked = check_server(venv / "bin" / SERVER_BINARY, engine.prefix)
            except RuntimeError as exc:
                print(f"setup: the cached llama-server fails its check ({exc}); rebuilding")
                record = None
        if record is None:
            print(f"setup: building llama-server from the llama-cpp-python {version} sdist "
                  f"against the installed engine (build {plan['key']}: "
                  f"{' '.join(plan['cmake_args'])})")
            record = build_server(plan, out_dir, engine, **build)
            install_server(out_dir, venv, {**record, "enabled": True})
            checked = check_server(venv / "bin" / SERVER_BINARY, engine.prefix)
    except (RuntimeError, OSError, subprocess.CalledProcessError, tarfile.TarError) as exc:
        failed = {"package": "llama-server", "enabled": True, "built": False,
                  "key": plan["key"], "reason": f"the build failed: {exc}"}
        install_server(None, venv, failed)
        if native_engine_required(env):
            raise
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"setup: WARNING: llama-server (the native engine) is not available: the build "
              f"failed: {first_line}\n(recorded in {venv / SERVER_RECORD_NAME}; "
              f"{NATIVE_ENGINE_ENV}=0 skips the build)", file=sys.stderr)
        return failed
    installed = {**record, "enabled": True, "built": True, "server_version": checked}
    install_server(out_dir, venv, installed)
    print(f"setup: llama-server runs ({checked}), the engine wheel's llama.cpp build")
    return installed


@dataclasses.dataclass(frozen=True)
class NativeServer:
    """Where llama-server is: `path`, or None and `reason` says why."""

    path: Path | None
    reason: str
    #: True when setup did not build it because the build is switched off
    #: (SCALEZERO_NATIVE_ENGINE=0).
    switched_off: bool = False
    record: dict[str, Any] | None = None
    #: True when setup tried to build it and failed (`reason` says why).
    failed: bool = False


def native_server(prefix: Path | str | None = None,
                  env: Mapping[str, str] | None = None) -> NativeServer:
    """The llama-server binary: SCALEZERO_LLAMA_SERVER if set, else the one setup put in
    the virtualenv (`prefix`, default sys.prefix), with its build record."""
    env = os.environ if env is None else env
    override = env.get(SERVER_PATH_ENV, "").strip()
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return NativeServer(path.resolve(), f"from {SERVER_PATH_ENV}")
        return NativeServer(None, f"{SERVER_PATH_ENV}={override} is not an executable file")
    root = Path(prefix or sys.prefix)
    try:
        record: dict[str, Any] | None = dict(
            json.loads((root / SERVER_RECORD_NAME).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        record = None
    if record is not None and record.get("enabled") is False:
        return NativeServer(None, f"not built: {record.get('reason', 'switched off')}",
                            switched_off=True, record=record)
    if record is not None and record.get("built") is False:
        return NativeServer(None, f"not built: {record.get('reason', 'the build failed')}",
                            record=record, failed=True)
    path = root / "bin" / SERVER_BINARY
    if path.is_file() and os.access(path, os.X_OK):
        return NativeServer(path, f"built by tools/setup-venv.sh (build "
                                  f"{(record or {}).get('key', 'not recorded')})", record=record)
    return NativeServer(None, f"not built: no {path} (run tools/setup-venv.sh without "
                              f"{NATIVE_ENGINE_ENV}=0)", record=record)

def native_server_version(path: Path, timeout_s: float = 30.0) -> str:
    """What `llama-server --version` says (its first line), or why it says nothing: a
    binary that cannot run here (a missing library, an instruction the CPU lacks) fails
    this already."""
    try:
        proc = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {type(exc).__name__}: {exc}"
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    if proc.returncode != 0:
        return f"error: {describe_exit(proc.returncode)}: {' | '.join(lines[-2:])[:300]}"
    found = [line for line in lines if line.startswith("version")]
    return (found or lines or ["(no output)"])[0]


# ------------------------------------------------------------- engine reports


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
    server = sub.add_parser(
        "server", help=f"build llama-server against the engine installed in a virtualenv "
                       f"(unless cached, or {NATIVE_ENGINE_ENV}=0), install and check it")
    server.add_argument("--version", required=True, help="llama-cpp-python version")
    server.add_argument("--cuda", type=int, choices=(0, 1), default=0)
    server.add_argument("--cache", type=Path, required=True,
                        help="the wheelhouse root (the binary goes to <key>-server/ in it)")
    server.add_argument("--venv", type=Path, required=True)
    server.add_argument("--sdist", type=Path, default=None,
                        help="a llama-cpp-python sdist to build from (default: pip downloads)")
    server.add_argument("--jobs", type=int, default=None, help="default: the CPU count")
    args = parser.parse_args(argv)
    if args.command == "server":
        try:
            setup_server(args.version, bool(args.cuda), args.cache, args.venv,
                         python=str(args.venv / "bin" / "python"), jobs=args.jobs,
                         sdist=args.sdist)
        except (RuntimeError, OSError, subprocess.CalledProcessError, tarfile.TarError) as exc:
            print(f"setup: the llama-server build failed: {exc}\n({NATIVE_ENGINE_ENV}=1 "
                  f"makes that fail setup; {NATIVE_ENGINE_ENV}=0 sets up without it)",
                  file=sys.stderr)
            return 1
        return 0
    print(json.dumps(build_plan(args.version, bool(args.cuda)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
