"""The model-sharing experiment: several models behind one gateway under a memory budget
(``shared-<eviction>``) against each model on its own (``dedicated-<policy>``).

One run folder per variant (results/sharing/runs/<variant>/, the files of any measured
run). Requests are split by deployment with the trace's ``model`` column (requests.csv
does not name it; its ``request_id`` is the trace's), instances by their id: a gateway
with several deployments writes ``<deployment>-i<n>`` (the pool's ``id_prefix``).

Eviction-caused cold start: a spawn of deployment D inside the replay window such that,
at the spawn, D had no instance starting or up (spawned and not yet drained, failed or
dead), and the latest drain of an instance of D before the spawn had reason ``evicted``
(it was stopped while idle to free memory for another deployment), not one of D's own
policy (``idle_ttl``, ``no_inflight``) or a shutdown. A deployment's first start is never
eviction-caused; a dedicated variant (no budget) has none.

Memory held is the sum of the resident memory of all instance processes (telemetry.csv
``instance_mem_mib``, the sampler's process-tree reading, see
``scalezero.telemetry.procs``) over the replay window: its time-weighted mean and its
largest sample (``scalezero.analysis.energy.memory_stats``). Telemetry does not split it
by instance, so it is reported per run only.

Energy follows the single-model runs' accounting (``scalezero.analysis.projections``):
the run's energy counter over the replay window where there is one (NVML, RAPL:
``energy_basis`` measured), else the estimate of ``estimate_run_energy`` (power samples,
or the host power model), labelled ``estimated`` with its method in ``energy_source``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalezero.analysis import energy as en
from scalezero.analysis import metrics as mx
from scalezero.analysis.aggregate import count_evictions, load_run, summarize_run
from scalezero.analysis.constants import ProjectionSettings, projection_settings
from scalezero.analysis.numbers import ratio
from scalezero.analysis.projections import estimate_run_energy
from scalezero.analysis.runs import replay_window, write_table
from scalezero.errors import UserError
from scalezero.serving.events import Lifecycle as L
from scalezero.serving.events import Reason

#: HTTP statuses the gateway answers by design when it cannot serve: queue full (429),
#: no memory or no instance in time (503), upstream timeout (504).
DESIGNED_ERRORS: tuple[int, ...] = (429, 503, 504)

_STATUS_COLUMNS: dict[str, str] = {
    "status_200": "requests answered 200",
    **{f"status_{code}": f"requests answered {code} (a designed error)"
       for code in DESIGNED_ERRORS},
    "status_other": "requests with any other outcome (no answer, other status): not "
                    "designed, should be 0",
}

#: Columns of results/sharing/summary.csv (one row per variant), with their meaning.
SUMMARY_COLUMNS: dict[str, str] = {
    "variant": "shared-<eviction> or dedicated-<policy>",
    "kind": "shared (one device under the memory budget) or dedicated (no budget: each "
            "model as if on a device of its own)",
    "eviction": "eviction policy (empty for dedicated)",
    "policy": "policy of every deployment (dedicated), or per_deployment (shared: each "
              "deployment's strategy)",
    "budget_mib": "memory budget of all instances together, MiB (empty: none)",
    "deployments": "deployments behind the gateway",
    "duration_s": "replay window length, s",
    "requests": "requests sent",
    **_STATUS_COLUMNS,
    "cold_starts": "instances spawned inside the replay window",
    "eviction_cold_starts": "of those, eviction-caused (module docstring)",
    "evictions": "idle instances stopped to free memory inside the replay window",
    "ttft_p50_ms": "median time to first token of successful requests, ms",
    "ttft_p99_ms": "p99 time to first token of successful requests, ms",
    "mem_mean_mib": "time-weighted mean memory held by all instances together over the "
                    "replay window (telemetry instance_mem_mib), MiB",
    "mem_peak_mib": "largest sample of that memory in the window, MiB",
    "instance_s_sum": "sum over instances of their starting + up time in the window, s",
    "energy_j": "energy over the replay window, J",
    "energy_per_request_j": "energy_j / requests answered 200, J",
    "energy_basis": "measured (an energy counter) or estimated (no counter)",
    "energy_source": "nvml_counter, rapl (measured); power_samples, host_model "
                     "(estimated)",
}

#: Columns of results/sharing/per_deployment.csv (variant x deployment).
PER_DEPLOYMENT_COLUMNS: dict[str, str] = {
    "variant": "as in summary.csv",
    "deployment": "deployment name (the model requests ask for)",
    "model": "model file of the deployment (stem)",
    "policy": "the deployment's policy in this variant",
    "requests": "requests that asked for the deployment",
    **_STATUS_COLUMNS,
    "cold_starts": "instances of the deployment spawned inside the replay window",
    "eviction_cold_starts": "of those, eviction-caused",
    "evictions": "instances of the deployment evicted inside the replay window",
    "ttft_p50_ms": "median TTFT of its successful requests, ms",
    "ttft_p99_ms": "p99 TTFT of its successful requests, ms",
    "instance_s": "sum over its instances of their starting + up time in the window, s",
}

SHARED, DEDICATED = "shared", "dedicated"
_INSTANCE_ID = re.compile(r"^(?P<deployment>.+)-i\d+$")
# Events that end an instance's claim on its deployment (it serves no new request).
_END_EVENTS = {str(L.DRAIN), str(L.START_FAILED), str(L.DIED), str(L.STOPPED)}


def deployment_of(instance_id: str, single: str | None = None) -> str | None:
    """The deployment of an instance id ``<deployment>-i<n>``; a gateway with one
    deployment writes bare ``i<n>``, which is `single`'s."""
    match = _INSTANCE_ID.match(str(instance_id))
    if match:
        return match.group("deployment")
    return single if re.fullmatch(r"i\d+", str(instance_id)) else None


