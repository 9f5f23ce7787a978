"""Fitting a platform profile from measured run folders.

Every figure comes from the analysis layer's own reading of the runs
(`scalezero.analysis.aggregate.summarize_run`: the cold starts with their phases, the
per-request metrics, the summary row's per-phase energy and baselines), so a profile
and the summaries it is checked against share one definition of each quantity. Times
are taken relative to each run's replay window start.

- Cold-start phases (spawn -> runtime_ready -> model_loaded -> ready): medians over every
  completed start of every run, the warm-up starts before the replay included (the
  platform starts an instance the same way whatever asked for it).
- Stop: median of drain -> stopped.
- Runtime-warm wake: median of wake -> the same instance's next ready, over every wake
  of every run. Runs without wakes leave it unset: the profile then takes the cold start
  less its runtime phase (``PlatformProfile.wake_s``), and its notes say so.
- Warm TTFT: a least-squares line in the server-counted prompt tokens (`tokens_in`) over
  the successful warm requests, each timed from its grant (its send plus the time it
  waited in the gateway, `queue_wait_ms`, and with one request per instance at a time
  no earlier than the end of the instance's previous request), so the line is the
  service time the simulator adds after a grant.
  An instance's first request is left out (it carries the first-inference warm-up).
  A negative slope falls back to the median; a negative intercept to a line through 0.
- First-request extra: for each instance's first successful request, its first token
  (the gateway's `first_token` event) minus the later of the instance's ready and the
  request's send, minus the warm line's prediction for its prompt; median, at least 0.
- TPOT: median time per output token after the first.
- Power per state: pooled over the runs with an energy counter (energy / time of each
  phase, mean of the baselines); `runtime_warm` from the measured runtime_warm phases
  when the runs have runtime-warm time, else the context-only baseline (`context_idle`:
  a sleeping instance holds only its runtime; the notes say which), else unknown (the
  profile then falls back to `context_idle` itself, `PlatformProfile.phase_power_w`);
  without any counter the analysis layer's estimate
  (`scalezero.analysis.projections.estimate_run_energy`: power samples, else the host
  power model), labelled by its method; none without telemetry.
- Instance memory: per run the median per-instance memory (instance_mem_mib /
  n_instances) over the samples taken while an instance was up (active or idle, not
  starting); the profile takes the median over runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalezero.analysis import aggregate as ag
from scalezero.analysis.constants import ProjectionSettings, projection_settings
from scalezero.analysis.numbers import num, ratio
from scalezero.analysis.projections import estimate_run_energy
from scalezero.analysis.runs import replay_window
from scalezero.errors import UserError
from scalezero.serving.events import Lifecycle as L
from scalezero.simulate.profile import PlatformProfile

#: Cold-start phases of the profile, as analysis.energy.cold_starts names them.
START_PHASES: tuple[str, ...] = (
    "spawn_to_runtime_ready_s", "runtime_ready_to_model_loaded_s", "model_loaded_to_ready_s",
)
#: Energy phases of the analysis (analysis.energy.PHASES) that are power states of a profile.
_PHASE_STATES: tuple[str, ...] = ("cold_start", "active", "idle_loaded", "runtime_warm")
_UP_PHASES = ("active", "idle_loaded")


@dataclass
class FitRun:
    """One run folder as the fit reads it (`read_run`); read once, fit many times."""

    run_dir: Path
    summary: ag.RunSummary
    data: ag.RunData
    window: tuple[float, float]


def read_run(run_dir: Path) -> FitRun:
    data = ag.load_run(run_dir)
    return FitRun(run_dir=Path(run_dir), summary=ag.summarize_run(run_dir), data=data,
                window=replay_window(data.meta, data.requests, run_dir))


def _median(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return float(np.median(finite)) if finite else math.nan


def _finite(values: Any) -> list[float]:
    series = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype(float)
    return [float(v) for v in series if math.isfinite(v)]


# ---------------------------------------------------------------------------------------
# Timings


def _completed_starts(runs: Sequence[FitRun]) -> pd.DataFrame:
    frames = [r.summary.cold_starts for r in runs if not r.summary.cold_starts.empty]
    if not frames:
        return pd.DataFrame(columns=ag.COLD_START_FILE_COLUMNS)
    starts = pd.concat(frames, ignore_index=True)
    return starts[starts["outcome"] == "ready"]


def _event_times(run: FitRun) -> pd.DataFrame | None:
    """The run's events as (t_s, instance_id, event), or None without any."""
    events = run.data.events
    if events is None or events.empty:
        return None
    return pd.DataFrame({"t_s": pd.to_numeric(events["t_s"], errors="coerce"),
                         "instance_id": events["instance_id"].astype(str),
                         "event": events["event"].astype(str).str.strip()}).dropna()


