"""`scalezero doctor`: what this machine offers the experiment, and whether it can run.

The first thing to run on a new machine. It prints the CPU and the instruction sets ggml
uses, the engine's build and backends, where llama-server (the native engine) is, the
GPUs NVML sees, the energy sources readable now, whether a file's page cache can be
dropped (cold-from-disk starts), the report and workflow tools, and the engine
self-check. It exits 1 when the experiment cannot run: the engine does not load or
answer, AMX code is compiled into it on a machine with AMX (the known crash), a built
llama-server does not run, or neither pandoc nor Quarto can render the report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from scalezero.system.engine_build import (
    GGML_CPU_FEATURES,
    cpu_model_name,
    engine_report,
    installed_build,
    native_server,
    native_server_version,
    read_cpu_flags,
)


def cpu_facts() -> dict[str, Any]:
    flags = read_cpu_flags()
    return {
        "model": cpu_model_name(),
        "logical_cpus": os.cpu_count(),
        "ggml_features": [f for f in GGML_CPU_FEATURES if f in flags],
        "amx": "amx_int8" in flags,
    }


def engine_facts() -> dict[str, Any]:
    facts = engine_report()
    facts["build"] = installed_build()
    return facts


def native_server_facts() -> dict[str, Any]:
    """Where llama-server (the `llama_server` engine) is and what it says, or why none."""
    found = native_server()
    facts: dict[str, Any] = {"path": None if found.path is None else str(found.path),
                             "reason": found.reason, "switched_off": found.switched_off,
                             "failed": found.failed,
                             "build": found.record}
    if found.path is not None:
        facts["version"] = native_server_version(found.path)
    return facts


def gpu_facts() -> dict[str, Any]:
    """GPUs through NVML, with whether each one's energy counter reads; or why none."""
    try:
        from scalezero.telemetry.nvml import cuda_driver_version_str, load_pynvml

        nv = load_pynvml()
        nv.nvmlInit()
    except Exception as exc:
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}", "gpus": []}
    try:
        gpus = []
        for index in range(nv.nvmlDeviceGetCount()):
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            gpu: dict[str, Any] = {"index": index, "name": nv.nvmlDeviceGetName(handle),
                                   "memory_total_mib": nv.nvmlDeviceGetMemoryInfo(handle).total
                                   / 2**20}
            try:
                nv.nvmlDeviceGetTotalEnergyConsumption(handle)
                gpu["energy_counter"] = True
            except Exception as exc:  # pre-Volta GPUs have no energy counter
                gpu["energy_counter"] = False
                gpu["energy_counter_error"] = str(exc)
            gpus.append(gpu)
        return {
            "available": True,
            "driver_version": nv.nvmlSystemGetDriverVersion(),
            "cuda_driver_version": cuda_driver_version_str(nv.nvmlSystemGetCudaDriverVersion()),
            "gpus": gpus,
        }
    finally:
        nv.nvmlShutdown()


def rapl_facts(root: Path | str = "/sys/class/powercap") -> dict[str, Any]:
    """RAPL package zones: present, readable, and the fix when they are not."""
    from scalezero.telemetry.host import RaplReader

    root = Path(root)
    try:
        zones = sorted(p.name for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    except OSError:
        zones = []
    readable = RaplReader.open(root) is not None
    facts: dict[str, Any] = {"zones": zones, "readable": readable}
    if zones and not readable:
        facts["fix"] = (f"sudo chmod a+r {root}/intel-rapl:*/energy_uj (kernels since 2020 "
                        "make it root-only; a udev rule or tmpfiles.d entry keeps it)")
    return facts


def page_cache_facts(directory: Path | str | None = None) -> dict[str, Any]:
    """Write a file, read it, drop its pages and ask the kernel what is left."""
    from scalezero.system.pagecache import drop_cached_pages, resident_fraction

    directory = Path(directory) if directory else Path(tempfile.gettempdir())
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".scalezero-doctor-") as fh:
            fh.write(os.urandom(4 * 2**20))
            fh.flush()
            with open(fh.name, "rb") as again:
                again.read()
            before = resident_fraction(fh.name)
            asked = drop_cached_pages(fh.name)
            after = resident_fraction(fh.name)
    except OSError as exc:
        return {"droppable": False, "directory": str(directory), "reason": str(exc)}
    droppable = bool(asked and before is not None and after is not None and after < 0.05)
    return {"droppable": droppable, "directory": str(directory),
            "resident_before": before, "resident_after": after}


