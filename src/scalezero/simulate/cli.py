"""`scalezero simulate`: replay a trace against a policy in simulated time, or time the engine.

``simulate run`` writes requests.csv, events.csv and summary.json for one trace, profile and
strategy; ``simulate bench`` replays an in-memory Poisson trace on a synthetic profile and
prints the engine's speed in requests/s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from scalezero.errors import UserError
from scalezero.serving.pool import PoolLimits
from scalezero.serving.settings import QueueSettings, field_default
from scalezero.serving.strategies import make_policy, parse_param_pairs, policies
from scalezero.simulate.engine import SimRequest, simulate, summarize
from scalezero.simulate.profile import PlatformProfile

#: A made-up platform for benchmarks: a 5 s cold start, ~20 tokens/s.
BENCH_PROFILE = PlatformProfile(
    name="bench", model="synthetic", device="none", basis="assumed",
    notes="invented figures for timing the simulator",
    spawn_to_runtime_ready_s=1.0, runtime_ready_to_model_loaded_s=3.0,
    model_loaded_to_ready_s=1.0, first_request_extra_s=0.2, stop_s=0.5,
    ttft_base_s=0.05, ttft_s_per_prompt_token=0.0005, tpot_s=0.05,
    power_w={"bare_idle": 20.0, "context_idle": 30.0, "idle_loaded": 40.0, "active": 150.0,
             "cold_start": 80.0},
)


def bench_requests(n: int, rate_per_s: float, seed: int = 0) -> list[SimRequest]:
    """``n`` Poisson arrivals at ``rate_per_s`` with random prompt and output lengths."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n)).tolist()
    prompts = rng.integers(16, 512, size=n).tolist()
    outputs = rng.integers(8, 128, size=n).tolist()
    return [SimRequest(k, times[k], prompts[k], outputs[k]) for k in range(n)]


def _limits(args: argparse.Namespace, concurrency: int) -> PoolLimits:
    return QueueSettings(
        max_queue=args.max_queue, cold_start_timeout_s=args.cold_start_timeout_s,
        queue_timeout_s=args.queue_timeout_s, instance_concurrency=concurrency,
    ).pool_limits()


def _bench(args: argparse.Namespace) -> int:
    if args.requests < 1 or not args.rate > 0:
        raise UserError("--requests must be >= 1 and --rate > 0")
    items = bench_requests(args.requests, args.rate, args.seed)
    policy = make_policy(args.policy, parse_param_pairs(args.param))
    limits = _limits(args, args.instance_concurrency or BENCH_PROFILE.instance_concurrency)
    started_s, cpu_started_s = time.perf_counter(), time.process_time()
    result = simulate(items, policy, BENCH_PROFILE, limits, progress=not args.no_progress)
    elapsed_s = time.perf_counter() - started_s
    cpu_s = time.process_time() - cpu_started_s
    rate = args.requests / elapsed_s if elapsed_s > 0 else math.inf
    cpu_rate = args.requests / cpu_s if cpu_s > 0 else math.inf
    events = result.events
    starts = int(((events["event"] == "spawn") & (events["t_s"] >= 0)).sum())
    errors = int((result.requests["status"] != 200).sum())
    # CPU time too: on a busy machine the wall clock counts other processes' turns.
    print(f"simulate bench: {args.policy}: {args.requests} requests in {elapsed_s:.2f} s "
          f"({cpu_s:.2f} s CPU): {rate:,.0f} requests/s ({cpu_rate:,.0f} per CPU s); "
          f"{starts} cold starts, {errors} errors")
    return 0


