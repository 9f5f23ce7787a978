"""Energy, memory and instance-time attribution on one run's timeline.

Every instant of the replay window is in exactly one phase, by precedence:

- `cold_start`:   some instance is starting ([spawn, ready), or [spawn, start_failed))
                  or waking ([wake, ready): a runtime-warm instance reloading its model
                  is a start in progress, only shorter);
- `active`:       an instance is loaded (up, [ready, stopped/died), and not runtime-warm
                  or waking) and a request is in flight (the union of [t_send, t_end)
                  over requests);
- `idle_loaded`:  an instance is loaded and nothing is in flight;
- `runtime_warm`: no instance is loaded, starting or waking, and some instance is
                  runtime-warm: its process is up with its model unloaded (events.csv
                  [sleep, next wake/died/stopped): a drain after a sleep stops the
                  process without reloading, so its exit counts here too); the device
                  holds only the runtime (on a GPU its CUDA context);
- `empty`:        no instance is up or starting.

A run without sleeps has no `runtime_warm` time, and its other phases are what they were
before that phase existed.

Energy comes from the cumulative counter `energy_mj` of telemetry.csv, never from
integrating power samples (NVML power readings see only part of the time on recent
GPUs). The counter delta of each sample interval [t_i, t_i+1) is spread uniformly over
that interval, i.e. the cumulative energy is interpolated linearly between samples, and
split exactly at phase boundaries. A negative delta (counter reset or wrap) leaves its
interval unmeasured rather than guessed; `coverage` reports the measured share.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalezero.serving.events import TIER_DISK_COLD, TIER_HOST_CACHED
from scalezero.serving.events import Lifecycle as L

PHASES: tuple[str, ...] = ("cold_start", "active", "idle_loaded", "runtime_warm", "empty")

# NVML documents +-5 % accuracy for its power and energy readings (NVML API reference,
# nvmlDeviceGetPowerUsage: "accurate to within +/- 5% of current power draw").
NVML_UNCERTAINTY_PCT = 5.0

# Lifecycle events that end a start attempt, and those that end an up instance.
_START_END_EVENTS = (L.READY, L.START_FAILED, L.DIED, L.STOPPED)
# (start_failed after ready: a runtime-warm instance's wake failed, and it is gone.)
_UP_END_EVENTS = (L.STOPPED, L.DIED, L.START_FAILED)
# Events that end a runtime-warm interval (sleep -> ...).
_RUNTIME_WARM_END_EVENTS = (L.WAKE, L.DRAIN, L.DIED, L.STOPPED)
# Events that end a runtime-warm instance's unloaded time: a drain does not reload the
# model, so the phases keep a drained sleeper runtime-warm until it has stopped.
_UNLOADED_END_EVENTS = (L.WAKE, L.DIED, L.STOPPED)

#: Tiers of process starts counted per run (events.csv ``tier`` of spawn rows).
START_TIERS: tuple[str, ...] = (TIER_HOST_CACHED, TIER_DISK_COLD)
_ANATOMY_EVENTS = (L.SPAWN, L.RUNTIME_READY, L.MODEL_LOADED, L.READY, L.FIRST_TOKEN)

Window = tuple[float, float]


# ---------------------------------------------------------------------------------------
# Instance lifecycle


def instance_spans(events_df: pd.DataFrame) -> pd.DataFrame:
    """One row per instance: lifecycle times and its starting / up intervals.

    Columns: instance_id, reason (of its spawn), t_<event>_s for spawn, runtime_ready,
    model_loaded, ready, first_token, start_failed, died, stopped (first occurrence),
    outcome (`ready`, `start_failed`, `aborted` or `starting` if still starting),
    start_begin_s, start_end_s (the starting interval; inf if never ended) and
    up_begin_s, up_end_s (the up interval; inf while still up). Intervals are NaN when
    the instance never was in that state.
    """
    events = (*_ANATOMY_EVENTS, L.START_FAILED, L.DIED, L.STOPPED)
    columns = ["instance_id", "reason", *[f"t_{e}_s" for e in events], "outcome",
               "start_begin_s", "start_end_s", "up_begin_s", "up_end_s"]
    if events_df is None or events_df.empty or "instance_id" not in events_df.columns:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(
        {
            "t_s": pd.to_numeric(events_df["t_s"], errors="coerce"),
            "instance_id": events_df["instance_id"].astype("string"),
            "event": events_df["event"].astype("string").str.strip(),
            "reason": (events_df["reason"].astype("string") if "reason" in events_df.columns
                       else pd.Series(pd.NA, index=events_df.index, dtype="string")),
        }
    ).dropna(subset=["t_s", "instance_id", "event"])
    if df.empty:
        return pd.DataFrame([], columns=columns)
    df = df.sort_values(["instance_id", "t_s"], kind="mergesort")
    # The first occurrence of each event per instance, one column per event (vectorised:
    # a simulated run has hundreds of thousands of instances).
    first = df.drop_duplicates(["instance_id", "event"], keep="first")
    ids = pd.Index(pd.unique(first["instance_id"])).sort_values()
    wide = first.pivot(index="instance_id", columns="event", values="t_s").reindex(ids)
    nan = np.full(len(ids), np.nan)
    t = {e: (wide[e].to_numpy(dtype=float) if e in wide.columns else nan) for e in events}
    spawned = first[first["event"] == L.SPAWN].set_index("instance_id")["reason"]
    reason = [pd.NA if pd.isna(r) else r for r in spawned.reindex(ids).tolist()]

    def first_end(begin: np.ndarray, enders: Sequence[L]) -> np.ndarray:
        """The first ender at or after ``begin``: inf if none, NaN without a begin."""
        candidates = np.stack([np.where(t[e] >= begin, t[e], np.inf) for e in enders])
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(begin), candidates.min(axis=0), np.nan)

    start_begin = t[L.SPAWN]
    start_end = first_end(start_begin, _START_END_EVENTS)
    outcome = np.where(np.isfinite(t[L.READY]), "ready", "starting").astype(object)
    ended = np.isfinite(start_begin) & (start_end != np.inf) & (t[L.READY] != start_end)
    outcome[ended] = np.where(t[L.START_FAILED] == start_end, "start_failed", "aborted")[ended]
    up_begin = t[L.READY]
    up_end = first_end(up_begin, _UP_END_EVENTS)
    out = pd.DataFrame({"instance_id": [str(i) for i in ids], "reason": reason,
                        **{f"t_{e}_s": t[e] for e in events}, "outcome": outcome.tolist(),
                        "start_begin_s": start_begin, "start_end_s": start_end,
                        "up_begin_s": up_begin, "up_end_s": up_end})
    return out[columns]


def _intervals(begin: pd.Series, end: pd.Series, window: Window) -> np.ndarray:
    """[begin, end) pairs clipped to the window, empty ones dropped; shape (n, 2)."""
    b = np.asarray(begin, dtype=float)
    e = np.asarray(end, dtype=float)
    keep = np.isfinite(b) & ~np.isnan(e)
    b, e = np.clip(b[keep], *window), np.clip(e[keep], *window)
    nonempty = e > b
    return np.column_stack([b[nonempty], e[nonempty]])


def _union_length_s(intervals: np.ndarray) -> float:
    if len(intervals) == 0:
        return 0.0
    order = np.argsort(intervals[:, 0], kind="mergesort")
    total = 0.0
    cur_b, cur_e = (float(x) for x in intervals[order[0]])
    for b, e in intervals[order[1:]]:
        if b > cur_e:
            total += cur_e - cur_b
            cur_b, cur_e = b, e
        else:
            cur_e = max(cur_e, e)
    return float(total + cur_e - cur_b)


def _instance_intervals(spans: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per instance, from its spawn (or ready if no spawn was seen) to the end of up."""
    begin = spans["start_begin_s"].fillna(spans["up_begin_s"])
    # An instance that never came up ends with its start attempt.
    end = spans["up_end_s"].fillna(spans["start_end_s"])
    return begin, end