def _stop_samples(run: FitRun) -> list[float]:
    """drain -> stopped of every instance that was drained and stopped."""
    df = _event_times(run)
    if df is None:
        return []
    first = df.groupby(["instance_id", "event"])["t_s"].min().unstack()
    if L.DRAIN not in first.columns or L.STOPPED not in first.columns:
        return []
    stop = first[L.STOPPED] - first[L.DRAIN]
    return _finite(stop[stop >= 0])


def _wake_samples(run: FitRun) -> list[float]:
    """wake -> the same instance's next ready, for every wake of the run."""
    df = _event_times(run)
    if df is None:
        return []
    df = df[df["event"].isin([str(L.WAKE), str(L.READY)])]
    out: list[float] = []
    for _, group in df.sort_values(["instance_id", "t_s"], kind="mergesort").groupby(
            "instance_id", sort=False):
        woke_s: float | None = None
        for t_s, name in zip(group["t_s"], group["event"], strict=True):
            if name == L.WAKE:
                woke_s = float(t_s)
            elif woke_s is not None:
                out.append(float(t_s) - woke_s)
                woke_s = None
    return _finite(pd.Series(out, dtype=float))


def _service_requests(run: FitRun, instance_concurrency: int) -> pd.DataFrame:
    """The run's successful requests, relative to its replay start: request_id,
    instance_id, tokens_in, t_send_rel_s, service_ttft_s, tpot_ms, cold,
    first_of_instance.

    service_ttft_s is the first token's time from the grant: the send plus the gateway's
    queue wait, and, where an instance serves one request at a time, no earlier than the
    end of that instance's previous request."""
    req = run.summary.requests
    ok = req[req["ok"].astype(bool)].copy()
    if ok.empty:
        return ok.assign(service_ttft_s=pd.Series(dtype=float),
                         first_of_instance=pd.Series(dtype=bool))
    ok = ok.sort_values(["t_send_rel_s", "request_id"], kind="mergesort")
    send = pd.to_numeric(ok["t_send_rel_s"], errors="coerce")
    wait_s = pd.to_numeric(ok["queue_wait_ms"], errors="coerce").fillna(0.0) / 1000.0
    first_rel = send + pd.to_numeric(ok["ttft_ms"], errors="coerce") / 1000.0
    grant = send + wait_s
    if instance_concurrency == 1:
        end_rel = send + pd.to_numeric(ok["e2e_ms"], errors="coerce") / 1000.0
        previous_end = end_rel.groupby(ok["instance_id"]).transform(
            lambda ends: ends.cummax().shift())
        grant = np.fmax(grant, previous_end)
    ok["service_ttft_s"] = first_rel - grant
    first = ~ok.duplicated("instance_id", keep="first") & ok["instance_id"].notna()
    ok["first_of_instance"] = first
    return ok


