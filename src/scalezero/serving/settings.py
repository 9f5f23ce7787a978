"""Settings of the gateway and its instances: every default stated once, here.

``scalezero serve`` reads them (``--settings FILE`` plus flags), measured runs and the
overhead bench write them, and the pipeline's configuration schema takes its
``instance`` and ``gateway`` keys from :class:`InstanceSettings` and
:class:`QueueSettings`. The runtime objects (:class:`InstanceSpec`, :class:`PoolLimits`,
:class:`GatewayConfig`) have no defaults of their own and are built from these.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from scalezero.serving.app import BudgetConfig, DeploymentConfig, GatewayConfig
    from scalezero.serving.launcher import InstanceSpec
    from scalezero.serving.pool import PoolLimits
    from scalezero.serving.strategies.base import Policy

DEVICES = ("cpu", "cuda")
#: The engines an instance can run: llama-cpp-python's server, or llama.cpp's own.
ENGINES = ("llama_cpp_python", "llama_server")
#: What each engine answers 200 on once its model is loaded (the readiness probe).
ENGINE_HEALTH_PATHS = {"llama_cpp_python": "/v1/models", "llama_server": "/health"}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
SETTINGS_FILE = "gateway-settings.json"


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InstanceSettings(_Settings):
    """How each llama.cpp server instance runs (config key ``instance``)."""

    engine: Literal["llama_cpp_python", "llama_server"] = Field(
        "llama_cpp_python",
        description="server each instance runs: llama-cpp-python's (Python) or llama.cpp's "
        "own llama-server (native, built by tools/setup-venv.sh from the same llama.cpp)")
    n_ctx: int = Field(
        2048, ge=16,
        description="context size of each instance; also the largest max_tokens accepted")
    n_threads: int | None = Field(
        None, ge=1, description="CPU threads per instance (unset: the engine's default)")
    n_gpu_layers: int | None = Field(
        None, ge=-1,
        description="layers to offload (-1 = all; unset: all on cuda, 0 on cpu)")
    extra_args: tuple[str, ...] = Field(
        (), description="further arguments for the engine's server (llama_cpp.server or "
        "llama-server)")
    ready_timeout_s: float = Field(
        180.0, gt=0,
        description="an instance not ready after this long is killed and its waiting "
        "clients get 503")
    command: tuple[str, ...] | None = Field(
        None,
        description="command run instead of the engine's server; placeholders: "
        "{python} {model} {port} {host} {n_ctx} {alias}")
    health_path: str | None = Field(
        None,
        description="path polled to decide that an instance is ready (unset: the engine's: "
        "/v1/models for llama_cpp_python, /health for llama_server)")
    host: str = Field("127.0.0.1", description="address each instance binds")
    stop_grace_s: float = Field(
        5.0, gt=0, description="seconds between SIGTERM and SIGKILL when stopping an instance")
    poll_interval_s: float = Field(
        0.02, gt=0, description="interval of the readiness checks while an instance starts")
    cold_tier: Literal["host_cached", "disk_cold"] = Field(
        "host_cached",
        description="where a start finds the model file: host_cached leaves the page cache "
        "as it is; disk_cold drops the file's cached pages before every start, so the "
        "weights come from storage (each start records which one it measured)")

    @property
    def readiness_path(self) -> str:
        """The path polled for readiness: ``health_path``, else the engine's."""
        return self.health_path or ENGINE_HEALTH_PATHS[self.engine]

    def spec(self, model_path: Path, model_alias: str, *, device: str, gpu_index: int | None,
             log_dir: Path | None, parallel: int = 1) -> InstanceSpec:
        """The launcher's spec; the device decides the offload and the visible GPUs.

        ``parallel`` is the pool's instance concurrency: llama-server gets that many slots.
        Raises UserError when llama-server is wanted and not there.
        """
        from scalezero.serving.launcher import InstanceSpec
        from scalezero.system.device import default_gpu_layers, device_env

        server_binary = None
        if self.engine == "llama_server" and not self.command:
            from scalezero.errors import UserError
            from scalezero.system.engine_build import native_server

            found = native_server()
            if found.path is None:
                raise UserError(f"instance.engine is llama_server, but llama-server is "
                                f"{found.reason}")
            server_binary = found.path
        return InstanceSpec(
            engine=self.engine,
            model_path=model_path,
            model_alias=model_alias,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_gpu_layers=default_gpu_layers(device, self.n_gpu_layers),
            extra_args=tuple(self.extra_args),
            host=self.host,
            ready_timeout_s=self.ready_timeout_s,
            stop_grace_s=self.stop_grace_s,
            health_path=self.readiness_path,
            poll_interval_s=self.poll_interval_s,
            log_dir=log_dir,
            env=device_env(device, gpu_index),
            command=tuple(self.command) if self.command else None,
            python=sys.executable,
            parallel=parallel,
            server_binary=server_binary,
            cold_tier=self.cold_tier,
        )


