"""Settings of one measured run: the gateway's, plus telemetry, baselines and identity.

The workflow describes a run as a mapping (see ``_measured_run_settings`` in
workflow/rules/common.smk); :meth:`RunSettings.from_workflow` turns it into settings,
with the defaults of the models for every key the configuration leaves out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scalezero.errors import UserError
from scalezero.serving.settings import GatewaySettings, field_default
from scalezero.system import slurm
from scalezero.system.layout import Layout


class TelemetrySettings(BaseModel):
    """The sampler and the baseline windows (config key ``telemetry``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_hz: float = Field(10.0, gt=0, le=1000, description="samples per second")
    backend: Literal["auto", "nvml", "host"] = Field(
        "auto", description="nvml (GPU), host (psutil and RAPL), or auto")
    baseline_s: float = Field(
        5.0, ge=0, description="bare-idle window (no instance) recorded before each run")
    context_baseline_s: float = Field(
        0.0, ge=0,
        description="a further window with a minimal model loaded (context only); 0 skips it")


class RunSettings(BaseModel):
    """Everything one measured run needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway: GatewaySettings
    trace_path: Path
    #: Arrivals before the replay (results/traces/<workload>.history.csv): the gateway's
    #: policy learns them before the pool starts. None: no history.
    history_path: Path | None = None
    out_dir: Path
    #: The run's logs: gateway.log, telemetry.log, the gateway's settings, instances/.
    log_dir: Path
    workload: str = ""
    #: The `platforms:` entry the run belongs to ("" without platforms).
    platform: str = ""
    strategy: str = ""
    rep: int = 1
    order_index: int = 0
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    #: Seconds the replay window stays open after the last response.
    tail_s: float = 0.0
    lock_path: Path | None = None
    config_sha256: str = ""
    seed: int | None = None
    suppress_eog: bool = True

    @classmethod
    def from_workflow(cls, settings: Mapping[str, Any], model_path: Path, trace_path: Path,
                      out_dir: Path, log_dir: Path,
                      history_path: Path | None = None,
                      deployments_path: Path | None = None) -> RunSettings:
        """A run as the workflow describes it; keys it leaves out take the models' defaults.

        With `deployments_path` (a deployments file, ``scalezero run --deployments``) the
        gateway serves its deployments, and `model_path`, ``policy`` and ``policy_params``
        are not used: the file's first deployment is the gateway's own.

        Inside a SLURM job the run uses the GPU SLURM assigned (whatever `gpu_index`
        says) and the lock of its node (runs on other nodes do not wait for it).
        """
        device = settings.get("device") or field_default(GatewaySettings, "device")
        gpu_index = settings.get("gpu_index")
        if device == "cuda":
            allocated = slurm.allocated_gpu_index()
            gpu_index = allocated if allocated is not None else gpu_index
        lock_path = Path(settings["lock_file"]) if settings.get("lock_file") else None
        node = slurm.job_node()
        if lock_path is not None and node:
            lock_path = Layout.node_lock_file(lock_path, node)
        if deployments_path is not None:
            from scalezero.serving.cli import read_deployments

            served: dict[str, Any] = read_deployments(deployments_path)
        else:
            served = {
                "model_path": model_path,
                "model_name": settings.get("model_name") or model_path.stem,
                "policy": settings["policy"],
                "policy_params": dict(settings.get("policy_params") or {}),
            }
        gateway: dict[str, Any] = {
            **served,
            "device": device,
            # Only a cuda run picks a GPU; a cpu run sees none whatever the config says.
            "gpu_index": gpu_index if device == "cuda" else None,
            "instance": dict(settings.get("instance") or {}),
            "gateway": dict(settings.get("gateway") or {}),
        }
        identity = {k: settings[k] for k in ("workload", "platform", "strategy", "rep",
                                             "order_index", "seed")
                    if settings.get(k) is not None}
        try:
            return cls(
                gateway=GatewaySettings.model_validate(gateway),
                trace_path=trace_path,
                history_path=history_path,
                out_dir=out_dir,
                log_dir=log_dir,
                telemetry=TelemetrySettings.model_validate(settings.get("telemetry") or {}),
                lock_path=lock_path,
                config_sha256=config_sha256(settings),
                **identity,
            )
        except ValidationError as exc:
            raise UserError(f"run settings: {exc}") from None


def config_sha256(config: Mapping[str, Any]) -> str:
    """Hash of the configuration as data (key order and comments do not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = [
    "RunSettings",
    "TelemetrySettings",
    "config_sha256",
]