def eviction_cold_starts(events: pd.DataFrame, window: tuple[float, float],
                         single: str | None = None) -> pd.DataFrame:
    """One row per spawn (instance_id, deployment, t_spawn_s, in_replay,
    eviction_caused), by the module docstring's definition."""
    columns = ["instance_id", "deployment", "t_spawn_s", "in_replay", "eviction_caused"]
    if events is None or events.empty:
        return pd.DataFrame(columns=columns)
    ev = events.assign(t_s=pd.to_numeric(events["t_s"], errors="coerce"),
                       reason=events["reason"].astype("string").fillna("").astype(str),
                       event=events["event"].astype(str))
    ev = ev.dropna(subset=["t_s"]).sort_values("t_s", kind="mergesort")
    live: dict[str, set[str]] = {}
    last_drain: dict[str, str] = {}
    rows = []
    for r in ev.itertuples(index=False):
        deployment = deployment_of(r.instance_id, single)
        if deployment is None:
            continue
        mine = live.setdefault(deployment, set())
        if r.event == str(L.SPAWN):
            caused = not mine and last_drain.get(deployment) == str(Reason.EVICTED)
            rows.append([str(r.instance_id), deployment, float(r.t_s),
                         window[0] <= r.t_s < window[1], caused])
            mine.add(str(r.instance_id))
        elif r.event in _END_EVENTS:
            mine.discard(str(r.instance_id))
            if r.event == str(L.DRAIN):
                last_drain[deployment] = r.reason
    return pd.DataFrame(rows, columns=columns)


def _status_counts(status: pd.Series) -> dict[str, int]:
    codes = pd.to_numeric(status, errors="coerce")
    out = {"status_200": int((codes == 200).sum())}
    for code in DESIGNED_ERRORS:
        out[f"status_{code}"] = int((codes == code).sum())
    out["status_other"] = int(len(codes) - sum(out.values()))
    return out