def fit_warm_ttft(prompt_tokens: Sequence[float], ttft_s: Sequence[float]
                  ) -> tuple[float, float]:
    """(base_s, s_per_prompt_token) of a least-squares line, coefficients >= 0.

    A negative slope (or fewer than two distinct prompt lengths) gives the median and no
    slope; a negative intercept gives the least-squares line through the origin.
    """
    x = np.asarray(prompt_tokens, dtype=float)
    y = np.asarray(ttft_s, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if y.size == 0:
        return 0.0, 0.0
    median = max(0.0, float(np.median(y)))
    if np.unique(x).size < 2:
        return median, 0.0
    slope, base = np.polyfit(x, y, 1)
    if slope < 0:
        return median, 0.0
    if base < 0:
        through_zero = float(np.dot(x, y) / np.dot(x, x)) if np.dot(x, x) > 0 else 0.0
        return 0.0, max(0.0, through_zero)
    return float(base), float(slope)


def _first_request_extras(run: FitRun, requests: pd.DataFrame, base_s: float,
                          per_token_s: float) -> list[float]:
    """Per instance: its first token beyond the later of ready and the first request's
    send, less the warm prediction for that request."""
    starts = run.summary.cold_starts
    if starts.empty:
        return []
    starts = starts[starts["outcome"] == "ready"]
    ready_rel = (starts["t_spawn_rel_s"] + starts["cold_start_s"]).to_numpy(dtype=float)
    first_token_rel = ready_rel + starts["ready_to_first_token_s"].to_numpy(dtype=float)
    firsts = requests[requests["first_of_instance"]].set_index("instance_id")
    out = []
    for instance_id, ready, first_token in zip(starts["instance_id"].astype(str), ready_rel,
                                               first_token_rel, strict=True):
        if instance_id not in firsts.index or not math.isfinite(first_token):
            continue
        row = firsts.loc[instance_id]
        sent = float(row["t_send_rel_s"])
        tokens = num(row["tokens_in"])
        predicted = base_s + per_token_s * (tokens if math.isfinite(tokens) else 0.0)
        out.append(float(first_token - max(ready, sent) - predicted))
    return out


# ---------------------------------------------------------------------------------------
# Power and memory


def _measured_row(row: Mapping[str, Any]) -> bool:
    source = str(row.get("energy_source") or "none")
    return source not in ("none", "nan") and math.isfinite(num(row.get("energy_total_j")))


def _pooled(energy_j: Sequence[float], duration_s: Sequence[float]) -> float:
    e = np.asarray(energy_j, dtype=float)
    d = np.asarray(duration_s, dtype=float)
    keep = np.isfinite(e) & np.isfinite(d) & (d > 0)
    return ratio(float(e[keep].sum()), float(d[keep].sum()))


def _power(runs: Sequence[FitRun], settings: ProjectionSettings
           ) -> tuple[dict[str, float], str, dict[str, tuple[float, ...]]]:
    """Power per state (W), the energy source and the per-run values behind them."""
    measured = [r for r in runs if _measured_row(r.summary.row)]
    samples: dict[str, list[float]] = {}
    if measured:
        rows = [r.summary.row for r in measured]
        source = "+".join(sorted({str(row["energy_source"]) for row in rows}))
        phase_energy = {p: [num(row[f"phase_{p}_energy_j"]) for row in rows]
                        for p in _PHASE_STATES}
        phase_s = {p: [num(row[f"phase_{p}_s"]) for row in rows] for p in _PHASE_STATES}
        bare = [num(row["bare_idle_power_w"]) for row in rows]
        context = [num(row["context_idle_power_w"]) for row in rows]
    else:
        estimates = []
        for r in runs:
            if r.data.telemetry is None or r.data.telemetry.empty:
                continue
            try:
                estimates.append(estimate_run_energy(r.run_dir, settings))
            except UserError:
                continue
        if not estimates:
            return {}, "none", {}
        source = "+".join(sorted({e.method for e in estimates}))
        by_phase = [e.phases.set_index("phase") for e in estimates]
        phase_energy = {p: [num(f.at[p, "energy_j"]) for f in by_phase] for p in _PHASE_STATES}
        phase_s = {p: [num(f.at[p, "duration_s"]) for f in by_phase] for p in _PHASE_STATES}
        bare = [e.bare_idle_power_w for e in estimates]
        context = []  # the estimate has no context-only baseline
    power: dict[str, float] = {}
    for name, values in (("bare_idle", bare), ("context_idle", context)):
        finite = _finite(values)
        if finite:
            power[name] = float(np.mean(finite))
            samples[f"{name}_power_w"] = finite
    for phase in _PHASE_STATES:
        value = _pooled(phase_energy[phase], phase_s[phase])
        if math.isfinite(value):
            power[phase] = value
            samples[f"{phase}_power_w"] = [ratio(e, d) for e, d in
                                           zip(phase_energy[phase], phase_s[phase], strict=True)
                                           if math.isfinite(ratio(e, d))]
    if "runtime_warm" not in power and "context_idle" in power:
        # No measured runtime-warm time: a sleeping instance holds only its runtime, which
        # is what the context-only baseline measures.
        power["runtime_warm"] = power["context_idle"]
    return power, source, {k: tuple(v) for k, v in samples.items()}


def _instance_mem_mib(run: FitRun) -> float:
    """Median per-instance memory over the samples taken while an instance was up."""
    telemetry, timeline = run.data.telemetry, run.summary.timeline
    if telemetry is None or telemetry.empty or timeline is None or timeline.empty:
        return math.nan
    if "instance_mem_mib" not in telemetry.columns or "n_instances" not in telemetry.columns:
        return math.nan
    t = pd.to_numeric(telemetry["t_s"], errors="coerce").to_numpy(dtype=float)
    mem = pd.to_numeric(telemetry["instance_mem_mib"], errors="coerce").to_numpy(dtype=float)
    n = pd.to_numeric(telemetry["n_instances"], errors="coerce").to_numpy(dtype=float)
    up = timeline[timeline["phase"].isin(_UP_PHASES)]
    inside = np.zeros(len(t), dtype=bool)
    for t0, t1 in zip(up["t0_s"], up["t1_s"], strict=True):
        inside |= (t >= t0) & (t < t1)
    keep = inside & np.isfinite(mem) & np.isfinite(n) & (n >= 1)
    return float(np.median(mem[keep] / n[keep])) if keep.any() else math.nan


# ---------------------------------------------------------------------------------------
# The profile


def _label(values: Sequence[Any], what: str) -> str:
    names = sorted({str(v) for v in values if isinstance(v, str) and v})
    return "+".join(names) if names else f"unknown {what}"


def fit_profile(run_dirs: Sequence[Path], *, name: str | None = None,
                instance_concurrency: int = 1,
                settings: ProjectionSettings | None = None) -> PlatformProfile:
    """Fit a profile (basis "measured") from run folders of one model on one device.

    `instance_concurrency` is the gateway setting the runs used (the runs cannot show
    it); `settings` holds the constants of the host power model used for runs without an
    energy counter (default: the built-in constants).
    """
    if not run_dirs:
        raise UserError("fit_profile: no run folders given")
    return profile_from_runs([read_run(Path(d)) for d in run_dirs], name=name,
                             instance_concurrency=instance_concurrency, settings=settings)


def profile_from_runs(runs: Sequence[FitRun], *, name: str | None = None,
                      instance_concurrency: int = 1,
                      settings: ProjectionSettings | None = None) -> PlatformProfile:
    """`fit_profile` on runs already read (`read_run`)."""
    if not runs:
        raise UserError("fit_profile: no runs given")
    settings = settings or projection_settings(None)

    starts = _completed_starts(runs)
    phases = {p: _finite(starts[p]) for p in START_PHASES}
    stops = [s for r in runs for s in _stop_samples(r)]
    wakes = [w for r in runs for w in _wake_samples(r)]

    requests = {r.run_dir: _service_requests(r, instance_concurrency) for r in runs}
    warm = pd.concat([req[~req["cold"].astype(bool) & ~req["first_of_instance"]]
                      for req in requests.values()], ignore_index=True)
    base_s, per_token_s = fit_warm_ttft(warm["tokens_in"].to_numpy(dtype=float),
                                        warm["service_ttft_s"].to_numpy(dtype=float))
    extras = [e for r in runs
              for e in _first_request_extras(r, requests[r.run_dir], base_s, per_token_s)]
    tpot_s = [v / 1000.0 for req in requests.values() for v in _finite(req["tpot_ms"])]
    power, energy_source, power_samples = _power(runs, settings)
    mem = [_instance_mem_mib(r) for r in runs]

    model = _label([r.summary.row.get("model") for r in runs], "model")
    device = _label([r.summary.row.get("device") for r in runs], "device")

    def median_or_zero(values: Sequence[float]) -> float:
        value = _median(values)
        return value if math.isfinite(value) else 0.0

    missing = [p for p in START_PHASES if not phases[p]]
    notes = [f"fitted from {len(runs)} run(s): {len(starts)} completed starts, "
             f"{len(stops)} stops, {len(warm)} warm requests, {len(extras)} first requests"]
    if missing:
        notes.append(f"no measured {', '.join(missing)}: taken as 0")
    if wakes:
        notes.append(f"{len(wakes)} runtime-warm wakes")
    if "runtime_warm_power_w" not in power_samples and "runtime_warm" in power:
        notes.append("no measured runtime-warm time: runtime_warm power is context_idle's")
    if energy_source == "none":
        notes.append("no energy counter and no power estimate: power unknown")
    elif not any(_measured_row(r.summary.row) for r in runs):
        notes.append(f"power estimated ({energy_source}), not measured")
    samples: dict[str, tuple[float, ...]] = {
        **{p: tuple(phases[p]) for p in START_PHASES},
        "stop_s": tuple(stops),
        **({"runtime_warm_wake_s": tuple(wakes)} if wakes else {}),
        "first_request_extra_s": tuple(extras),
        "warm_prompt_tokens": tuple(float(v) for v in warm["tokens_in"]),
        "warm_ttft_s": tuple(float(v) for v in warm["service_ttft_s"]),
        "tpot_s": tuple(tpot_s),
        "instance_mem_mib": tuple(_finite(mem)),
        **power_samples,
    }
    mem_value = _median(mem)
    return PlatformProfile(
        name=name or f"{model} on {device}",
        model=model,
        device=device,
        basis="measured",
        sources=tuple(str(r.run_dir) for r in runs),
        notes="; ".join(notes),
        spawn_to_runtime_ready_s=median_or_zero(phases["spawn_to_runtime_ready_s"]),
        runtime_ready_to_model_loaded_s=median_or_zero(phases["runtime_ready_to_model_loaded_s"]),
        model_loaded_to_ready_s=median_or_zero(phases["model_loaded_to_ready_s"]),
        first_request_extra_s=max(0.0, median_or_zero(extras)),
        stop_s=median_or_zero(stops),
        # None without wakes: the profile's documented fallback (PlatformProfile.wake_s).
        runtime_warm_wake_s=median_or_zero(wakes) if wakes else None,
        ttft_base_s=base_s,
        ttft_s_per_prompt_token=per_token_s,
        tpot_s=median_or_zero(tpot_s),
        instance_concurrency=instance_concurrency,
        power_w=power,
        energy_source=energy_source,
        instance_mem_mib=mem_value if math.isfinite(mem_value) else None,
        samples=samples,
    )


__all__ = ["START_PHASES", "FitRun", "fit_profile", "fit_warm_ttft", "profile_from_runs",
           "read_run"]