def instance_seconds(spans: pd.DataFrame, window: Window) -> tuple[float, float]:
    """Instance time within the window: (time with >= 1 instance starting or up,
    sum over instances of each one's starting + up time). They differ only when
    instances overlap."""
    if spans.empty:
        return 0.0, 0.0
    begin, end = _instance_intervals(spans)
    intervals = _intervals(begin, end, window)
    return _union_length_s(intervals), float(np.sum(intervals[:, 1] - intervals[:, 0]))


def runtime_warm_intervals(events_df: pd.DataFrame | None) -> np.ndarray:
    """[sleep, end) per runtime-warm period, shape (n, 2): from each ``sleep`` event to the
    same instance's next ``wake``, ``drain``, ``died`` or ``stopped`` (inf if none came).
    Empty for runs without sleeps (and events.csv files written before the tier)."""
    return _periods(events_df, L.SLEEP, _RUNTIME_WARM_END_EVENTS)


def wake_intervals(events_df: pd.DataFrame | None) -> np.ndarray:
    """[wake, end) per wake of a runtime-warm instance, shape (n, 2): from each ``wake``
    event to the same instance's next ``ready``, ``start_failed``, ``died`` or
    ``stopped`` (inf if none came), as a start attempt ends. Empty without wakes."""
    return _periods(events_df, L.WAKE, _START_END_EVENTS)


