"""``scalezero serve``: run the gateway on its own, in front of real clients."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from scalezero.errors import UserError
from scalezero.serving.settings import DEVICES, ENGINES, LOG_LEVELS, GatewaySettings
from scalezero.system.device import require_device

if TYPE_CHECKING:
    from scalezero.serving.app import GatewayConfig


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


#: Options that set one field of GatewaySettings: option -> (dotted field, add_argument
#: keywords). Their defaults come from the settings models; given, they override the
#: --settings file.
_GROUPS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "model and policy": {
        "--model": ("model_path", {"metavar": "PATH"}),
        "--model-name": ("model_name", {"metavar": "NAME"}),
    },
    "HTTP front": {
        "--host": ("host", {"metavar": "HOST"}),
        "--port": ("port", {"type": int, "metavar": "PORT"}),
        "--api-key": ("api_key", {"metavar": "KEY", "help_suffix": (
            "; the SCALEZERO_API_KEY environment variable does the same")}),
        "--max-body-bytes": ("max_body_bytes", {"type": int, "metavar": "N"}),
        "--log-level": ("log_level", {"choices": LOG_LEVELS}),
        "--access-log": ("access_log", {"action": "store_true"}),
    },
    "queueing and timeouts": {
        "--instance-concurrency": ("gateway.instance_concurrency", {"type": int, "metavar": "N"}),
        "--max-queue": ("gateway.max_queue", {"type": int, "metavar": "N"}),
        "--cold-start-timeout-s": ("gateway.cold_start_timeout_s",
                                   {"type": float, "metavar": "S"}),
        "--queue-timeout-s": ("gateway.queue_timeout_s", {"type": float, "metavar": "S"}),
        "--ready-timeout-s": ("instance.ready_timeout_s", {"type": float, "metavar": "S"}),
    },
    "instances": {
        "--engine": ("instance.engine", {"choices": ENGINES}),
        "--device": ("device", {"choices": DEVICES}),
        "--gpu-index": ("gpu_index", {"type": int, "metavar": "I"}),
        "--n-gpu-layers": ("instance.n_gpu_layers", {"type": int, "metavar": "N"}),
        "--n-ctx": ("instance.n_ctx", {"type": int, "metavar": "N"}),
        "--n-threads": ("instance.n_threads", {"type": int, "metavar": "N"}),
        "--instance-arg": ("instance.extra_args", {"action": "append", "metavar": "ARG",
                                                   "help": "extra argument for "
                                                   "the engine's server (repeatable)"}),
        "--instance-command": ("instance.command", {"type": shlex.split, "metavar": "CMD",
                                                    "help": (
            "run CMD (split like a shell would) instead of the engine's server, e.g. "
            "'llama-server -m {model} --port {port} --host {host}'; placeholders: {python} "
            "{model} {port} {host} {n_ctx} {alias}")}),
        "--health-path": ("instance.health_path", {"metavar": "PATH"}),
    },
    "memory": {
        "--memory-budget-mib": ("memory_budget_mib", {"type": float, "metavar": "MIB"}),
        "--memory-wait-s": ("memory_wait_s", {"type": float, "metavar": "S"}),
        "--eviction": ("eviction", {"choices": ("lru", "longest_idle", "cost_aware")}),
    },
    "records": {
        "--events-csv": ("events_csv", {"metavar": "PATH"}),
        "--log-dir": ("log_dir", {"metavar": "DIR"}),
    },
}

#: Options that set one policy parameter.
_POLICY_OPTIONS = {
    "--keep-warm-ttl-s": ("keep_warm_ttl_s", float, "S",
                          "keep_warm: seconds an idle instance stays up"),
    "--min-instances": ("min_instances", int, "N", "never scale below this many instances"),
    "--max-instances": ("max_instances", int, "N", "never run more than this many instances"),
}


def _dest(path: str) -> str:
    return "setting:" + path


def _field(path: str) -> FieldInfo:
    model: Any = GatewaySettings
    *parents, name = path.split(".")
    for parent in parents:
        model = model.model_fields[parent].annotation
    return model.model_fields[name]


def _shown_default(path: str) -> str:
    field = _field(path)
    if field.is_required():
        return ""
    default = field.get_default(call_default_factory=True)
    if default is None or default is False or default == ():
        return ""
    return f" (default: {default})"


def _policy_default(option: str) -> str:
    """The parameter's default where every policy that takes it agrees on one."""
    from scalezero.serving.strategies import policies, policy

    name = _POLICY_OPTIONS[option][0]
    defaults = {
        field.default for policy_name in policies()
        for field in dataclasses.fields(policy(policy_name))
        if field.name == name and field.default is not dataclasses.MISSING
    }
    if len(defaults) == 1:
        return f" (policy default: {defaults.pop():g})"
    return " (policy default if unset)"


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for parent in parents:
        data = data.setdefault(parent, {})
    data[name] = value


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
        for item in error.errors()
    )