class QueueSettings(_Settings):
    """Queueing and timeouts of the gateway (config key ``gateway``)."""

    max_queue: int = Field(
        256, ge=0,
        description="requests that may wait for an instance; more get 429 with Retry-After")
    cold_start_timeout_s: float = Field(
        180.0, gt=0, description="longest wait for a starting instance before 504")
    queue_timeout_s: float = Field(
        600.0, gt=0, description="longest wait for a busy instance before 504")
    instance_concurrency: int = Field(
        1, ge=1, description="requests one instance serves at once")
    failure_check_s: float = Field(
        1.0, gt=0,
        description="after a request to an instance breaks off, how long to wait for its "
        "process to exit before concluding it is still alive")
    upstream_timeout_s: float = Field(
        600.0, gt=0, description="longest wait for the next bytes from an instance")

    def pool_limits(self) -> PoolLimits:
        from scalezero.serving.pool import PoolLimits

        return PoolLimits(
            max_queue=self.max_queue,
            cold_start_timeout_s=self.cold_start_timeout_s,
            queue_timeout_s=self.queue_timeout_s,
            instance_concurrency=self.instance_concurrency,
            failure_check_s=self.failure_check_s,
        )


class DeploymentSettings(_Settings):
    """One more model behind the gateway, beside the first (``model_path``)."""

    model_path: Path = Field(description="path to the GGUF model file")
    policy: str = Field(description="registry name of the scaling policy")
    policy_params: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="parameters of the policy (unset: its defaults)")
    history_s: tuple[float, ...] = Field(
        (), description="arrival times recorded before the run (as the gateway's history_s)")
    instance: InstanceSettings | None = Field(
        None, description="how its instances run: the keys given here over the gateway's "
        "instance settings (unset: those)")
    vocab_size: int | None = Field(
        None, ge=1, description="vocabulary size for the logit_bias check (unset: none)")

    def make_policy(self) -> Policy:
        from scalezero.serving.strategies import make_policy

        policy = make_policy(self.policy, dict(self.policy_params))
        policy.learn_history(self.history_s)
        return policy


