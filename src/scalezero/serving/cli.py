"""``scalezero serve``: run the gateway on its own, in front of real clients."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from scalezero.errors import UserError
from scalezero.system.device import default_gpu_layers, device_env, require_device

DEFAULT_PORT = 8000


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default only where there is one worth showing.

    ``ArgumentDefaultsHelpFormatter`` appends "(default: None)" to options whose default
    is "unset"; those say in their help text what unset means instead.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if unset or "default:" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from scalezero.models.gguf import vocab_size
    from scalezero.serving.app import GatewayConfig
    from scalezero.serving.launcher import InstanceSpec
    from scalezero.serving.pool import PoolLimits
    from scalezero.serving.strategies import make_policy, parse_param_pairs

    model_path = Path(args.model)
    if not model_path.is_file():
        raise UserError(f"--model: file not found: {model_path}")
    params = parse_param_pairs(args.param)
    if args.keep_warm_ttl_s is not None:
        params["keep_warm_ttl_s"] = args.keep_warm_ttl_s
    if args.min_instances is not None:
        params["min_instances"] = args.min_instances
    if args.max_instances is not None:
        params["max_instances"] = args.max_instances
    policy = make_policy(args.strategy, params)
    if not args.instance_command:  # a custom command brings its own runtime
        require_device(args.device)
    n_gpu_layers = default_gpu_layers(args.device, args.n_gpu_layers)
    env = device_env(args.device, args.gpu_index)
    spec = InstanceSpec(
        model_path=model_path.resolve(),
        model_alias=args.model_name or model_path.stem,
        n_ctx=args.n_ctx,
        n_threads=args.n_threads,
        n_gpu_layers=n_gpu_layers,
        extra_args=tuple(args.instance_arg),
        ready_timeout_s=args.ready_timeout_s,
        log_dir=Path(args.log_dir) if args.log_dir else None,
        env=env,
        command=tuple(shlex.split(args.instance_command)) if args.instance_command else None,
        health_path=args.health_path,
    )
    limits = PoolLimits(
        max_queue=args.max_queue,
        cold_start_timeout_s=args.cold_start_timeout_s,
        queue_timeout_s=args.queue_timeout_s,
        instance_concurrency=args.instance_concurrency,
    )
    return GatewayConfig(
        deployment=spec.model_alias,
        spec=spec,
        policy=policy,
        limits=limits,
        events_path=Path(args.events_csv) if args.events_csv else None,
        api_key=args.api_key or os.environ.get("SCALEZERO_API_KEY") or None,
        max_body_bytes=args.max_body_bytes,
        vocab_size=vocab_size(model_path),
    )


def configure_logging(level: str) -> None:
    """The gateway's own log (errors with their request ids) on stderr, like uvicorn's."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("scalezero")
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from scalezero.serving.app import create_app

    if args.exit_with_parent:
        from scalezero.system.procs import set_parent_death_signal, start_parent_watchdog

        parent = os.getppid()
        # SIGTERM, not SIGKILL: the gateway then stops its instances on the way out.
        set_parent_death_signal(signal.SIGTERM)
        start_parent_watchdog(parent, on_orphan=lambda: os.kill(os.getpid(), signal.SIGTERM))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"scalezero serve: listening on {args.host}: reachable from other hosts",
            file=sys.stderr,
        )
    config = build_config(args)
    configure_logging(args.log_level)
    app = create_app(config)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        # The fastest event loop and HTTP parser uvicorn supports (both are dependencies).
        loop="uvloop",
        http="httptools",
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=5,
        # Clients connect directly (loopback by default): no proxy headers to trust, and
        # their middleware would cost time on every request.
        proxy_headers=False,
    )
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    from scalezero.serving.strategies import policies

    parser = subparsers.add_parser(
        "serve",
        help="run the OpenAI-compatible gateway that scales llama.cpp instances",
        description=(
            "Run the gateway on its own. Clients talk OpenAI's API to it (/v1/completions, "
            "/v1/chat/completions, /v1/models); it starts and stops llama.cpp server "
            "instances according to the strategy. Also serves /healthz, /metrics "
            "(Prometheus) and /state (JSON)."
        ),
        formatter_class=HelpFormatter,
    )
    policy = parser.add_argument_group("model and policy")
    policy.add_argument("--model", required=True, metavar="PATH",
                        help="path to the GGUF model file")
    policy.add_argument(
        "--model-name", default=None, metavar="NAME",
        help="name clients use in the 'model' field (default: the file name without .gguf)",
    )
    policy.add_argument(
        "--strategy", required=True, choices=policies(), metavar="NAME",
        help=f"scaling policy, one of: {', '.join(policies())}. always_on never "
        "stops its instance; naive stops it as soon as nothing is in flight; keep_warm "
        "stops it after --keep-warm-ttl-s idle",
    )
    policy.add_argument(
        "--keep-warm-ttl-s", type=float, default=None, metavar="S",
        help="keep_warm: seconds an idle instance stays up (policy default: 60)",
    )
    policy.add_argument("--min-instances", type=int, default=None, metavar="N",
                        help="never scale below this many instances (policy default if unset)")
    policy.add_argument("--max-instances", type=int, default=None, metavar="N",
                        help="never run more than this many instances (policy default if unset)")
    policy.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="other policy parameter (repeatable), for policies that take more")

    http = parser.add_argument_group("HTTP front")
    http.add_argument("--host", default="127.0.0.1", metavar="HOST",
                      help="address to bind; anything but loopback exposes the gateway")
    http.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="PORT",
                      help="port to bind")
    http.add_argument("--api-key", default=None, metavar="KEY",
                      help="require 'Authorization: Bearer KEY' (or 'X-API-Key: KEY') on every "
                      "endpoint but /healthz; the SCALEZERO_API_KEY environment variable "
                      "does the same (unset: no key needed)")
    http.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="N",
                      help="larger request bodies get 413")
    http.add_argument("--log-level", default="warning",
                      choices=("critical", "error", "warning", "info", "debug"),
                      help="log level of the gateway (errors carry the request id) and of "
                      "its HTTP server (uvicorn)")
    http.add_argument("--access-log", action="store_true", help="log every request")

    queue = parser.add_argument_group("queueing and timeouts")
    queue.add_argument("--instance-concurrency", type=int, default=1, metavar="N",
                       help="requests one instance serves at once")
    queue.add_argument("--max-queue", type=int, default=256, metavar="N",
                       help="requests that may wait for an instance; more get 429 with "
                       "Retry-After")
    queue.add_argument("--cold-start-timeout-s", type=float, default=180.0, metavar="S",
                       help="longest wait for a starting instance before 504")
    queue.add_argument("--queue-timeout-s", type=float, default=600.0, metavar="S",
                       help="longest wait for a busy instance before 504")
    queue.add_argument("--ready-timeout-s", type=float, default=180.0, metavar="S",
                       help="an instance not ready after this long is killed and its waiting "
                       "clients get 503")

    inst = parser.add_argument_group("instances")
    inst.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                      help="where instances run; cuda offloads all layers unless "
                      "--n-gpu-layers says otherwise")
    inst.add_argument("--gpu-index", type=int, default=None, metavar="I",
                      help="GPU for instances (sets CUDA_VISIBLE_DEVICES; unset: all visible)")
    inst.add_argument("--n-gpu-layers", type=int, default=None, metavar="N",
                      help="layers to offload (-1 = all; default: all on cuda, 0 on cpu)")
    inst.add_argument("--n-ctx", type=int, default=2048, metavar="N",
                      help="context size of each instance; also the largest max_tokens accepted")
    inst.add_argument("--n-threads", type=int, default=None, metavar="N",
                      help="CPU threads per instance (unset: llama-cpp-python's default)")
    inst.add_argument("--instance-arg", action="append", default=[], metavar="ARG",
                      help="extra argument for llama_cpp.server (repeatable)")
    inst.add_argument("--instance-command", default=None, metavar="CMD",
                      help="run CMD (split like a shell would) instead of llama-cpp-python's "
                      "server, e.g. 'llama-server -m {model} --port {port} --host {host}'; "
                      "placeholders: {python} {model} {port} {host} {n_ctx} {alias}")
    inst.add_argument("--health-path", default="/v1/models", metavar="PATH",
                      help="path polled to decide that an instance is ready")

    records = parser.add_argument_group("records")
    records.add_argument("--events-csv", default=None, metavar="PATH",
                         help="write instance lifecycle events to this CSV as they happen "
                         "(unset: kept in memory only)")
    records.add_argument("--log-dir", default=None, metavar="DIR",
                         help="write each instance's output here (unset: not kept)")
    records.add_argument("--exit-with-parent", action="store_true",
                         help="shut down when the parent process dies (used by measured runs)")
    parser.set_defaults(func=run_serve)
