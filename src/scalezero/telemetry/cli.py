"""`scalezero telemetry`: run the sampler beside a measured run, or print device facts."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

from scalezero.errors import UserError
from scalezero.system.procs import set_parent_death_signal
from scalezero.telemetry.base import BACKENDS, TelemetryUnavailable
from scalezero.telemetry.procs import DEFAULT_INSTANCE_MATCH
from scalezero.telemetry.sampler import DEFAULT_RATE_HZ, MAX_RATE_HZ, Sampler
from scalezero.telemetry.source import device_info, open_source


def add_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "telemetry",
        help="sample GPU/host power, energy and memory into telemetry.csv",
        description=(
            "Sample telemetry (NVML when available, else the host) into a CSV until "
            "SIGTERM/SIGINT or --duration-s, then flush and exit 0. Columns: "
            "docs/data.md, telemetry.csv."
        ),
    )
    parser.add_argument("--out", help="CSV file to write (required unless --info)")
    parser.add_argument("--info", action="store_true",
                        help="print the device facts for run.json as JSON and exit")
    parser.add_argument("--rate-hz", type=float, default=DEFAULT_RATE_HZ,
                        help=f"samples per second (default {DEFAULT_RATE_HZ:g})")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: NVML if it initialises, else host (default auto)")
    parser.add_argument("--gpu-index", type=int, default=None,
                        help="NVML device index (default: CUDA_VISIBLE_DEVICES, else 0)")
    parser.add_argument("--root-pid", type=int, default=None,
                        help="look for instance processes under this pid (default: parent)")
    parser.add_argument("--instance-match", default=DEFAULT_INSTANCE_MATCH,
                        help="text in an instance's command line "
                             f"(default {DEFAULT_INSTANCE_MATCH!r})")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="stop after this many seconds (default: run until signalled)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the parent process dies")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    if args.info:
        print(json.dumps(device_info(args.gpu_index, args.backend), indent=2, default=str))
        return 0
    if not args.out:
        raise UserError("--out FILE is required (or --info)")
    if not (0 < args.rate_hz <= MAX_RATE_HZ):
        raise UserError(f"--rate-hz must be in (0, {MAX_RATE_HZ:g}], not {args.rate_hz}")
    if args.duration_s is not None and args.duration_s <= 0:
        raise UserError(f"--duration-s must be positive, not {args.duration_s}")

    stop = threading.Event()
    parent_pid = os.getppid()
    should_stop = None
    if args.exit_with_parent:
        # The kernel ties this to the parent *thread* that forked us, so the ppid
        # watchdog stays on as well.
        set_parent_death_signal(signal.SIGTERM)

        def should_stop() -> bool:  # reparented: the parent is gone
            return os.getppid() != parent_pid

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }
    try:
        # The parent may have died before the death signal was armed.
        if should_stop is not None and should_stop():
            return 0
        try:
            source = open_source(args.backend, args.gpu_index)
        except TelemetryUnavailable as exc:
            raise UserError(str(exc)) from exc
        if source.backend != "nvml" and args.backend == "auto":
            reason = getattr(source, "nvml_unavailable", "")
            print(f"scalezero telemetry: no NVML ({reason}); sampling the host, "
                  f"energy source: {source.energy_source}", file=sys.stderr)
        try:
            stats = Sampler(source).run(
                args.out,
                rate_hz=args.rate_hz,
                stop_event=stop,
                root_pid=args.root_pid,
                instance_match=args.instance_match,
                duration_s=args.duration_s,
                should_stop=should_stop,
            )
        finally:
            source.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(
        f"scalezero telemetry: {stats.rows} rows from {source.device} "
        f"({stats.skipped_deadlines} deadlines skipped, {stats.failed_samples} failed) "
        f"in {stats.wall_s:.1f} s; sampler CPU {stats.cpu_pct:.2f} % of one core",
        file=sys.stderr,
    )
    return 0