def _version_of(command: list[str]) -> str | None:
    if not shutil.which(command[0]):
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip().splitlines()[0] if out.strip() else "present"


def tools_facts() -> dict[str, Any]:
    from importlib import metadata

    try:
        import pypandoc

        pandoc: str | None = pypandoc.get_pandoc_version()
    except Exception:
        pandoc = None
    try:
        snakemake: str | None = metadata.version("snakemake")
    except metadata.PackageNotFoundError:
        snakemake = None
    conda = next((name for name in ("conda", "mamba", "micromamba") if shutil.which(name)),
                 None)
    return {"pandoc": pandoc, "quarto": _version_of(["quarto", "--version"]),
            "snakemake": snakemake, "conda": conda}


def self_check_facts(model: Path | None) -> dict[str, Any]:
    """The engine self-check on `model`, or on a tiny synthetic model (no download)."""
    from scalezero.system.engine_check import generate_in_child
    from scalezero.system.layout import default_model

    model = model or default_model()
    with tempfile.TemporaryDirectory(prefix="scalezero-doctor-") as tmp:
        if not model.is_file():
            from scalezero.models.synthetic import write_synthetic_model

            model = Path(tmp) / "tiny.gguf"
            write_synthetic_model(model, "tiny", dtype="q8_0")
        started = time.monotonic()
        result = generate_in_child(model, n_tokens=8)
        return {"model": str(model), "ok": result.ok, "summary": result.summary(),
                "wall_s": round(time.monotonic() - started, 2)}


def diagnose(model: Path | None = None) -> dict[str, Any]:
    """Every fact, and the problems that stop the experiment."""
    facts: dict[str, Any] = {
        "cpu": cpu_facts(),
        "engine": engine_facts(),
        "native_server": native_server_facts(),
        "gpu": gpu_facts(),
        "rapl": rapl_facts(),
        "page_cache": page_cache_facts(Path("resources") if Path("resources").is_dir()
                                       else None),
        "tools": tools_facts(),
        "self_check": self_check_facts(model),
    }
    problems = []
    engine = facts["engine"]
    if "error" in engine:
        problems.append(f"the engine cannot be loaded: {engine['error']}")
    elif engine["amx_compiled"] and facts["cpu"]["amx"]:
        problems.append("the engine has ggml's AMX path compiled in and this CPU has AMX: "
                        "it crashes at the first decode; rebuild with tools/setup-venv.sh")
    native = facts["native_server"]
    if native["path"] is not None and native["version"].startswith("error"):
        problems.append(f"llama-server (engine llama_server) does not run here: "
                        f"{native['version']}; rebuild with tools/setup-venv.sh")
    if not facts["self_check"]["ok"]:
        problems.append(f"engine self-check {facts['self_check']['summary']}")
    if not facts["tools"]["pandoc"] and not facts["tools"]["quarto"]:
        problems.append("neither pandoc (pypandoc-binary) nor Quarto: the report cannot render")
    if not facts["tools"]["snakemake"]:
        problems.append("Snakemake is not installed")
    facts["problems"] = problems
    return facts


def _mark(ok: bool) -> str:
    return "ok  " if ok else "--  "