#: Keys of one entry of a deployments file that are not policy parameters.
_DEPLOYMENT_KEYS = ("model", "policy", "policy_params", "instance", "history_s", "vocab_size")
#: Top-level keys of a deployments file besides ``deployments``.
_FILE_KEYS = ("memory_budget_mib", "memory_wait_s", "eviction")


def read_deployments(path: Path) -> dict[str, Any]:
    """A deployments file (YAML) as settings data: the first deployment is the gateway's
    own (``model_path``, ``model_name``, ``policy``), the rest go into ``deployments``.

    Shape: ``deployments: {NAME: {model: PATH, policy: NAME, KEY: VALUE...}}``, where any
    key but ``model``, ``policy``, ``policy_params``, ``instance``, ``history_s`` and
    ``vocab_size`` is a policy parameter; relative paths are against the file's folder.
    Top level may also set ``memory_budget_mib``, ``memory_wait_s`` and ``eviction``.
    """
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--deployments: file not found: {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"--deployments: cannot read {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("deployments"), dict) or not (
            raw["deployments"]):
        raise UserError(f"--deployments: {path} has no 'deployments' mapping")
    unknown = set(raw) - {"deployments", *_FILE_KEYS}
    if unknown:
        raise UserError(f"--deployments: unknown keys in {path}: {', '.join(sorted(unknown))}")
    entries = []
    for name, entry in raw["deployments"].items():
        if not isinstance(entry, dict) or "model" not in entry or "policy" not in entry:
            raise UserError(f"--deployments: {name!r} needs 'model' and 'policy'")
        params = dict(entry.get("policy_params") or {})
        params.update({k: v for k, v in entry.items() if k not in _DEPLOYMENT_KEYS})
        item: dict[str, Any] = {
            "model_path": str(path.parent / Path(str(entry["model"]))),
            "policy": entry["policy"],
            "policy_params": params,
        }
        for key in ("instance", "history_s", "vocab_size"):
            if key in entry:
                item[key] = entry[key]
        entries.append((str(name), item))
    (first_name, first), *rest = entries
    data: dict[str, Any] = {key: raw[key] for key in _FILE_KEYS if key in raw}
    data.update(model_path=first["model_path"], model_name=first_name, policy=first["policy"],
                policy_params=first["policy_params"])
    for key in ("history_s", "vocab_size"):
        if key in first:
            data[key] = first[key]
    if "instance" in first:
        data["instance"] = first["instance"]
    data["deployments"] = dict(rest)
    return data


def load_settings(args: argparse.Namespace) -> GatewaySettings:
    """The --settings file (if any) with the options given on the command line over it."""
    from scalezero.serving.strategies import parse_param_pairs

    data: dict[str, Any] = {}
    if getattr(args, "settings", None):
        path = Path(args.settings)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"--settings: file not found: {path}") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"--settings: cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise UserError(f"--settings: {path} does not hold a JSON object")
    if getattr(args, "deployments", None):
        data.update(read_deployments(Path(args.deployments)))
    for options in _GROUPS.values():
        for field_path, _ in options.values():
            if hasattr(args, _dest(field_path)):
                _set(data, field_path, getattr(args, _dest(field_path)))
    if getattr(args, "strategy", None) is not None:
        data["policy"] = args.strategy
    params = dict(data.get("policy_params") or {})
    params.update(parse_param_pairs(getattr(args, "param", None) or []))
    for option, (name, *_) in _POLICY_OPTIONS.items():
        value = getattr(args, option.lstrip("-").replace("-", "_"), None)
        if value is not None:
            params[name] = value
    data["policy_params"] = params
    for key, option in (("model_path", "--model"), ("policy", "--strategy")):
        if key not in data:
            raise UserError(f"{option} is required (or {key} in the --settings file)")
    try:
        return GatewaySettings.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"settings: {_validation_message(exc)}") from None