def _periods(events_df: pd.DataFrame | None, opener: L, enders: Sequence[L]) -> np.ndarray:
    """[opener, first ender after it) per instance, shape (n, 2), inf when no ender came;
    a repeated opener before an ender keeps the first one's time. Vectorised: a simulated
    run has hundreds of thousands of instances."""
    empty = np.empty((0, 2))
    if events_df is None or events_df.empty or "event" not in events_df.columns:
        return empty
    event = events_df["event"].astype("string").str.strip()
    is_opener = (event == opener).fillna(False).to_numpy(dtype=bool)
    if not is_opener.any():
        return empty
    keep = is_opener | event.isin([str(e) for e in enders]).fillna(False).to_numpy(dtype=bool)
    df = pd.DataFrame({"t_s": pd.to_numeric(events_df["t_s"], errors="coerce").to_numpy()[keep],
                       "instance_id": events_df["instance_id"].astype(str).to_numpy()[keep],
                       "opener": is_opener[keep]})
    df = df.dropna(subset=["t_s"]).sort_values(["instance_id", "t_s"], kind="mergesort")
    instance = df["instance_id"].to_numpy()
    opens = df["opener"].to_numpy(dtype=bool)
    t_s = df["t_s"].to_numpy(dtype=float)
    same_as_prev = np.concatenate([[False], instance[1:] == instance[:-1]])
    # Drop openers that follow an opener of the same instance (the period is already open).
    first_open = opens & ~(same_as_prev & np.concatenate([[False], opens[:-1]]))
    opens_at = np.flatnonzero(first_open)
    # After dropping repeats, the row after a period's opener is its ender if it is of the
    # same instance and not an opener (skipping the repeated openers in between).
    row_kept = first_open | ~opens
    kept_index = np.flatnonzero(row_kept)
    position = np.searchsorted(kept_index, opens_at)
    next_row = np.where(position + 1 < len(kept_index),
                        kept_index[np.minimum(position + 1, len(kept_index) - 1)], -1)
    valid_next = next_row >= 0
    next_row_safe = np.where(valid_next, next_row, 0)
    ends = valid_next & (instance[next_row_safe] == instance[opens_at]) & ~opens[next_row_safe]
    end_s = np.where(ends, t_s[next_row_safe], math.inf)
    return np.column_stack([t_s[opens_at], end_s]).astype(float).reshape(-1, 2)


def runtime_warm_seconds(events_df: pd.DataFrame | None, window: Window) -> float:
    """Sum over instances of their runtime-warm (sleep -> wake or stop) time in the window."""
    periods = runtime_warm_intervals(events_df)
    if len(periods) == 0:
        return 0.0
    clipped = _intervals(pd.Series(periods[:, 0]), pd.Series(periods[:, 1]), window)
    return float(np.sum(clipped[:, 1] - clipped[:, 0])) if len(clipped) else 0.0


def start_tier_counts(events_df: pd.DataFrame | None, window: Window) -> dict[str, int]:
    """Process starts by tier (spawn rows' ``tier``: host_cached, disk_cold) and
    runtime-warm wakes (``wake`` rows) whose time falls in [window start, window end),
    as cold starts are counted. Files without a ``tier`` column count 0 of each tier."""
    counts = {f"{tier}_starts": 0 for tier in START_TIERS}
    counts["runtime_warm_wakes"] = 0
    if events_df is None or events_df.empty or "event" not in events_df.columns:
        return counts
    t_s = pd.to_numeric(events_df["t_s"], errors="coerce")
    inside = (t_s >= window[0]) & (t_s < window[1])
    event = events_df["event"].astype("string").str.strip()
    counts["runtime_warm_wakes"] = int((inside & (event == L.WAKE)).sum())
    if "tier" in events_df.columns:
        tier = events_df["tier"].astype("string").fillna("").str.strip()
        for name in START_TIERS:
            counts[f"{name}_starts"] = int((inside & (event == L.SPAWN) & (tier == name)).sum())
    return counts


