"""One measured run: sampler + gateway + open-loop replay, torn down whatever happens.

Order of a run (all times on the shared monotonic clock, recorded in run.json):

1. take the measurement lock, so measured runs never overlap (they would share, and
   skew, the same GPU or CPU), whatever the workflow's parallelism;
2. start the telemetry sampler; record the *bare idle* baseline (no instance);
3. start the gateway; wait for the policy's initial instances (always-on warms up here,
   outside the replay window);
4. replay the trace open-loop, streaming; the replay window ends when the last
   response does;
5. stop the gateway (it stops its instances), then the sampler; count prompt tokens
   with the model's tokenizer; write requests.csv, tokens.csv and run.json.

Every child runs in its own process group and dies with its parent; the ``finally``
clause kills what is left, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from scalezero import __version__
from scalezero.errors import UserError
from scalezero.measure.replay import (
    ReplayRequest,
    replay,
    requests_from_trace,
    write_requests,
    write_tokens,
)
from scalezero.measure.settings import RunSettings, TelemetrySettings
from scalezero.serving.events import write_event_header
from scalezero.serving.settings import (
    DEVICES,
    SETTINGS_FILE,
    GatewaySettings,
    InstanceSettings,
    field_default,
    serve_command,
)
from scalezero.serving.strategies import policies
from scalezero.system import slurm
from scalezero.system.layout import RUN_FILE_NAMES, Layout
from scalezero.system.procs import (
    free_tcp_port,
    package_env,
    terminate_group,
    watch_process,
    workflow_ancestor,
)

RUN_FILES = tuple(RUN_FILE_NAMES.values())


class _Terminated(Exception):
    """SIGTERM arrived: unwind through the finally clauses like Ctrl-C does."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated(f"signal {signum}")


@contextlib.contextmanager
def measurement_lock(path: Path | None) -> Iterator[None]:
    """Exclusive lock held for a whole measured run."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"run: waiting for another measured run to finish ({path})", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _spawn(command: list[str], log_path: Path | None, env: Mapping[str, str] | None = None
           ) -> subprocess.Popen:
    log: IO[bytes] | int = log_path.open("ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**package_env(), **(env or {})},
        )
    finally:
        if not isinstance(log, int):
            log.close()  # the child holds its own copy


def environment_info(device: str) -> dict[str, Any]:
    """Host, Python and llama-cpp-python facts for run.json (never raises)."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "scalezero": __version__,
    }
    with contextlib.suppress(Exception):
        import psutil

        info["memory_total_mib"] = round(psutil.virtual_memory().total / 2**20)
    from scalezero.system.device import device_env
    from scalezero.system.engine_build import (
        GGML_CPU_FEATURES,
        cpu_model_name,
        engine_report,
        installed_build,
        native_server,
        read_cpu_flags,
    )

    info["cpu_model"] = cpu_model_name()
    flags = read_cpu_flags()
    info["cpu_features"] = [f for f in GGML_CPU_FEATURES if f in flags]
    engine = engine_report(env={**os.environ, **device_env(device, None)})
    if "error" in engine:
        info["llama_cpp_python_error"] = str(engine["error"])[:200]
    else:
        info["llama_cpp_python"] = engine["llama_cpp_python"]
        info["llama_cpp_gpu_offload"] = engine["gpu_offload"]
        # What ggml says it was compiled with, and the flags setup built it with.
        info["engine"] = {"backends": engine["backends"], "amx_compiled": engine["amx_compiled"],
                          "build": installed_build(), "server_build": native_server().record}
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, cwd=Path(__file__).parent).stdout.strip()
        if commit:
            info["git_commit"] = commit
    return info


def _telemetry_info(backend: str, gpu_index: int | None) -> dict[str, Any]:
    try:
        from scalezero.telemetry import device_info

        return dict(device_info(gpu_index, prefer=backend))
    except Exception as exc:
        return {"error": str(exc)[:200], "requested_backend": backend}