def config_from_settings(settings: GatewaySettings) -> GatewayConfig:
    """The app's config; checks the model file and the device, fills in what is unset
    and known only here (the API key from the environment, the vocabulary's size)."""
    model_path = settings.model_path
    if not model_path.is_file():
        raise UserError(f"--model: file not found: {model_path}")
    for name, deployment in settings.deployments.items():
        if not deployment.model_path.is_file():
            raise UserError(f"deployment {name!r}: file not found: {deployment.model_path}")
        deployment.make_policy()
    policy = settings.make_policy()  # a bad name or parameter fails before the device check
    if not settings.instance.command:  # a custom command brings its own runtime
        require_device(settings.device)
    from scalezero.models.gguf import vocab_size

    deployments = {
        name: deployment.model_copy(update={
            "vocab_size": deployment.vocab_size or vocab_size(deployment.model_path)})
        for name, deployment in settings.deployments.items()
    }
    settings = settings.model_copy(update={
        "api_key": settings.api_key or os.environ.get("SCALEZERO_API_KEY") or None,
        "vocab_size": settings.vocab_size or vocab_size(model_path),
        "deployments": deployments,
    })
    try:
        config = settings.gateway_config()
    except ValueError as exc:
        raise UserError(f"settings: {exc}") from None
    return dataclasses.replace(config, policy=policy)


def build_config(args: argparse.Namespace) -> GatewayConfig:
    return config_from_settings(load_settings(args))


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
    settings = load_settings(args)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"scalezero serve: listening on {settings.host}: reachable from other hosts",
            file=sys.stderr,
        )
    config = config_from_settings(settings)
    configure_logging(settings.log_level)
    app = create_app(config)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # The fastest event loop and HTTP parser uvicorn supports (both are dependencies).
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=settings.access_log,
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
    groups = {title: parser.add_argument_group(title) for title in _GROUPS}
    model = groups["model and policy"]
    model.add_argument("--settings", default=None, metavar="FILE",
                       help="JSON file of the settings (as measured runs write them); the "
                       "options given here override it")
    model.add_argument("--deployments", default=None, metavar="FILE",
                       help="YAML file of several deployments: 'deployments: {NAME: {model: "
                       "PATH, policy: NAME, PARAM: VALUE...}}' (and optionally "
                       "memory_budget_mib, memory_wait_s, eviction); replaces --model and "
                       "--strategy")
    for title, options in _GROUPS.items():
        for option, (path, keywords) in options.items():
            keywords = dict(keywords)
            text = keywords.pop("help", None) or _field(path).description or ""
            text += keywords.pop("help_suffix", "")
            groups[title].add_argument(option, dest=_dest(path), default=argparse.SUPPRESS,
                                       help=text + _shown_default(path), **keywords)
        if title == "model and policy":
            model.add_argument(
                "--strategy", default=None, choices=policies(), metavar="NAME",
                help=f"scaling policy, one of: {', '.join(policies())}. always_on "
                "never stops its instance; naive stops it as soon as nothing is in flight; "
                "keep_warm stops it after --keep-warm-ttl-s idle",
            )
            for option, (_, kind, metavar, text) in _POLICY_OPTIONS.items():
                model.add_argument(option, type=kind, default=None, metavar=metavar,
                                   help=text + _policy_default(option))
            model.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                               help="other policy parameter (repeatable), for policies that "
                               "take more")
    groups["records"].add_argument(
        "--exit-with-parent", action="store_true",
        help="shut down when the parent process dies (used by measured runs)")
    parser.set_defaults(func=run_serve)