def _ttft(metrics: pd.DataFrame) -> dict[str, float]:
    good = metrics[metrics["ok"]]
    q = mx.percentiles(good["ttft_ms"], (50, 99))
    return {"ttft_p50_ms": q[50], "ttft_p99_ms": q[99]}


def _variant_kind(variant: str) -> str:
    return DEDICATED if variant.startswith(f"{DEDICATED}-") else SHARED


def _request_deployments(run_dir: Path, requests: pd.DataFrame, trace: pd.DataFrame,
                         first: str) -> pd.Series:
    """The deployment each request asked for (trace's model column; none: the first)."""
    if "model" not in trace.columns:
        return pd.Series(first, index=requests.index, dtype=object)
    by_id = dict(zip(pd.to_numeric(trace["request_id"]).astype(int),
                     trace["model"].astype(str), strict=True))
    ids = pd.to_numeric(requests["request_id"], errors="coerce")
    models = ids.map(lambda i: by_id.get(int(i)) if pd.notna(i) else None)
    if models.isna().any():
        raise UserError(f"{run_dir}: requests.csv has request ids the trace does not have")
    return models.astype(object)


def _deployments_of(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Deployment -> {model, policy} from run.json (the first is the run's model)."""
    model = meta.get("model") or {}
    policy = meta.get("policy") or {}
    first = str(model.get("name") or "model")
    out = {first: {"model": Path(str(model.get("path", first))).stem,
                   "policy": str(policy.get("name", ""))}}
    for name, spec in (meta.get("deployments") or {}).items():
        out[str(name)] = {"model": Path(str(spec.get("path", name))).stem,
                          "policy": str(spec.get("policy", ""))}
    return out


def _run_energy(run_dir: Path, row: Mapping[str, Any], settings: ProjectionSettings
                ) -> dict[str, Any]:
    """Measured energy where the run had a counter, else the projections' estimate."""
    total = row.get("energy_total_j", math.nan)
    if isinstance(total, (int, float)) and math.isfinite(total):
        return {"energy_j": float(total), "energy_basis": "measured",
                "energy_source": str(row.get("energy_source", ""))}
    try:
        estimate = estimate_run_energy(run_dir, settings)
    except UserError:
        return {"energy_j": math.nan, "energy_basis": "none", "energy_source": "none"}
    return {"energy_j": estimate.total_j, "energy_basis": "estimated",
            "energy_source": estimate.method}


def analyze_run(run_dir: Path, trace: pd.DataFrame,
                settings: ProjectionSettings | None = None
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One variant's run: its summary row and its per-deployment rows."""
    run_dir = Path(run_dir)
    settings = settings or projection_settings(None)
    data = load_run(run_dir)
    meta = data.meta
    variant = str(meta.get("strategy") or run_dir.name)
    window = replay_window(meta, data.requests, run_dir)
    deployments = _deployments_of(meta)
    first = next(iter(deployments))
    single = first if len(deployments) == 1 else None
    summary = summarize_run(run_dir)
    metrics = mx.request_metrics(data.requests, data.tokens)
    metrics["deployment"] = _request_deployments(run_dir, data.requests, trace, first).values
    events = data.events if data.events is not None else pd.DataFrame(
        columns=["t_s", "instance_id", "event", "state", "pid", "reason", "detail"])
    events = events.assign(reason=events["reason"].astype("string").fillna("").astype(str))
    starts = eviction_cold_starts(events, window, single)
    in_replay = starts[starts["in_replay"].astype(bool)]
    spans = en.instance_spans(events)
    spans["deployment"] = [deployment_of(i, single) for i in spans["instance_id"]]
    events_deployment = pd.Series([deployment_of(i, single) for i in events["instance_id"]],
                                  index=events.index, dtype=object)
    memory = meta.get("memory") or {}
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, np.nan)
    kind = _variant_kind(variant)
    policies = {d["policy"] for d in deployments.values()}
    row.update({
        "variant": variant,
        "kind": kind,
        "eviction": memory.get("eviction") if memory.get("budget_mib") is not None else "",
        "policy": policies.pop() if kind == DEDICATED and len(policies) == 1
        else "per_deployment",
        "budget_mib": memory.get("budget_mib", np.nan),
        "deployments": len(deployments),
        "duration_s": window[1] - window[0],
        "requests": len(metrics),
        **_status_counts(metrics["status"]),
        "cold_starts": len(in_replay),
        "eviction_cold_starts": int(in_replay["eviction_caused"].sum()),
        "evictions": count_evictions(events, window),
        **_ttft(metrics),
        "mem_mean_mib": ratio(summary.row["mem_mib_s"], window[1] - window[0]),
        "mem_peak_mib": summary.row["peak_instance_mem_mib"],
        "instance_s_sum": summary.row["instance_s_sum"],
        **_run_energy(run_dir, summary.row, settings),
    })
    row["energy_per_request_j"] = ratio(row["energy_j"], row["status_200"])
    per_deployment = []
    for name, spec in deployments.items():
        mine = metrics[metrics["deployment"] == name]
        mine_starts = in_replay[in_replay["deployment"] == name]
        mine_spans = spans[spans["deployment"] == name]
        per_deployment.append({
            "variant": variant,
            "deployment": name,
            "model": spec["model"],
            "policy": spec["policy"],
            "requests": len(mine),
            **_status_counts(mine["status"]),
            "cold_starts": len(mine_starts),
            "eviction_cold_starts": int(mine_starts["eviction_caused"].sum()),
            "evictions": count_evictions(events[events_deployment == name], window),
            **_ttft(mine),
            "instance_s": (en.instance_seconds(mine_spans, window)[1]
                           if not mine_spans.empty else 0.0),
        })
    return row, per_deployment


def analyze_sharing(run_dirs: Sequence[Path], trace_csv: Path, summary_out: Path,
                    per_deployment_out: Path, settings: ProjectionSettings | None = None
                    ) -> dict[str, Path]:
    """Write results/sharing/summary.csv and per_deployment.csv from the variants' runs
    (in the order given) and the workload's trace."""
    trace = pd.read_csv(trace_csv)
    rows, per_deployment = [], []
    for run_dir in run_dirs:
        row, details = analyze_run(Path(run_dir), trace, settings)
        rows.append(row)
        per_deployment += details
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    detail = pd.DataFrame(per_deployment, columns=list(PER_DEPLOYMENT_COLUMNS))
    return {"summary": write_table(summary, summary_out),
            "per_deployment": write_table(detail, per_deployment_out)}


def memory_over_time(run_dir: Path) -> pd.DataFrame:
    """Memory held by all instances over one run's replay window: t_rel_s (from the
    window's start) and mem_mib (telemetry instance_mem_mib, 0 with no instance)."""
    data = load_run(Path(run_dir))
    window = replay_window(data.meta, data.requests, run_dir)
    telemetry = data.telemetry
    if telemetry is None or telemetry.empty or "instance_mem_mib" not in telemetry.columns:
        return pd.DataFrame(columns=["t_rel_s", "mem_mib"])
    t = pd.to_numeric(telemetry["t_s"], errors="coerce")
    mem = pd.to_numeric(telemetry["instance_mem_mib"], errors="coerce")
    n = pd.to_numeric(telemetry.get("n_instances"), errors="coerce")
    mem = mem.mask(mem.isna() & (n == 0), 0.0)
    keep = t.between(window[0], window[1]) & mem.notna()
    return pd.DataFrame({"t_rel_s": t[keep] - window[0], "mem_mib": mem[keep]}
                        ).sort_values("t_rel_s").reset_index(drop=True)


__all__ = ["DESIGNED_ERRORS", "PER_DEPLOYMENT_COLUMNS", "SUMMARY_COLUMNS", "analyze_run",
           "analyze_sharing", "deployment_of", "eviction_cold_starts", "memory_over_time"]
