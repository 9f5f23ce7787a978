"""The Setup section's paragraph on what the workload's trace was made from.

It reads the record the workload step writes beside each trace
(results/traces/<workload>.json: `{"workload": {...}, "summary": {...}}`, the first
being the trace's `df.attrs["workload"]`) and the workload's configuration entry, which
carries what the record leaves out for generated kinds (seed, rates, durations).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from scalezero.report.format import fmt, fmt_int

_RECORDED = ("azure_llm", "azure_functions", "trace_csv")
# Services of the Azure LLM inference trace 2023, by the file name's suffix.
_AZURE_LLM_SERVICES = {"code": "code", "conv": "conversation"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _short_sha(digest: Any) -> str | None:
    return f"{digest[:12]}…" if isinstance(digest, str) and digest else None


def _pace(time_scale: Any) -> str:
    scale = _number(time_scale)
    if scale is None or scale == 1:
        return "at the recorded pace"
    if scale > 1:
        return f"{fmt(scale)} times faster than recorded"
    return f"{fmt(1 / scale)} times slower than recorded"


def _file(record: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    path = record.get("path") or spec.get("path")
    sha = _short_sha(record.get("sha256"))
    text = f"file {path}" if path else "a file"
    return f"{text}, sha256 {sha}" if sha else text


def _azure_llm_service(path: Any) -> str | None:
    match = re.search(r"_([A-Za-z]+)\.csv$", PurePath(str(path or "")).name)
    return _AZURE_LLM_SERVICES.get(match.group(1).lower()) if match else None


def _thinning(record: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    seed = spec.get("seed")
    with_seed = f" with seed {seed}" if seed is not None else ""
    probability = _number(record.get("keep_probability"))
    kept = fmt_int(record.get("kept_rows"))
    target = _number(record.get("target_rate_rps"))
    if target is not None:
        text = (f"thinned{with_seed} to a target {fmt(target)} req/s as replayed (each "
                f"request kept with probability {fmt(probability)}; {kept} kept)")
    elif probability is not None and probability < 1:
        text = f"thinned{with_seed}, each request kept with probability {fmt(probability)} " \
               f"({kept} kept)"
    else:
        text = "not thinned"
    requests, kept_rows = _number(record.get("requests")), _number(record.get("kept_rows"))
    if requests is not None and kept_rows is not None and requests < kept_rows:
        text += f", of which the first {fmt_int(requests)} are replayed"
    return text


def _tokens(record: Mapping[str, Any]) -> str:
    prompt_max = fmt_int(record.get("max_prompt_tokens"))
    output_max = fmt_int(record.get("max_output_tokens"))
    if record.get("token_mapping") == "scale":
        text = ("Token counts are scaled onto the model's context, one factor per column so "
                "that the window's longest lands on the limit: prompt tokens by "
                f"{fmt(record.get('prompt_scale'))} (to at most {prompt_max}), output tokens "
                f"by {fmt(record.get('output_scale'))} (to at most {output_max})")
    else:
        text = ("Token counts are clamped onto the model's context: prompt tokens to "
                f"{prompt_max} ({fmt_int(record.get('prompt_clamped'))} clamped), output "
                f"tokens to {output_max} ({fmt_int(record.get('output_clamped'))} clamped)")
    raised = [(fmt_int(record.get(f"{part}_raised_to_1")), part)
              for part in ("prompt", "output") if _number(record.get(f"{part}_raised_to_1"))]
    if raised:
        counts = " and ".join(f"{n} {part}" for n, part in raised)
        text += f"; {counts} counts that came out below 1 were raised to 1"
    return text + "."


def _training(record: Mapping[str, Any]) -> str:
    training_s = _number(record.get("training_s"))
    if not training_s:
        return ""
    return (f" A training part of {fmt(training_s)} s before the window "
            f"({fmt_int(record.get('training_requests'))} requests) was given to adaptive "
            "policies to learn from.")


def _azure_llm(record: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    path = record.get("path") or spec.get("path")
    service = _azure_llm_service(path)
    source = f"{service} service; {_file(record, spec)}" if service else _file(record, spec)
    start = fmt(record.get("window_start_s", spec.get("window_start_s", 0)))
    window_s = _number(record.get("window_s"))
    if window_s is not None:
        window = f"{fmt(window_s)} s from {start} s into the file"
    else:
        window = (f"{fmt(record.get('window_length_s'))} s from {start} s into the file to "
                  "its end")
    return (f"The workload replays a slice of the Azure LLM inference trace 2023 "
            f"({source}): {window} ({fmt_int(record.get('rows_in_window'))} requests), "
            f"{_thinning(record, spec)}, {_pace(record.get('time_scale'))}. "
            f"{_tokens(record)}{_training(record)}")


def _azure_functions(record: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    function = record.get("function") or spec.get("function") or "busiest"
    app = record.get("app")
    start = int(spec.get("start_minute", 1))
    minutes = spec.get("minutes")
    span = (f"minutes {start} to {start + int(minutes) - 1}" if minutes
            else f"minute {start} to the end of the day")
    compression = _number(spec.get("time_compression")) or 1.0
    pace = "at the recorded pace" if compression == 1 else \
        f"compressed {fmt(compression)} times"
    return (f"The workload replays the per-minute invocation counts of function "
            f"{function}{f' (app {app})' if app else ''} from an Azure Functions trace "
            f"({_file(record, spec)}): {span}, {pace}, arrivals within a minute "
            f"{spec.get('arrivals_within_minute', 'uniform')} with seed {spec.get('seed')}.")


def _trace_csv(record: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    offset = spec.get("start_offset_s", 0)
    start = "its earliest row" if offset == "first" else f"{fmt(offset)} s"
    return (f"The workload replays the recorded trace in {_file(record, spec)} from "
            f"{start}, {_pace(spec.get('time_scale'))}.")


def _generated(kind: str, spec: Mapping[str, Any]) -> str:
    seed = spec.get("seed")
    if kind == "poisson":
        pattern = (f"Poisson arrivals at {fmt(spec.get('rate_rps'))} req/s for "
                   f"{fmt(spec.get('duration_s'))} s")
    elif kind == "gamma":
        pattern = (f"gamma-distributed gaps (burstiness {fmt(spec.get('burstiness'))}) at "
                   f"{fmt(spec.get('rate_rps'))} req/s for {fmt(spec.get('duration_s'))} s")
    elif kind == "bursty":
        pattern = (f"{fmt_int(spec.get('bursts'))} bursts of "
                   f"{fmt(spec.get('burst_duration_s'))} s with Poisson arrivals at "
                   f"{fmt(spec.get('burst_rate_rps'))} req/s, separated by "
                   f"{fmt(spec.get('idle_gap_s'))} s idle gaps")
        first = _number(spec.get("first_burst_at_s"))
        if first:
            pattern += f", the first at {fmt(first)} s"
    else:
        pattern = "arrivals of its own kind"
    return f"The workload is generated (kind {kind}, seed {seed}): {pattern}."


def trace_paragraph(name: str, info: Mapping[str, Any] | None,
                    spec: Mapping[str, Any] | None = None) -> str:
    """One Markdown paragraph: which trace the workload replays, or how it was generated.

    `info` is the workload step's record (its "workload" part and the training part's
    `training_*` keys beside it are read; None when the record is absent), `spec` the
    workload's configuration entry (may be empty).
    """
    info = info or {}
    record: Mapping[str, Any] = {
        **(info.get("workload") or {}),
        **{key: value for key, value in info.items() if key.startswith("training_")},
    }
    spec = dict(spec or {})
    kind = str(record.get("kind") or spec.get("kind") or "")
    if not kind:
        return (f"How the trace of workload {name} was made is not recorded here (its "
                "trace record and configuration entry were not given to the report).\n")
    if kind in _RECORDED and not record.get("path"):
        text = (f"The workload replays {spec.get('path', 'a recorded trace')} (kind {kind}, "
                f"seed {spec.get('seed')}); what was taken from it is not recorded here (the "
                "trace record was not given to the report).")
    elif kind == "azure_llm":
        text = _azure_llm(record, spec)
    elif kind == "azure_functions":
        text = _azure_functions(record, spec)
    elif kind == "trace_csv":
        text = _trace_csv(record, spec)
    else:
        text = _generated(kind, spec)
    max_requests = _number(spec.get("max_requests"))
    if max_requests is not None and kind != "azure_llm":
        text += f" Only the first {fmt_int(max_requests)} requests are kept."
    return text + "\n"


__all__ = ["trace_paragraph"]