# ---------------------------------------------------------------------------------------
# Phases


def _coverage_count(intervals: np.ndarray, points: np.ndarray) -> np.ndarray:
    """How many [b, e) intervals contain each point."""
    if len(intervals) == 0:
        return np.zeros(len(points), dtype=int)
    begins = np.sort(intervals[:, 0])
    ends = np.sort(intervals[:, 1])
    return np.searchsorted(begins, points, side="right") - np.searchsorted(ends, points,
                                                                           side="right")


def phase_timeline(
    spans: pd.DataFrame, requests_df: pd.DataFrame | None, window: Window,
    events_df: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The window cut into consecutive [t0_s, t1_s) segments, each with its phase.

    ``events_df`` (events.csv) gives the runtime-warm periods and wakes; without it (or
    without sleeps in it) every up instance counts as loaded."""
    w0, w1 = float(window[0]), float(window[1])
    if not w1 > w0:
        return pd.DataFrame({"t0_s": pd.Series(dtype=float), "t1_s": pd.Series(dtype=float),
                             "phase": pd.Series(dtype=object)})
    empty = np.empty((0, 2))
    starting = _intervals(spans["start_begin_s"], spans["start_end_s"], (w0, w1)) \
        if not spans.empty else empty
    up = _intervals(spans["up_begin_s"], spans["up_end_s"], (w0, w1)) \
        if not spans.empty else empty

    def clipped(periods: np.ndarray) -> np.ndarray:
        if len(periods) == 0:
            return empty
        return _intervals(pd.Series(periods[:, 0]), pd.Series(periods[:, 1]), (w0, w1))

    # Both lie inside their instance's up interval (a sleep follows a ready, a wake a
    # sleep), so an instance is loaded while up and neither unloaded nor waking.
    sleeping = clipped(_periods(events_df, L.SLEEP, _UNLOADED_END_EVENTS))
    waking = clipped(wake_intervals(events_df))
    if requests_df is not None and not requests_df.empty and "t_send_s" in requests_df:
        inflight = _intervals(pd.to_numeric(requests_df["t_send_s"], errors="coerce"),
                              pd.to_numeric(requests_df["t_end_s"], errors="coerce"),
                              (w0, w1))
    else:
        inflight = empty
    cuts = np.unique(np.concatenate([[w0, w1], starting.ravel(), up.ravel(), inflight.ravel(),
                                     sleeping.ravel(), waking.ravel()]))
    t0, t1 = cuts[:-1], cuts[1:]
    # Every interval endpoint is a cut, so a segment's midpoint classifies all of it.
    mid = (t0 + t1) / 2.0
    n_starting = _coverage_count(starting, mid) + _coverage_count(waking, mid)
    n_sleeping = _coverage_count(sleeping, mid)
    n_loaded = _coverage_count(up, mid) - n_sleeping - _coverage_count(waking, mid)
    n_inflight = _coverage_count(inflight, mid)
    phase = np.select(
        [n_starting > 0, (n_loaded > 0) & (n_inflight > 0), n_loaded > 0, n_sleeping > 0],
        ["cold_start", "active", "idle_loaded", "runtime_warm"],
        default="empty",
    )
    seg = pd.DataFrame({"t0_s": t0, "t1_s": t1, "phase": phase.astype(object)})
    # Merge neighbours in the same phase.
    new_run = seg["phase"].ne(seg["phase"].shift()).cumsum()
    merged = seg.groupby(new_run, sort=False).agg(
        t0_s=("t0_s", "first"), t1_s=("t1_s", "last"), phase=("phase", "first")
    )
    return merged.reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# Energy counter


@dataclass(frozen=True)
class _DeviceCounter:
    t_s: np.ndarray  # sample times, strictly increasing
    energy_j: np.ndarray  # cumulative measured energy at each sample, from 0
    covered_s: np.ndarray  # cumulative measured time at each sample, from 0


class EnergyMeter:
    """Cumulative energy of one run's telemetry, interpolated linearly between samples.

    With several devices in telemetry.csv, energies add up; covered time is that of
    the least covered device.
    """

    def __init__(self, devices: Sequence[_DeviceCounter], source: str) -> None:
        self._devices = list(devices)
        self.source = source

    @property
    def available(self) -> bool:
        return bool(self._devices)

    def energy_j(self, t0_s: np.ndarray | float, t1_s: np.ndarray | float) -> np.ndarray:
        """Measured energy within each [t0, t1) (J); NaN without a counter."""
        a, b = np.asarray(t0_s, dtype=float), np.asarray(t1_s, dtype=float)
        if not self._devices:
            return np.full(np.broadcast(a, b).shape, np.nan)
        total = np.zeros(np.broadcast(a, b).shape)
        for d in self._devices:
            # np.interp holds the end values outside the sampled span: no energy there.
            total = total + np.interp(b, d.t_s, d.energy_j) - np.interp(a, d.t_s, d.energy_j)
        return total

    def covered_s(self, t0_s: np.ndarray | float, t1_s: np.ndarray | float) -> np.ndarray:
        """Part of each [t0, t1) covered by valid counter deltas (s)."""
        a, b = np.asarray(t0_s, dtype=float), np.asarray(t1_s, dtype=float)
        if not self._devices:
            return np.zeros(np.broadcast(a, b).shape)
        per_device = [np.interp(b, d.t_s, d.covered_s) - np.interp(a, d.t_s, d.covered_s)
                      for d in self._devices]
        return np.minimum.reduce(per_device)

    def mean_power_w(self, window: Window | None) -> float:
        """Measured energy over the covered part of a window / that covered time."""
        if window is None or not self._devices:
            return math.nan
        covered = float(self.covered_s(window[0], window[1]))
        if covered <= 0:
            return math.nan
        return float(self.energy_j(window[0], window[1])) / covered


def energy_meter(telemetry_df: pd.DataFrame | None) -> EnergyMeter:
    """Build the counter from telemetry.csv rows (`t_s`, `energy_mj`, `energy_source`,
    `device`). Rows with source `none` or no counter value are ignored."""
    if telemetry_df is None or telemetry_df.empty or "energy_mj" not in telemetry_df.columns:
        return EnergyMeter([], "none")
    df = pd.DataFrame(
        {
            "t_s": pd.to_numeric(telemetry_df["t_s"], errors="coerce"),
            "energy_mj": pd.to_numeric(telemetry_df["energy_mj"], errors="coerce"),
            "device": (telemetry_df["device"].astype("string").fillna("")
                       if "device" in telemetry_df.columns else ""),
            "source": (telemetry_df["energy_source"].astype("string").fillna("none")
                       if "energy_source" in telemetry_df.columns else "unknown"),
        }
    )
    df = df[(df["source"] != "none") & df["t_s"].notna() & df["energy_mj"].notna()]
    if df.empty:
        return EnergyMeter([], "none")
    devices = []
    for _, group in df.groupby("device", sort=True):
        group = group.sort_values("t_s", kind="mergesort").drop_duplicates("t_s", keep="first")
        if len(group) < 2:
            continue
        t = group["t_s"].to_numpy(dtype=float)
        e_mj = group["energy_mj"].to_numpy(dtype=float)
        delta_j = np.diff(e_mj) / 1000.0
        valid = delta_j >= 0  # a negative delta is a reset or wrap: unmeasured
        devices.append(
            _DeviceCounter(
                t_s=t,
                energy_j=np.concatenate([[0.0], np.cumsum(np.where(valid, delta_j, 0.0))]),
                covered_s=np.concatenate([[0.0], np.cumsum(np.where(valid, np.diff(t), 0.0))]),
            )
        )
    sources = sorted(set(df["source"].astype(str)))
    return EnergyMeter(devices, "+".join(sources) if devices else "none")


def energy_uncertainty_pct(source: str) -> float:
    """Stated sensor accuracy: 5 % for the NVML counter, unknown (NaN) otherwise."""
    return NVML_UNCERTAINTY_PCT if source == "nvml_counter" else math.nan


def phase_energy(
    timeline: pd.DataFrame | None, meter: EnergyMeter, baseline_power_w: float
) -> pd.DataFrame:
    """Per phase (all of PHASES, fixed order): duration_s, energy_j, mean_power_w,
    above_baseline_j. Without a timeline (no events.csv) everything is NaN; without a
    counter only durations are filled. Above-baseline energy is not clipped at 0."""
    columns = ["phase", "duration_s", "energy_j", "mean_power_w", "above_baseline_j"]
    if timeline is None:
        out = pd.DataFrame({"phase": list(PHASES)})
        for c in columns[1:]:
            out[c] = np.nan
        return out
    t0 = timeline["t0_s"].to_numpy(dtype=float)
    t1 = timeline["t1_s"].to_numpy(dtype=float)
    seg = pd.DataFrame(
        {
            "phase": timeline["phase"].to_numpy(),
            "duration_s": t1 - t0,
            "energy_j": meter.energy_j(t0, t1),
            "covered_s": meter.covered_s(t0, t1),
        }
    )
    sums = seg.groupby("phase").sum(numeric_only=True, min_count=1)
    sums = sums.reindex(list(PHASES))
    sums["duration_s"] = sums["duration_s"].fillna(0.0)
    sums["covered_s"] = sums["covered_s"].fillna(0.0)
    if meter.available:
        sums["energy_j"] = sums["energy_j"].fillna(0.0)
        covered = sums["covered_s"]
        sums["mean_power_w"] = (sums["energy_j"] / covered).where(covered > 0)
        sums["above_baseline_j"] = sums["energy_j"] - baseline_power_w * covered
    else:
        sums["energy_j"] = np.nan
        sums["mean_power_w"] = np.nan
        sums["above_baseline_j"] = np.nan
    out = sums.reset_index().rename(columns={"index": "phase"})
    return out[columns]


# ---------------------------------------------------------------------------------------
# Memory


def _integral_linear(t: np.ndarray, y: np.ndarray, a: float, b: float) -> tuple[float, float]:
    """Integral of the linear interpolant of (t, y) over [a, b] ∩ [t_0, t_n] (trapezoid
    rule on the samples, with interpolated end points), and the length integrated."""
    if len(t) < 2:
        return math.nan, 0.0
    lo, hi = max(a, t[0]), min(b, t[-1])
    if not hi > lo:
        return math.nan, 0.0
    inside = (t > lo) & (t < hi)
    tt = np.concatenate([[lo], t[inside], [hi]])
    yy = np.interp(tt, t, y)
    return float(np.trapezoid(yy, tt)), hi - lo


def memory_stats(telemetry_df: pd.DataFrame | None, window: Window) -> dict[str, float]:
    """Instance memory over the window: mem_mib_s (time integral of instance_mem_mib,
    trapezoid on the samples), peak_instance_mem_mib (largest sample in the window) and
    mean_mem_used_mib (time-weighted mean of device memory in use).

    A missing instance_mem_mib counts as 0 where no instance process was alive
    (n_instances == 0); elsewhere the sample is dropped and its neighbours bridge it.
    """
    out = {"mem_mib_s": math.nan, "peak_instance_mem_mib": math.nan,
           "mean_mem_used_mib": math.nan}
    if telemetry_df is None or telemetry_df.empty or "t_s" not in telemetry_df.columns:
        return out
    w0, w1 = window

    def col(name: str) -> pd.Series:
        if name not in telemetry_df.columns:
            return pd.Series(np.nan, index=telemetry_df.index, dtype=float)
        return pd.to_numeric(telemetry_df[name], errors="coerce").astype(float)

    df = pd.DataFrame(
        {
            "t_s": col("t_s"),
            "inst": col("instance_mem_mib"),
            "n": col("n_instances"),
            "used": col("mem_used_mib"),
            "device": (telemetry_df["device"].astype("string").fillna("")
                       if "device" in telemetry_df.columns else ""),
        }
    ).dropna(subset=["t_s"])
    df["inst"] = df["inst"].mask(df["inst"].isna() & (df["n"] == 0), 0.0)
    mib_s, peaks, used_means = [], [], []
    for _, g in df.groupby("device", sort=True):
        g = g.sort_values("t_s", kind="mergesort").drop_duplicates("t_s", keep="first")
        inst = g.dropna(subset=["inst"])
        value, _ = _integral_linear(inst["t_s"].to_numpy(), inst["inst"].to_numpy(), w0, w1)
        mib_s.append(value)
        in_window = inst[(inst["t_s"] >= w0) & (inst["t_s"] <= w1)]["inst"]
        peaks.append(in_window.max() if not in_window.empty else math.nan)
        used = g.dropna(subset=["used"])
        integral, length = _integral_linear(used["t_s"].to_numpy(), used["used"].to_numpy(),
                                            w0, w1)
        used_means.append(integral / length if length > 0 else math.nan)
    if mib_s and all(math.isfinite(v) for v in mib_s):
        out["mem_mib_s"] = float(sum(mib_s))
    finite_peaks = [p for p in peaks if math.isfinite(p)]
    if finite_peaks:
        out["peak_instance_mem_mib"] = float(max(finite_peaks))
    if used_means and all(math.isfinite(v) for v in used_means):
        out["mean_mem_used_mib"] = float(sum(used_means))
    return out


# ---------------------------------------------------------------------------------------
# Cold starts

COLD_START_COLUMNS: tuple[str, ...] = (
    "instance_id",
    "reason",
    "outcome",
    "in_replay",
    "t_spawn_s",
    "spawn_to_runtime_ready_s",
    "runtime_ready_to_model_loaded_s",
    "model_loaded_to_ready_s",
    "ready_to_first_token_s",
    "cold_start_s",
    "start_attempt_s",
    "energy_j",
    "above_baseline_j",
)


def cold_starts(
    spans: pd.DataFrame, meter: EnergyMeter, baseline_power_w: float, window: Window
) -> pd.DataFrame:
    """One row per instance start (spawn seen): its anatomy, duration and energy.

    cold_start_s = spawn -> ready (NaN for a failed start); start_attempt_s = spawn ->
    end of the start attempt (ready, start_failed, ...). energy_j is the energy over the
    start attempt, above_baseline_j that minus bare-idle power times the measured time.
    in_replay says whether the spawn fell inside the replay window.
    """
    if spans.empty:
        return pd.DataFrame(columns=list(COLD_START_COLUMNS))
    s = spans[spans["t_spawn_s"].notna()].reset_index(drop=True)
    out = pd.DataFrame({"instance_id": s["instance_id"], "reason": s["reason"],
                        "outcome": s["outcome"]})
    out["in_replay"] = ((s["t_spawn_s"] >= window[0]) & (s["t_spawn_s"] < window[1])).astype(bool)
    out["t_spawn_s"] = s["t_spawn_s"]
    for a, b in itertools.pairwise(_ANATOMY_EVENTS):
        out[f"{a}_to_{b}_s"] = s[f"t_{b}_s"] - s[f"t_{a}_s"]
    out["cold_start_s"] = (s["t_ready_s"] - s["t_spawn_s"]).where(s["outcome"] == "ready")
    attempt_end = s["start_end_s"].where(np.isfinite(s["start_end_s"]))
    out["start_attempt_s"] = attempt_end - s["t_spawn_s"]
    t0 = s["t_spawn_s"].to_numpy(dtype=float)
    t1 = attempt_end.to_numpy(dtype=float)
    if meter.available:
        energy = meter.energy_j(t0, t1)
        covered = meter.covered_s(t0, t1)
        # Unknown when the attempt never ended or the telemetry did not see it.
        energy = np.where(np.isfinite(t1) & (covered > 0), energy, np.nan)
        out["energy_j"] = energy
        out["above_baseline_j"] = energy - baseline_power_w * covered
    else:
        out["energy_j"] = np.nan
        out["above_baseline_j"] = np.nan
    return out[list(COLD_START_COLUMNS)]


def break_even_ttl_s(
    cold_start_above_baseline_j: float, idle_loaded_power_w: float, bare_idle_power_w: float
) -> float:
    """Keep-warm TTL at which idling costs as much energy as one cold start:
    cold-start energy above bare idle / (idle-loaded power - bare-idle power).
    NaN when an input is unknown, the denominator is <= 0 or the energy is < 0."""
    denominator = idle_loaded_power_w - bare_idle_power_w
    if not (math.isfinite(cold_start_above_baseline_j) and math.isfinite(denominator)):
        return math.nan
    if denominator <= 0 or cold_start_above_baseline_j < 0:
        return math.nan
    return cold_start_above_baseline_j / denominator