class GatewaySettings(_Settings):
    """Everything ``scalezero serve`` runs with."""

    model_path: Path = Field(description="path to the GGUF model file")
    model_name: str | None = Field(
        None,
        description="name clients use in the 'model' field (unset: the file name without "
        ".gguf)")
    policy: str = Field(description="registry name of the scaling policy")
    policy_params: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="parameters of the policy (unset: its defaults)")
    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="where instances run; cuda offloads all layers unless n_gpu_layers says "
        "otherwise")
    gpu_index: int | None = Field(
        None, ge=0,
        description="GPU for instances (sets CUDA_VISIBLE_DEVICES; unset: all visible)")
    history_s: tuple[float, ...] = Field(
        (),
        description="arrival times recorded before the run, s on the replay's time axis "
        "(negative before its start), ascending; the policy learns from them before the "
        "pool starts (unset: none)")
    instance: InstanceSettings = Field(default_factory=InstanceSettings)
    gateway: QueueSettings = Field(default_factory=QueueSettings)
    deployments: dict[str, DeploymentSettings] = Field(
        default_factory=dict,
        description="further deployments, by the name clients use in the 'model' field, "
        "each with its own model, policy and (optionally) instance settings (unset: only "
        "the one of model_path)")
    memory_budget_mib: float | None = Field(
        None, gt=0,
        description="memory all instances together may hold, MiB: GPU memory with device "
        "cuda, host memory on cpu; a start that would exceed it first evicts idle instances "
        "(unset: unlimited)")
    memory_wait_s: float = Field(
        30.0, gt=0,
        description="longest wait of a start for memory under the budget before its "
        "requests get 503")
    eviction: str = Field(
        "lru", description="which idle instance the budget evicts first: lru, longest_idle "
        "or cost_aware")
    max_body_bytes: int = Field(1 << 20, ge=1, description="larger request bodies get 413")
    max_tokens_limit: int | None = Field(
        None, ge=1, description="largest max_tokens accepted (unset: the instance's n_ctx)")
    vocab_size: int | None = Field(
        None, ge=1,
        description="token ids at or above this are rejected in logit_bias (unset: read "
        "from the model file)")
    events_csv: Path | None = Field(
        None,
        description="write instance lifecycle events to this CSV as they happen (unset: kept "
        "in memory only)")
    log_dir: Path | None = Field(
        None, description="write each instance's output here (unset: not kept)")
    host: str = Field(
        "127.0.0.1", description="address to bind; anything but loopback exposes the gateway")
    port: int = Field(8000, ge=0, le=65535, description="port to bind")
    api_key: str | None = Field(
        None,
        description="require 'Authorization: Bearer KEY' (or 'X-API-Key: KEY') on every "
        "endpoint but /healthz (unset: no key needed)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "warning",
        description="log level of the gateway (errors carry the request id) and of its HTTP "
        "server (uvicorn)")
    access_log: bool = Field(False, description="log every request")

    @property
    def model_alias(self) -> str:
        return self.model_name or self.model_path.stem

    def make_policy(self) -> Policy:
        """The policy, having learned the history (if any)."""
        from scalezero.serving.strategies import make_policy

        policy = make_policy(self.policy, dict(self.policy_params))
        policy.learn_history(self.history_s)
        return policy

    def instance_spec(self) -> InstanceSpec:
        return self.instance.spec(
            self.model_path.resolve(), self.model_alias, device=self.device,
            gpu_index=self.gpu_index, log_dir=self.log_dir,
            parallel=self.gateway.instance_concurrency,
        )

    def pool_limits(self) -> PoolLimits:
        return self.gateway.pool_limits()

    def instance_of(self, deployment: DeploymentSettings) -> InstanceSettings:
        """A deployment's instance settings: the keys it sets over the gateway's."""
        own = deployment.instance
        if own is None:
            return self.instance
        return self.instance.model_copy(
            update={name: getattr(own, name) for name in own.model_fields_set})

    def extra_deployments(self) -> tuple[DeploymentConfig, ...]:
        """The deployments beside the first, ready for the app."""
        from scalezero.serving.app import DeploymentConfig

        names = {self.model_alias}
        found = []
        for name, deployment in self.deployments.items():
            if name in names:
                raise ValueError(f"deployment name {name!r} is used twice")
            names.add(name)
            instance = self.instance_of(deployment)
            spec = instance.spec(
                deployment.model_path.resolve(), name, device=self.device,
                gpu_index=self.gpu_index, log_dir=self.log_dir)
            found.append(DeploymentConfig(
                name=name, spec=spec, policy=deployment.make_policy(),
                vocab_size=deployment.vocab_size))
        return tuple(found)

    def budget_config(self) -> BudgetConfig | None:
        """The memory budget with each deployment's estimate (None: unlimited)."""
        if self.memory_budget_mib is None:
            return None
        from scalezero.serving.app import BudgetConfig
        from scalezero.serving.budget import gguf_estimate_mib, make_eviction_policy

        make_eviction_policy(self.eviction)  # a bad name fails here
        estimates = {self.model_alias: gguf_estimate_mib(self.model_path, self.instance.n_ctx)}
        for name, deployment in self.deployments.items():
            n_ctx = self.instance_of(deployment).n_ctx
            estimates[name] = gguf_estimate_mib(deployment.model_path, n_ctx)
        return BudgetConfig(
            budget_mib=self.memory_budget_mib, eviction=self.eviction,
            wait_s=self.memory_wait_s, device=self.device, estimates_mib=estimates)

    def gateway_config(self) -> GatewayConfig:
        from scalezero.serving.app import GatewayConfig

        spec = self.instance_spec()
        return GatewayConfig(
            deployment=spec.model_alias,
            spec=spec,
            policy=self.make_policy(),
            limits=self.pool_limits(),
            events_path=self.events_csv,
            api_key=self.api_key,
            max_body_bytes=self.max_body_bytes,
            max_tokens_limit=self.max_tokens_limit,
            vocab_size=self.vocab_size,
            upstream_timeout_s=self.gateway.upstream_timeout_s,
            extra=self.extra_deployments(),
            budget=self.budget_config(),
        )

    def write(self, path: Path) -> Path:
        """Write as JSON (what ``scalezero serve --settings`` reads); return ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def serve_command(settings_path: Path, port: int) -> list[str]:
    """``scalezero serve`` with a settings file, on ``port``, dying with its parent."""
    return [sys.executable, "-m", "scalezero.cli", "serve", "--settings", str(settings_path),
            "--port", str(port), "--exit-with-parent"]


def field_default(model: type[BaseModel], name: str) -> Any:
    """The default of one field (for command-line options and documentation)."""
    return model.model_fields[name].get_default(call_default_factory=True)


def config_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema as a self-contained fragment: ``$defs`` inlined, no titles."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        if in_properties:  # keys are field names, not schema keywords
            return {key: inline(value) for key, value in node.items()}
        if "$ref" in node:
            target = inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {**target, **{k: inline(v) for k, v in node.items() if k != "$ref"}}
        return {key: inline(value, key == "properties") for key, value in node.items()
                if key != "title"}

    return inline(schema)


__all__ = [
    "DEVICES",
    "ENGINES",
    "ENGINE_HEALTH_PATHS",
    "LOG_LEVELS",
    "SETTINGS_FILE",
    "DeploymentSettings",
    "GatewaySettings",
    "InstanceSettings",
    "QueueSettings",
    "config_schema_of",
    "field_default",
    "serve_command",
]