def _wait_for_file_rows(path: Path, rows: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if path.read_text().count("\n") >= rows:
                return True
        time.sleep(0.05)
    return False


def _wait_gateway(base_url: str, proc: subprocess.Popen, min_ready: int, timeout_s: float,
                  log_path: Path | None) -> None:
    """Wait until the gateway answers and the policy's initial instances are ready."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text()[-1500:] if log_path and log_path.exists() else ""
                raise RuntimeError(f"gateway exited with code {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready after {timeout_s:g} s")
            try:
                state = client.get(base_url + "/state").json()
                pools = state["deployments"].values()
                if all(p["ready"] >= min_ready for p in pools):
                    return
                if any(p["start_failures"] for p in pools):
                    raise RuntimeError("an initial instance failed to start; see the gateway log")
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)


def measured_run(plan: RunSettings) -> dict[str, Any]:
    """Run one strategy on one trace; write the run files into ``plan.out_dir``."""
    from scalezero.system.device import require_device
    from scalezero.workload.trace import read_history, read_trace

    if plan.history_path is not None:
        # The gateway gets the times themselves in its settings file.
        history_s = tuple(read_history(plan.history_path))
        plan = plan.model_copy(update={
            "gateway": plan.gateway.model_copy(update={"history_s": history_s})})
    policy = plan.gateway.make_policy()  # fail early on a bad config
    require_device(plan.gateway.device)
    items = requests_from_trace(read_trace(plan.trace_path))
    if not plan.gateway.deployments:
        # One deployment serves the whole trace; a model column names the deployments of
        # a shared gateway only.
        items = [dataclasses.replace(item, model=None) for item in items]
    if not plan.gateway.model_path.is_file():
        raise UserError(f"model not found: {plan.gateway.model_path}")
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    _stop_when_workflow_ends()
    try:
        with measurement_lock(plan.lock_path):
            return _measured_run_locked(plan, policy.params(), items)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def _stop_when_workflow_ends() -> None:
    """Stop this run (as SIGTERM does) when the Snakemake that started it ends.

    Killed with SIGKILL (an out-of-memory kill, a closed terminal), Snakemake cannot stop
    its jobs; a run that went on would measure into files Snakemake discards and hold
    the measurement lock against the next invocation.
    """
    workflow = workflow_ancestor()
    if workflow is None:
        return

    def on_gone() -> None:
        print(f"run: Snakemake (pid {workflow.pid}) is gone: stopping this run",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    watch_process(workflow, on_gone)


def _measured_run_locked(
    plan: RunSettings, policy_params: dict[str, Any], items: list[ReplayRequest]
) -> dict[str, Any]:
    from scalezero.workload.trace import history_summary

    files = Layout.run_files(plan.out_dir)
    log_dir = plan.log_dir
    gw = plan.gateway
    model_path = gw.model_path
    policy = gw.make_policy()
    run: dict[str, Any] = {
        "workload": plan.workload,
        "strategy": plan.strategy,
        "rep": plan.rep,
        "order_index": plan.order_index,
        "policy": {"name": gw.policy, **{k: v for k, v in policy_params.items()
                                           if k != "policy"},
                   "accounting": policy.accounting().record()},
        "device": gw.device,
        "gpu_index": gw.gpu_index,
        "config_sha256": plan.config_sha256,
        "seed": plan.seed,
        "history": history_summary(gw.history_s),
        "started_at": _now_iso(),
        "clock": {"mono_s": time.monotonic(), "wall_iso": _now_iso()},
        "windows": {"baseline_bare": None, "baseline_context": None, "replay": None},
        "status": "running",
    }
    if plan.platform:
        run["platform"] = plan.platform
    run["env"] = environment_info(gw.device)
    slurm_job = slurm.job_record()
    if slurm_job is not None:
        run["slurm"] = slurm_job
    from scalezero.models.files import sha256_file

    run["model"] = {
        "name": gw.model_alias,
        "path": str(model_path),
        "bytes": model_path.stat().st_size,
        "sha256": sha256_file(model_path),
    }
    if gw.deployments:
        # A shared gateway: the model above is its first deployment.
        run["deployments"] = {
            name: {"path": str(d.model_path), "policy": d.policy, **d.policy_params}
            for name, d in gw.deployments.items()}
        run["memory"] = {"budget_mib": gw.memory_budget_mib, "eviction": gw.eviction}
    suppressed: list[int] = []
    if plan.suppress_eog:
        with contextlib.suppress(Exception):
            from scalezero.models.gguf import eog_token_ids

            suppressed = list(eog_token_ids(model_path))
    run["suppressed_token_ids"] = suppressed
    telemetry = plan.telemetry
    run["telemetry"] = {
        "rate_hz": telemetry.rate_hz,
        "requested_backend": telemetry.backend,
        "device_info": _telemetry_info(telemetry.backend, gw.gpu_index),
    }
    run["telemetry"]["backend"] = run["telemetry"]["device_info"].get("backend", "unknown")

    sampler: subprocess.Popen | None = None
    gateway: subprocess.Popen | None = None
    records: list = []
    try:
        sampler_cmd = [
            sys.executable, "-m", "scalezero.cli", "telemetry",
            "--out", str(files["telemetry"]),
            "--rate-hz", str(telemetry.rate_hz),
            "--backend", telemetry.backend,
            "--root-pid", str(os.getpid()),
            "--instance-match", "scalezero.serving.instance",
            "--exit-with-parent",
        ]
        if gw.gpu_index is not None:
            sampler_cmd += ["--gpu-index", str(gw.gpu_index)]
        sampler = _spawn(sampler_cmd, log_dir / "telemetry.log")
        if not _wait_for_file_rows(files["telemetry"], 2, 30.0):
            raise RuntimeError("the telemetry sampler wrote no sample within 30 s")

        t_start = time.monotonic()
        time.sleep(telemetry.baseline_s)
        run["windows"]["baseline_bare"] = [t_start, time.monotonic()]
        if telemetry.context_baseline_s > 0:
            run["windows"]["baseline_context"] = _context_baseline(plan)

        port = free_tcp_port()
        base_url = f"http://127.0.0.1:{port}"
        gateway_log = log_dir / "gateway.log"
        # The gateway reads its settings from a file kept next to its log.
        settings_file = gw.model_copy(update={
            "events_csv": files["events"], "log_dir": log_dir / "instances",
        }).write(log_dir / SETTINGS_FILE)
        gateway = _spawn(serve_command(settings_file, port), gateway_log)
        min_ready = policy.initial_instances()
        _wait_gateway(base_url, gateway, min_ready, gw.instance.ready_timeout_s + 60.0,
                      gateway_log)
        run["gateway_url"] = base_url

        print(f"run: {plan.strategy or gw.policy}: replaying {len(items)} requests",
              file=sys.stderr)
        records, t0_s = asyncio.run(replay(items, base_url, gw.model_alias, suppressed,
                                           timeout_s=gw.gateway.queue_timeout_s + 120.0))
        t_last = max((r.t_end_s for r in records if r.t_end_s is not None), default=t0_s)
        if plan.tail_s > 0:
            time.sleep(plan.tail_s)
        run["windows"]["replay"] = [t0_s, max(t_last, time.monotonic() if plan.tail_s else t_last)]
        run["status"] = "ok"
    except BaseException as exc:
        run["status"] = "failed"
        run["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        if gateway is not None:
            terminate_group(gateway, grace_s=15.0)
        if sampler is not None:
            terminate_group(sampler, grace_s=5.0)
        run["ended_at"] = _now_iso()
        _finish_files(plan, run, records, items)
    return run


def _context_baseline(plan: RunSettings) -> list[float]:
    """Hold a minimal model (runtime and device context, ~no weights) for a window."""
    from scalezero.models.synthetic import ensure_probe_model
    from scalezero.serving.context_probe import LOADED_MARKER

    probe_model = ensure_probe_model(Layout.context_probe_model(plan.out_dir))
    from scalezero.system.device import default_gpu_layers, device_env

    # The probe must see the same device, with the same offload, as the instances.
    gw = plan.gateway
    n_gpu_layers = default_gpu_layers(gw.device, gw.instance.n_gpu_layers)
    env = device_env(gw.device, gw.gpu_index)
    probe = subprocess.Popen(
        [sys.executable, "-m", "scalezero.serving.context_probe", "--model", str(probe_model),
         "--n-gpu-layers", str(n_gpu_layers), "--parent-pid", str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, env={**package_env(), **env}, text=True,
    )
    try:
        assert probe.stdout is not None
        line = probe.stdout.readline()  # blocks until loaded or the probe died
        if not line.startswith(LOADED_MARKER):
            raise RuntimeError("the context-only probe did not load its model")
        t_start = time.monotonic()
        time.sleep(plan.telemetry.context_baseline_s)
        return [t_start, time.monotonic()]
    finally:
        terminate_group(probe, grace_s=5.0)


def _finish_files(plan: RunSettings, run: dict[str, Any], records: list, items: list) -> None:
    """Write what was measured, also after a failure (the log says what went wrong)."""
    files = Layout.run_files(plan.out_dir)
    if records:
        prompts = {i.request_id: i.prompt for i in items}
        try:
            counts = _count_prompt_tokens(plan.gateway.model_path,
                                          [prompts[r.request_id] for r in records])
            for record, count in zip(records, counts, strict=True):
                record.tokens_in = count
        except Exception as exc:
            run["tokens_in_error"] = str(exc)[:300]
        write_requests(records, files["requests"])
        write_tokens(records, files["tokens"])
    if not files["events"].exists():  # a gateway that never started writes none
        write_event_header(files["events"])
    files["run_json"].write_text(json.dumps(run, indent=2, sort_keys=True, default=str) + "\n")


def run_from_settings(
    settings: Mapping[str, Any],
    model_path: Path,
    trace_path: Path,
    out_dir: Path,
    keep_failed_in: Path | None = None,
    history_path: Path | None = None,
    deployments_path: Path | None = None,
) -> dict[str, Any]:
    """A measured run as the workflow describes it (see workflow/rules/common.smk).

    `history_path`: the workload's history file, learned by the policy before the run.
    `deployments_path`: a deployments file (several models behind the gateway; the
    sharing experiment); `model_path` is then not used.

    On failure the partial run files are copied to `keep_failed_in` before the error
    propagates: the workflow engine deletes the outputs of a failed job, and what a
    failed run measured is often what explains the failure.
    """
    plan = RunSettings.from_workflow(
        settings, model_path, trace_path, out_dir,
        log_dir=(keep_failed_in / "logs") if keep_failed_in else out_dir / "logs",
        history_path=history_path,
        deployments_path=deployments_path,
    )
    try:
        return measured_run(plan)
    except BaseException:
        if keep_failed_in is not None and out_dir.is_dir():
            import shutil

            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            target = keep_failed_in / f"failed-{stamp}"
            shutil.copytree(out_dir, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("logs"))
            print(f"run: failed; its partial files are kept in {target}", file=sys.stderr)
        raise


def _count_prompt_tokens(model_path: Path, prompts: list[str]) -> list[int]:
    from scalezero.serving.tokens import count_tokens_isolated

    return count_tokens_isolated(model_path, prompts)


def _run_gateway_settings(args: argparse.Namespace, params: dict[str, Any]) -> GatewaySettings:
    """The gateway of ``scalezero run``: one model (--model, --strategy) or a deployments
    file (--deployments), whose first deployment --strategy and --param then override."""
    instance = InstanceSettings(n_ctx=args.n_ctx, n_threads=args.n_threads)
    if args.deployments:
        from pydantic import ValidationError

        from scalezero.serving.cli import read_deployments

        data: dict[str, Any] = {"device": args.device, "gpu_index": args.gpu_index,
                                "instance": instance.model_dump(),
                                **read_deployments(Path(args.deployments))}
        if args.strategy:
            data["policy"] = args.strategy
        data["policy_params"] = {**data.get("policy_params", {}), **params}
        try:
            return GatewaySettings.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"--deployments: {exc}") from None
    if not args.model or not args.strategy:
        raise UserError("run: --model and --strategy are required (or --deployments)")
    model_path = Path(args.model)
    return GatewaySettings(
        model_path=model_path,
        model_name=args.model_name or model_path.stem,
        policy=args.strategy,
        policy_params=params,
        device=args.device,
        gpu_index=args.gpu_index,
        instance=instance,
    )


def run_cli(args: argparse.Namespace) -> int:
    from scalezero.serving.strategies import parse_param_pairs

    gateway = _run_gateway_settings(args, parse_param_pairs(args.param))
    plan = RunSettings(
        gateway=gateway,
        trace_path=Path(args.trace),
        history_path=Path(args.history) if args.history else None,
        out_dir=Path(args.out_dir),
        log_dir=Path(args.out_dir) / "logs",
        strategy=args.strategy or gateway.policy,
        telemetry=TelemetrySettings(
            rate_hz=args.rate_hz, backend=args.telemetry_backend, baseline_s=args.baseline_s,
            context_baseline_s=args.context_baseline_s,
        ),
        lock_path=Path(args.lock) if args.lock else None,
    )
    try:
        run = measured_run(plan)
    except (_Terminated, KeyboardInterrupt):
        print("run: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    print(f"run: {run['status']}: wrote {', '.join(RUN_FILES)} to {plan.out_dir}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="one measured run: gateway + telemetry + open-loop replay of a trace",
        description="Start the gateway with one strategy, sample telemetry, replay a trace "
        "open-loop and write requests.csv, tokens.csv, events.csv, telemetry.csv and run.json.",
    )
    parser.add_argument("--model", default=None, help="GGUF model file")
    parser.add_argument("--deployments", default=None, metavar="FILE",
                        help="YAML file of several deployments (as scalezero serve takes; "
                        "docs/api.md), instead of --model and --strategy; a trace's model "
                        "column picks each request's deployment")
    parser.add_argument("--model-name", default=None, help="name used in requests")
    parser.add_argument("--trace", required=True, help="trace CSV (scalezero workload)")
    parser.add_argument("--history", default=None, metavar="FILE",
                        help="arrivals before the trace (scalezero workload's "
                        "<workload>.history.csv), learned by the policy before the run "
                        "(default: none)")
    parser.add_argument("--strategy", default=None, choices=policies(),
                        help="policy (required unless --deployments)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="policy parameter, e.g. keep_warm_ttl_s=10 (repeatable)")
    parser.add_argument("--out-dir", required=True, help="folder for the run files")
    parser.add_argument("--device", choices=DEVICES,
                        default=field_default(GatewaySettings, "device"))
    parser.add_argument("--gpu-index", type=int, default=field_default(GatewaySettings,
                                                                       "gpu_index"))
    parser.add_argument("--n-ctx", type=int, default=field_default(InstanceSettings, "n_ctx"))
    parser.add_argument("--n-threads", type=int,
                        default=field_default(InstanceSettings, "n_threads"))
    parser.add_argument("--baseline-s", type=float,
                        default=field_default(TelemetrySettings, "baseline_s"),
                        help="bare-idle baseline before the gateway starts")
    parser.add_argument("--context-baseline-s", type=float,
                        default=field_default(TelemetrySettings, "context_baseline_s"),
                        help="then a window with a minimal model loaded (0: skip)")
    parser.add_argument("--rate-hz", type=float,
                        default=field_default(TelemetrySettings, "rate_hz"),
                        help="telemetry sample rate")
    parser.add_argument("--telemetry-backend", choices=("auto", "nvml", "host"),
                        default=field_default(TelemetrySettings, "backend"))
    parser.add_argument("--lock", default=None,
                        help="lock file shared by runs that must not overlap")
    parser.set_defaults(func=run_cli)