def format_facts(facts: dict[str, Any]) -> str:
    """The facts as a person reads them: one line each, ok / -- / FAIL in front."""
    cpu, engine, gpu = facts["cpu"], facts["engine"], facts["gpu"]
    rapl, cache, tools, check = (facts["rapl"], facts["page_cache"], facts["tools"],
                                 facts["self_check"])
    lines = [f"CPU        {cpu['model']}, {cpu['logical_cpus']} logical CPUs",
             f"           ggml features: {' '.join(cpu['ggml_features']) or 'none'}"
             + (" (AMX present)" if cpu["amx"] else "")]
    if "error" in engine:
        lines.append(f"FAIL engine {engine['error']}")
    else:
        cpu_features = " ".join(k for k, v in engine["backends"].get("CPU", {}).items()
                                if v == "1")
        lines.append(f"ok   engine llama-cpp-python {engine['llama_cpp_python']}, backends "
                     f"{', '.join(engine['backends'])}, GPU offload "
                     f"{'yes' if engine['gpu_offload'] else 'no'}, AMX compiled in: "
                     f"{'yes' if engine['amx_compiled'] else 'no'}")
        lines.append(f"           ggml reports CPU: {cpu_features}")
        build = engine.get("build")
        lines.append("           build " + (f"{build['key']}: {' '.join(build['cmake_args'])}"
                                            if build else "not recorded (not installed by "
                                            "tools/setup-venv.sh)"))
    native = facts["native_server"]
    if native["path"] is None:
        lines.append(f"--   native llama-server (engine llama_server) {native['reason']}")
    else:
        runs = not native["version"].startswith("error")
        lines.append(f"{'ok  ' if runs else 'FAIL'} native llama-server {native['path']}: "
                     f"{native['version']}; {native['reason']}")
    if gpu["available"]:
        lines.append(f"ok   NVML   driver {gpu['driver_version']}, CUDA "
                     f"{gpu['cuda_driver_version']}, {len(gpu['gpus'])} GPU(s)")
        for g in gpu["gpus"]:
            lines.append(f"           GPU {g['index']}: {g['name']}, "
                         f"{g['memory_total_mib']:.0f} MiB, energy counter "
                         f"{'yes' if g['energy_counter'] else 'no'}")
    else:
        lines.append(f"--   NVML   no GPU telemetry: {gpu['reason']}")
    nvml_energy = any(g.get("energy_counter") for g in gpu["gpus"])
    sources = (["NVML energy counter"] if nvml_energy else []) + (
        ["RAPL " + ", ".join(rapl["zones"])] if rapl["readable"] else [])
    lines.append(f"{_mark(bool(sources))} energy {', '.join(sources) or 'none readable'}")
    if rapl.get("fix"):
        lines.append(f"           RAPL zones exist but are unreadable; fix: {rapl['fix']}")
    lines.append(f"{_mark(cache['droppable'])} cache  page cache of a file in "
                 f"{cache['directory']} can "
                 f"{'' if cache['droppable'] else 'NOT '}be dropped (cold-from-disk starts)"
                 + (f": resident {cache['resident_before']:.0%} -> {cache['resident_after']:.0%}"
                    if cache.get("resident_after") is not None else ""))
    lines.append(f"{_mark(bool(tools['pandoc'] or tools['quarto']))} report pandoc "
                 f"{tools['pandoc'] or 'missing'}, Quarto {tools['quarto'] or 'not on PATH'}")
    lines.append(f"{_mark(bool(tools['snakemake']))} tools  Snakemake "
                 f"{tools['snakemake'] or 'missing'}, conda {tools['conda'] or 'not found'}")
    lines.append(f"{'ok  ' if check['ok'] else 'FAIL'} check  engine self-check on "
                 f"{check['model']}: {check['summary']}")
    if facts["problems"]:
        lines.append("")
        lines += [f"problem: {p}" for p in facts["problems"]]
    else:
        lines.append("\nThis machine can run the experiment.")
    return "\n".join(lines)


def run_cli(args: argparse.Namespace) -> int:
    facts = diagnose(args.model)
    print(json.dumps(facts, indent=2, default=str) if args.json else format_facts(facts))
    return 1 if facts["problems"] else 0


def add_cli(subparsers: Any) -> None:
    """Register `scalezero doctor`."""
    parser = subparsers.add_parser(
        "doctor", help="what this machine offers the experiment, and whether it can run",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--model", type=Path, default=None,
                        help="GGUF for the engine self-check (default: the embedded default "
                             "if fetched, else a tiny synthetic model)")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.set_defaults(func=run_cli)
