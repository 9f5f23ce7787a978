"""Build, write, read and summarise request traces (results/traces/<workload>.csv)."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.random import PCG64, Generator, SeedSequence

from scalezero.errors import UserError
from scalezero.workload import arrivals, sources
from scalezero.workload.spec import validate_spec
from scalezero.workload.text import draw_lengths, make_prompts, make_prompts_of_lengths

TRACE_COLUMNS: tuple[str, ...] = ("request_id", "t_sched_s", "max_tokens", "prompt")
#: Optional last column of a trace with a model mix: the deployment each request asks for.
#: Traces without it replay to the gateway's one deployment.
MODEL_COLUMN = "model"
#: Popularity laws of ``models: {popularity: ..., models: [...]}``.
POPULARITIES = ("zipf", "uniform")
#: The history file (results/traces/<workload>.history.csv): arrivals before the replay.
HISTORY_COLUMNS: tuple[str, ...] = ("t_sched_s",)

# A trace is replayed request by request and held in memory with its prompts; beyond
# this size a configuration is almost surely a unit mistake (ms for s, per-day rates).
MAX_TRACE_REQUESTS = 5_000_000

# Default burst threshold of trace_summary: a gap this many times the median gap
# separates bursts. A heuristic for describing unknown traces; callers who know the
# keep-warm TTL or idle gap should pass it instead.
GAP_THRESHOLD_MEDIANS = 10.0


def _streams(seed: int) -> tuple[Generator, Generator, Generator]:
    # Independent streams for arrivals, output lengths and prompts: changing the prompt
    # length, say, leaves the arrival times of the same seed untouched.
    arrivals_ss, tokens_ss, prompts_ss = SeedSequence(seed).spawn(3)
    return Generator(PCG64(arrivals_ss)), Generator(PCG64(tokens_ss)), Generator(PCG64(prompts_ss))


def _models_stream(seed: int) -> Generator:
    # A fifth stream picks each request's model; spawn(5)'s first four children are
    # spawn(4)'s, so a model mix leaves the arrivals, lengths and prompts unchanged.
    return Generator(PCG64(SeedSequence(seed).spawn(5)[4]))


def _history_stream(seed: int) -> Generator:
    # A fourth stream thins the training part. spawn(4)'s first three children are
    # spawn(3)'s, so a training part leaves the measured window's trace unchanged.
    return Generator(PCG64(SeedSequence(seed).spawn(4)[3]))


def _check_size(workload: str, expected_requests: float) -> None:
    if expected_requests > MAX_TRACE_REQUESTS:
        raise UserError(
            f"workload {workload!r}: about {expected_requests:,.0f} requests expected, more "
            f"than the limit of {MAX_TRACE_REQUESTS:,}; check rates and durations, "
            "or set max_requests"
        )


def _azure_arrivals_us(
    workload: str, p: Mapping[str, Any], path: Path, rng: Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    selection = sources.read_azure_counts(
        workload, path, p["function"], p["app"], p["start_minute"], p["minutes"]
    )
    if arrivals.to_us(60.0 / p["time_compression"]) < 1:
        raise UserError(
            f"workload {workload!r}: key 'time_compression' makes a minute shorter than 1 us"
        )
    counts = selection.counts
    if p["arrivals_within_minute"] == "poisson":
        counts = arrivals.poisson_counts(rng, counts)
    if p["max_requests"] is not None:
        # Minutes after the one that reaches max_requests cannot contribute (minutes are
        # disjoint and ordered); dropping them keeps the same draws for the rest.
        reached = np.flatnonzero(np.cumsum(counts) >= p["max_requests"])
        if reached.size:
            counts = counts[: reached[0] + 1]
    _check_size(workload, float(counts.sum()))
    bounds_us = arrivals.minute_bounds_us(counts.size, p["time_compression"])
    times_us = arrivals.per_minute_us(
        rng, counts, bounds_us, even=p["arrivals_within_minute"] == "even"
    )
    info = {
        "function": selection.function,
        "app": selection.app,
        "owner": selection.owner,
        "trigger": selection.trigger,
        "invocations": int(selection.counts.sum()),
    }
    return times_us, info


@dataclass
class _LLMRequests:
    times_us: np.ndarray
    max_tokens: np.ndarray
    prompt_words: np.ndarray
    info: dict[str, Any]
    history_us: np.ndarray  # the thinned training part, negative, replay microseconds


def _map_tokens(
    values: np.ndarray, window_values: np.ndarray, mapping: str, limit: int
) -> tuple[np.ndarray, dict[str, Any]]:
    # clamp: min(value, limit); scale: one factor for the whole window, chosen so that
    # the window's largest value lands on the limit. Both keep every count >= 1.
    record: dict[str, Any]
    if mapping == "clamp":
        record = {"clamped": int((values > limit).sum()), "scale": None}
        scaled = values
    else:
        peak = int(window_values.max())
        factor = limit / peak if peak > 0 else 1.0
        record = {"clamped": None, "scale": factor}
        scaled = np.rint(values * factor).astype(np.int64)
    record["raised_to_1"] = int((scaled < 1).sum())
    return np.clip(scaled, 1, limit), record


def _azure_llm_requests(
    workload: str, p: Mapping[str, Any], path: Path, rng: Generator, history_rng: Generator
) -> _LLMRequests:
    window = sources.read_azure_llm(
        workload, path, p["window_start_s"], p["window_s"], p["training_s"]
    )
    rows = int(window.offsets_us.size)
    # Rate of the window as replayed (time_scale compresses it).
    replay_length_s = window.length_s / p["time_scale"]
    window_rate_rps = rows / replay_length_s if replay_length_s > 0 else None
    keep_probability = 1.0 if p["keep_probability"] is None else p["keep_probability"]
    if p["target_rate_rps"] is not None:
        keep_probability = (
            min(1.0, p["target_rate_rps"] / window_rate_rps) if window_rate_rps else 1.0
        )
    # One draw per request in the window, whatever p is, so the kept set of a seed
    # depends on p only through the threshold.
    kept = np.flatnonzero(rng.random(rows) < keep_probability)
    kept_rows = int(kept.size)
    if p["max_requests"] is not None:
        kept = kept[: p["max_requests"]]
    if kept.size == 0:
        raise UserError(
            f"workload {workload!r}: thinning kept none of the {rows} requests in the "
            f"window (keep probability {keep_probability:.6g}); raise it or widen the window"
        )
    times_us = np.floor(window.offsets_us[kept] / p["time_scale"]).astype(np.int64)
    # The training part: the same keep probability and time scale as the window, its own
    # stream; max_requests limits the measured window only.
    training = window.training_offsets_us
    history_kept = training[history_rng.random(training.size) < keep_probability]
    history_us = np.floor(history_kept / p["time_scale"]).astype(np.int64)
    prompt_words, prompt_map = _map_tokens(
        window.context_tokens[kept], window.context_tokens, p["token_mapping"],
        p["max_prompt_tokens"],
    )
    max_tokens, output_map = _map_tokens(
        window.generated_tokens[kept], window.generated_tokens, p["token_mapping"],
        p["max_output_tokens"],
    )
    info = {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "first_timestamp": window.first_timestamp,
        "rows_in_file": window.rows_in_file,
        "file_span_s": window.span_s,
        "window_start_s": p["window_start_s"],
        "window_s": p["window_s"],
        "window_length_s": window.length_s,
        "rows_in_window": rows,
        "window_rate_rps": window_rate_rps,
        "target_rate_rps": p["target_rate_rps"],
        "keep_probability": keep_probability,
        "kept_rows": kept_rows,
        "requests": int(kept.size),
        "time_scale": p["time_scale"],
        "token_mapping": p["token_mapping"],
        "max_prompt_tokens": p["max_prompt_tokens"],
        "max_output_tokens": p["max_output_tokens"],
        "prompt_clamped": prompt_map["clamped"],
        "output_clamped": output_map["clamped"],
        "prompt_scale": prompt_map["scale"],
        "output_scale": output_map["scale"],
        "prompt_raised_to_1": prompt_map["raised_to_1"],
        "output_raised_to_1": output_map["raised_to_1"],
        "training_s": p["training_s"],
        "training_rows": int(training.size),
        "training_length_s": window.training_length_s,
    }
    return _LLMRequests(times_us, max_tokens, prompt_words, info, history_us)


def generate_trace(
    name: str, spec: Mapping[str, Any], base_dir: Path | None = None
) -> pd.DataFrame:
    """Build the trace of workload `name` from its config entry `spec`.

    Returns a frame with TRACE_COLUMNS, sorted by t_sched_s (whole microseconds),
    request_id 0..n-1. Relative paths in spec resolve against base_dir (default: the
    current directory). Raises UserError for an invalid spec or unreadable input.
    Source details (the chosen Azure function, ...) are left in `df.attrs["workload"]`,
    and the history (arrival times before the replay start, negative seconds in whole
    microseconds, ascending; empty unless an azure_llm workload sets training_s) in
    `df.attrs["history_s"]`.
    """
    if isinstance(spec, Mapping) and "models" in spec:
        return _model_mix(name, spec, base_dir)
    p = validate_spec(name, spec)
    kind = p["kind"]
    arrivals_rng, tokens_rng, prompts_rng = _streams(p["seed"])
    history_us = np.zeros(0, dtype=np.int64)
    recorded: sources.RecordedTrace | None = None
    llm: _LLMRequests | None = None
    info: dict[str, Any] = {}

    if kind == "poisson":
        _check_size(name, p["rate_rps"] * p["duration_s"])
        times_us = arrivals.poisson_us(arrivals_rng, p["rate_rps"], p["duration_s"])
    elif kind == "gamma":
        _check_size(name, p["rate_rps"] * p["duration_s"])
        times_us = arrivals.gamma_us(arrivals_rng, p["rate_rps"], p["burstiness"], p["duration_s"])
    elif kind == "bursty":
        _check_size(name, p["bursts"] * (1 + p["burst_rate_rps"] * p["burst_duration_s"]))
        if arrivals.to_us(p["burst_duration_s"]) < 1:
            raise UserError(f"workload {name!r}: key 'burst_duration_s' is below 1 us")
        times_us = arrivals.bursty_us(
            arrivals_rng,
            p["bursts"],
            p["burst_duration_s"],
            p["burst_rate_rps"],
            p["idle_gap_s"],
            p["first_burst_at_s"],
        )
    elif kind == "trace_csv":
        path = sources.resolve_path(name, p["path"], base_dir)
        recorded = sources.read_trace_csv(name, path, p["time_scale"], p["start_offset_s"])
        times_us = recorded.times_us
        info = {"path": str(path)}
    elif kind == "azure_functions":
        path = sources.resolve_path(name, p["path"], base_dir)
        times_us, info = _azure_arrivals_us(name, p, path, arrivals_rng)
        info["path"] = str(path)
    elif kind == "azure_llm":
        path = sources.resolve_path(name, p["path"], base_dir)
        # The arrivals stream, unused by a recorded trace, does the thinning.
        llm = _azure_llm_requests(name, p, path, arrivals_rng, _history_stream(p["seed"]))
        times_us = llm.times_us
        history_us = llm.history_us
        info = {"path": str(path), **llm.info}
    else:  # validate_spec admits only the kinds above
        raise AssertionError(kind)

    n = int(times_us.size) if p["max_requests"] is None else min(times_us.size, p["max_requests"])
    if n == 0:
        raise UserError(f"workload {name!r}: the configuration produces no requests")
    times_us = times_us[:n]

    prompts: list[str | None] = [None] * n
    if llm is not None:
        # The trace's counts: output tokens as max_tokens, prompt tokens as word counts.
        max_tokens = llm.max_tokens[:n]
        made, info["duplicate_prompts"] = make_prompts_of_lengths(
            prompts_rng, llm.prompt_words[:n]
        )
        prompts = list(made)
    else:
        max_tokens = draw_lengths(tokens_rng, n, *p["max_tokens"])
    if recorded is not None:
        given = np.isfinite(recorded.max_tokens[:n])
        max_tokens[given] = recorded.max_tokens[:n][given].astype(np.int64)
        prompts = list(recorded.prompts[:n])
    missing = [i for i, prompt in enumerate(prompts) if prompt is None]
    if missing:
        min_words, max_words = p["prompt_words"]
        made = make_prompts(prompts_rng, len(missing), min_words, max_words, workload=name)
        for i, prompt in zip(missing, made, strict=True):
            prompts[i] = prompt

    df = pd.DataFrame(
        {
            "request_id": np.arange(n, dtype=np.int64),
            "t_sched_s": times_us / arrivals.US_PER_S,
            "max_tokens": max_tokens.astype(np.int64),
            "prompt": pd.array(prompts, dtype="str"),
        }
    )
    df.attrs["workload"] = {"name": name, "kind": kind, **info}
    df.attrs["history_s"] = [float(t) for t in history_us / arrivals.US_PER_S]
    return df


def _model_mix(name: str, spec: Mapping[str, Any], base_dir: Path | None) -> pd.DataFrame:
    """A trace whose requests ask for several models (``models:`` key).

    Either ``{popularity: zipf, s: S, models: [A, B, ...]}``: one arrival process, each
    request's model drawn independently, the k-th model with weight 1/k^s (``uniform``:
    equal weights); or ``{A: {...}, B: {...}}``: one arrival process per model, each the
    workload's keys with the model's entry over them (a model without ``seed`` gets the
    workload's seed plus its position), merged in time order (ties: model order).
    """
    base = {key: value for key, value in spec.items() if key != "models"}
    mix = spec["models"]
    if not isinstance(mix, Mapping) or not mix:
        raise UserError(f"workload {name!r}: key 'models' must be a non-empty mapping")
    if "popularity" in mix:
        return _popularity_mix(name, base, mix, base_dir)
    frames = []
    histories: list[float] = []
    infos = {}
    for index, (model, entry) in enumerate(mix.items()):
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            raise UserError(f"workload {name!r}: models.{model} must be a mapping")
        sub = {**base, **entry}
        if "seed" not in entry and isinstance(base.get("seed"), int):
            sub["seed"] = base["seed"] + index
        df = generate_trace(f"{name}.{model}", sub, base_dir)
        df[MODEL_COLUMN] = str(model)
        df["_order"] = index
        frames.append(df)
        histories += df.attrs.get("history_s", [])
        infos[str(model)] = df.attrs.get("workload", {})
    merged = pd.concat(frames, ignore_index=True)
    merged = merged.sort_values(["t_sched_s", "_order", "request_id"], kind="mergesort")
    merged = merged.drop(columns="_order").reset_index(drop=True)
    merged["request_id"] = np.arange(len(merged), dtype=np.int64)
    merged["prompt"] = merged["prompt"].astype("str")
    merged.attrs["workload"] = {"name": name, "kind": "model_mix", "models": infos}
    merged.attrs["history_s"] = sorted(histories)
    return merged


def _popularity_mix(
    name: str, base: dict[str, Any], mix: Mapping[str, Any], base_dir: Path | None
) -> pd.DataFrame:
    law = mix["popularity"]
    models = mix.get("models")
    unknown = sorted(set(mix) - {"popularity", "s", "models"})
    if unknown:
        raise UserError(f"workload {name!r}: models.{unknown[0]} is not a popularity setting; "
                        "allowed: popularity, s, models")
    if law not in POPULARITIES:
        raise UserError(f"workload {name!r}: models.popularity must be one of "
                        f"{list(POPULARITIES)}, got {law!r}")
    if not isinstance(models, list) or not models or len(set(map(str, models))) != len(models):
        raise UserError(f"workload {name!r}: models.models must be a list of distinct names")
    exponent = mix.get("s", 1.0)
    if isinstance(exponent, bool) or not isinstance(exponent, int | float) or exponent < 0:
        raise UserError(f"workload {name!r}: models.s must be a number >= 0")
    df = generate_trace(name, base, base_dir)
    p = validate_spec(name, base)
    ranks = np.arange(1, len(models) + 1, dtype=float)
    weights = ranks ** -float(exponent) if law == "zipf" else np.ones_like(ranks)
    picks = _models_stream(p["seed"]).choice(len(models), size=len(df), p=weights / weights.sum())
    df[MODEL_COLUMN] = [str(models[i]) for i in picks]
    df.attrs["workload"] = {**df.attrs.get("workload", {}), "popularity": law,
                            "s": float(exponent), "models": [str(m) for m in models]}
    return df


def history_summary(history_s: Sequence[float]) -> dict[str, Any]:
    """How much history there is: requests, and span_s, the replay seconds from the
    first history arrival to the replay start (0 without history)."""
    return {
        "requests": len(history_s),
        "span_s": float(-min(history_s)) if len(history_s) else 0.0,
    }


def trace_record(df: pd.DataFrame, base_dir: Path | None = None) -> dict[str, Any]:
    """What a trace was made from, for results/traces/<workload>.json.

    Keys: workload (the source details of `df.attrs["workload"]`; a source path inside
    base_dir, default the current directory, is written relative to it), summary
    (trace_summary), training_s (as configured, trace seconds; 0 for kinds without a
    training part), training_requests and training_span_s (history_summary of
    `df.attrs["history_s"]`, replay seconds).
    """
    workload = dict(df.attrs.get("workload", {}))
    if "path" in workload and Path(workload["path"]).is_absolute():
        # Normalised, symlinks kept: a link inside the checkout names the checkout's file.
        base = Path(os.path.abspath(base_dir or Path.cwd()))
        source = Path(os.path.abspath(workload["path"]))
        if source.is_relative_to(base):
            workload["path"] = str(source.relative_to(base))
    history = history_summary(df.attrs.get("history_s", []))
    return {
        "workload": workload,
        "summary": trace_summary(df),
        "training_s": float(workload.get("training_s", 0.0)),
        "training_requests": history["requests"],
        "training_span_s": history["span_s"],
    }


def write_trace(df: pd.DataFrame, path: Path) -> None:
    """Write a trace CSV with fixed formatting (times to 1 us, '\\n' line ends, UTF-8),
    so that equal frames give equal bytes. The file appears atomically."""
    missing = [c for c in TRACE_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"trace for {str(path)!r} lacks columns {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with_model = MODEL_COLUMN in df.columns
    models = df[MODEL_COLUMN].astype(str).tolist() if with_model else [None] * len(df)
    rows = zip(
        df["request_id"].astype("int64").tolist(),
        df["t_sched_s"].astype("float64").tolist(),
        df["max_tokens"].astype("int64").tolist(),
        df["prompt"].astype(str).tolist(),
        models,
        strict=True,
    )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow((*TRACE_COLUMNS, MODEL_COLUMN) if with_model else TRACE_COLUMNS)
            for request_id, t_s, max_tokens, prompt, model in rows:
                row = (request_id, f"{t_s:.6f}", max_tokens, prompt)
                writer.writerow((*row, model) if with_model else row)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_history(history_s: Sequence[float], path: Path) -> None:
    """Write history arrival times (column t_sched_s, 6 decimals, like a trace); an
    empty history gives the header only. The file appears atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(",".join(HISTORY_COLUMNS) + "\n")
            for t_s in history_s:
                handle.write(f"{float(t_s):.6f}\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_history(path: Path) -> list[float]:
    """Read a history file written by write_history: arrival times, s, ascending."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise UserError(f"no such history file {str(path)!r}") from None
    if not rows or tuple(rows[0]) != HISTORY_COLUMNS:
        raise UserError(f"{str(path)!r} is not a history CSV: needs the header "
                        f"{','.join(HISTORY_COLUMNS)}")
    times_s: list[float] = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            (value,) = row
            t_s = float(value)
        except ValueError:
            raise UserError(f"{str(path)!r} line {line}: not a time: {row!r}") from None
        if not math.isfinite(t_s) or (times_s and t_s < times_s[-1]):
            raise UserError(f"{str(path)!r} line {line}: times must be finite and ascending")
        times_s.append(t_s)
    return times_s


def read_trace(path: Path) -> pd.DataFrame:
    """Read a trace CSV written by write_trace (prompts stay text, even 'NA'); the
    ``model`` column, when there, is kept as the last column."""
    try:
        df = pd.read_csv(
            path,
            dtype={
                "request_id": "int64",
                "t_sched_s": "float64",
                "max_tokens": "int64",
                "prompt": "str",
                MODEL_COLUMN: "str",
            },
            keep_default_na=False,
        )
    except FileNotFoundError:
        raise UserError(f"no such trace file {str(path)!r}") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{str(path)!r} is not a trace CSV: {exc}") from exc
    if tuple(df.columns) not in (TRACE_COLUMNS, (*TRACE_COLUMNS, MODEL_COLUMN)):
        raise UserError(
            f"{str(path)!r} has columns {list(df.columns)}, expected {list(TRACE_COLUMNS)}"
        )
    return df


def _json_float(value: float) -> float | None:
    # JSON-friendly: plain float, None for undefined (NaN) values.
    return None if value is None or not math.isfinite(value) else float(value)


def trace_summary(df: pd.DataFrame, gap_threshold_s: float | None = None) -> dict[str, Any]:
    """Describe a trace's arrival pattern. All values are plain Python numbers or None.

    Gaps are differences of consecutive t_sched_s. A gap longer than gap_threshold_s
    separates two bursts; pass the keep-warm TTL to count the idle periods a keep-warm
    instance would time out in (ignoring service time), or a bursty workload's
    idle_gap_s to recover its bursts. Default threshold: 10 x the median gap (or
    10 x the mean gap when the median is 0).

    Keys: n_requests, first_s, last_s, span_s (last - first), mean_rate_rps
    ((n - 1) / span_s, i.e. 1 / mean gap), mean_gap_s, median_gap_s, max_gap_s,
    gap_cv2 (squared coefficient of variation of gaps; 1 for Poisson),
    gap_threshold_s, n_long_gaps, n_bursts, max_gap_within_bursts_s, long_gaps_s
    (the long gaps, in trace order), max_tokens_{min,mean,max}, prompt_words_mean.
    """
    # Traces carry whole microseconds; computing gaps on that grid keeps them exact.
    t_us = np.sort(np.round(df["t_sched_s"].to_numpy(dtype=float) * arrivals.US_PER_S))
    t_s = t_us / arrivals.US_PER_S
    n = int(t_s.size)
    gaps = np.diff(t_us) / arrivals.US_PER_S
    span_s = float(t_us[-1] - t_us[0]) / arrivals.US_PER_S if n else math.nan
    if gap_threshold_s is None and gaps.size:
        median = float(np.median(gaps))
        base = median if median > 0 else float(gaps.mean())
        gap_threshold_s = GAP_THRESHOLD_MEDIANS * base
    long_mask = gaps > gap_threshold_s if gap_threshold_s is not None else gaps < 0
    within = gaps[~long_mask]
    mean_gap = float(gaps.mean()) if gaps.size else math.nan
    max_tokens = df["max_tokens"].to_numpy(dtype=float)
    prompt_words = [len(str(p).split()) for p in df["prompt"].tolist()]
    return {
        "n_requests": n,
        "first_s": _json_float(t_s[0]) if n else None,
        "last_s": _json_float(t_s[-1]) if n else None,
        "span_s": _json_float(span_s),
        "mean_rate_rps": _json_float(1.0 / mean_gap) if gaps.size and mean_gap > 0 else None,
        "mean_gap_s": _json_float(mean_gap),
        "median_gap_s": _json_float(float(np.median(gaps))) if gaps.size else None,
        "max_gap_s": _json_float(float(gaps.max())) if gaps.size else None,
        "gap_cv2": _json_float(float(gaps.var() / mean_gap**2))
        if gaps.size > 1 and mean_gap > 0
        else None,
        "gap_threshold_s": _json_float(gap_threshold_s) if gap_threshold_s is not None else None,
        "n_long_gaps": int(long_mask.sum()),
        "n_bursts": int(long_mask.sum()) + 1 if n else 0,
        "max_gap_within_bursts_s": _json_float(float(within.max())) if within.size else None,
        "long_gaps_s": [float(g) for g in gaps[long_mask]],
        "max_tokens_min": int(max_tokens.min()) if n else None,
        "max_tokens_mean": _json_float(float(max_tokens.mean())) if n else None,
        "max_tokens_max": int(max_tokens.max()) if n else None,
        "prompt_words_mean": _json_float(float(np.mean(prompt_words))) if n else None,
    }