def _run(args: argparse.Namespace) -> int:
    from scalezero.simulate.engine import requests_from_trace
    from scalezero.workload.trace import read_trace

    profile = PlatformProfile.read(Path(args.profile))
    trace = read_trace(Path(args.trace))
    params = parse_param_pairs(args.param)
    policy = make_policy(args.strategy, params)
    items = requests_from_trace(trace, _measured_tokens_in(args.tokens_in))
    limits = _limits(args, args.instance_concurrency or profile.instance_concurrency)
    result = simulate(items, policy, profile, limits, until_s=args.until_s,
                      progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.requests.to_csv(out / "requests.csv", index=False, float_format="%.6f",
                           lineterminator="\n")
    result.events.to_csv(out / "events.csv", index=False, float_format="%.6f",
                         lineterminator="\n")
    summary: dict[str, Any] = {
        "strategy": args.strategy,
        "policy": policy.params(),
        "profile": profile.name,
        "trace": str(args.trace),
        "limits": {"max_queue": limits.max_queue,
                   "cold_start_timeout_s": limits.cold_start_timeout_s,
                   "queue_timeout_s": limits.queue_timeout_s,
                   "instance_concurrency": limits.instance_concurrency},
        "window": list(result.window),
        **summarize(result, profile),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
    print(f"simulate run: {args.strategy}: {summary['requests']} requests, "
          f"{summary['cold_starts']} cold starts, {summary['errors']} errors -> {out}")
    return 0


def _measured_tokens_in(path: str | None) -> dict[int, int] | None:
    """request_id -> tokens_in of a measured run's requests.csv (None without one)."""
    if path is None:
        return None
    import pandas as pd

    try:
        df = pd.read_csv(path, usecols=["request_id", "tokens_in"])
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read tokens_in from {path!r}: {exc}") from None
    df = df.dropna()
    return dict(zip(df["request_id"].astype(int), df["tokens_in"].astype(int), strict=True))


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-queue", type=int, default=field_default(QueueSettings,
                                                                       "max_queue"))
    parser.add_argument("--cold-start-timeout-s", type=float,
                        default=field_default(QueueSettings, "cold_start_timeout_s"))
    parser.add_argument("--queue-timeout-s", type=float,
                        default=field_default(QueueSettings, "queue_timeout_s"))
    parser.add_argument("--instance-concurrency", type=int, default=None,
                        help="requests one instance serves at once (default: the profile's)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="policy parameter, e.g. keep_warm_ttl_s=10 (repeatable)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar on stderr")


def add_cli(subparsers: Any) -> None:
    """Register `scalezero simulate` with its `run`, `bench` and `sharing-check`
    subcommands."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a trace against a policy in simulated time",
        description="Trace-driven simulation of the gateway's pool on a platform profile.",
    )
    commands = parser.add_subparsers(dest="simulate_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: _usage(parser))

    run = commands.add_parser(
        "run", help="simulate one strategy on one trace",
        description="Replay a trace against a strategy on a platform profile; write "
        "requests.csv, events.csv and summary.json into --out.")
    run.add_argument("--trace", required=True, help="trace CSV (scalezero workload)")
    run.add_argument("--profile", required=True, help="platform profile JSON")
    run.add_argument("--strategy", required=True, choices=policies(), help="policy")
    run.add_argument("--out", required=True, help="folder for the simulated run files")
    run.add_argument("--tokens-in", default=None, metavar="REQUESTS_CSV",
                     help="a measured run's requests.csv: its tokens_in as prompt tokens "
                     "(default: the prompt's word count)")
    run.add_argument("--until-s", type=float, default=None,
                     help="end of the window (default: the last response)")
    _add_limits(run)
    run.set_defaults(func=_run)

    bench = commands.add_parser(
        "bench", help="time the simulator on a Poisson trace",
        description="Replay an in-memory Poisson trace on a synthetic profile and print "
        "requests/s.")
    bench.add_argument("--requests", type=int, default=1_000_000)
    bench.add_argument("--policy", default="keep_warm", choices=policies())
    bench.add_argument("--rate", type=float, default=0.1, help="arrivals per s")
    bench.add_argument("--seed", type=int, default=0)
    _add_limits(bench)
    bench.set_defaults(func=_bench)

    check = commands.add_parser(
        "sharing-check", help="simulate measured sharing runs and compare",
        description="Fit a profile and a memory figure per deployment on the dedicated-* "
        "runs, replay each shared-<eviction> run's trace through the shared-budget "
        "simulation with its budget and eviction policy, and write measured against "
        "simulated figures per deployment (docs/data.md, results/sharing/simulated.csv).")
    check.add_argument("--runs", required=True,
                       help="folder of the sharing run folders (results/sharing/runs)")
    check.add_argument("--out", required=True, help="CSV to write")
    check.set_defaults(func=_sharing_check)


def _sharing_check(args: argparse.Namespace) -> int:
    from scalezero.simulate.sharing_check import sharing_check, write_sharing_check

    frame = sharing_check(Path(args.runs))
    path = write_sharing_check(frame, Path(args.out))
    print(f"sharing-check: {len(frame)} rows -> {path}", file=sys.stderr)
    return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
