"""``scalezero bench-overhead``: what the gateway adds to a request's latency.

Warm path: a gateway (always_on) holds one instance; requests go alternately through
the gateway and straight to that same instance, interleaved in one run so that both
see the same machine state. Reported: median TTFT and E2E of each path, the added
milliseconds and the ratio. Target: added median below 2 ms and below 5 %.

Cold path: a gateway (naive, so every request finds zero instances) is asked once per
round and its cold TTFT measured; in the same round the instance is also started by
hand, with the very command the gateway uses, and timed from spawn to its first HTTP
answer. The gateway's cold overhead is

    gateway cold TTFT - (direct spawn-to-ready + direct warm TTFT)

per round, reported as the median. Target: below 100 ms. Also shown, against the same
target: the difference with the direct instance's *first* request in place of the warm
TTFT, like for like (the first request on a fresh instance may cost more than a warm
one, which is not the gateway's doing).

TTFT is the first streamed token with text minus the send time, E2E the last such
token minus the send time (the design notes' definitions), both from this client.

Also reported, as medians of paired differences (the two requests of one pair): the TTFT
the gateway adds, and what it adds per streamed token, (E2E - TTFT) through the gateway
minus the same straight to the instance, divided by the tokens after the first. Targets:
below 0.5 ms and below 0.05 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from scalezero.errors import UserError
from scalezero.serving.settings import (
    DEVICES,
    ENGINES,
    GatewaySettings,
    InstanceSettings,
    field_default,
    serve_command,
)
from scalezero.system.layout import DEFAULT_MODEL_NAME, default_model
from scalezero.system.procs import free_tcp_port, package_env, terminate_group

DEFAULT_PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"
WARM_TARGET_ADDED_MS = 2.0
WARM_TARGET_RATIO = 1.05
COLD_TARGET_ADDED_MS = 100.0
PAIRED_TARGET_TTFT_MS = 0.5
PAIRED_TARGET_PER_TOKEN_MS = 0.05
READY_POLL_S = 0.005
#: Context size of the measured instance: the bench sends short requests, and a small
#: context keeps each start quick.
BENCH_N_CTX = 512


@dataclasses.dataclass
class Sample:
    ttft_s: float
    e2e_s: float
    tokens: int
    headers: dict[str, str]


@dataclasses.dataclass
class ColdRound:
    gateway_ttft_s: float
    direct_spawn_to_ready_s: float
    direct_first_ttft_s: float


class BenchError(RuntimeError):
    pass


def stream_completion(client: httpx.Client, url: str, body: dict[str, Any]) -> Sample:
    """Send one streaming completion; time its first and last token with text."""
    sent_s = time.perf_counter()
    first_s: float | None = None
    last_s = sent_s
    tokens = 0
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            response.read()
            raise BenchError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise BenchError(f"{url}: error in stream: {chunk['error']}")
            choices = chunk.get("choices") or [{}]
            if choices[0].get("text"):
                last_s = time.perf_counter()
                tokens += 1
                if first_s is None:
                    first_s = last_s
        headers = dict(response.headers)
    if first_s is None:
        raise BenchError(f"{url}: the stream carried no token")
    return Sample(first_s - sent_s, last_s - sent_s, tokens, headers)


# ------------------------------------------------------------------ processes


@contextlib.contextmanager
def gateway_process(settings: GatewaySettings, log_path: Path) -> Iterator[str]:
    """``scalezero serve`` in a child process; yields its base URL; always stopped.

    Its settings are written next to its log, as a measured run does.
    """
    port = free_tcp_port()
    settings_path = settings.write(log_path.with_name(f"{log_path.stem}-settings.json"))
    command = serve_command(settings_path, port)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=package_env())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline_s = time.monotonic() + 120
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise BenchError(f"gateway exited with code {proc.returncode}:\n{tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url + "/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline_s:
                    raise BenchError("gateway not answering after 120 s")
                time.sleep(0.05)
        yield url
    finally:
        terminate_group(proc, grace_s=10.0)


def gateway_state(client: httpx.Client, url: str) -> dict[str, Any]:
    state = client.get(url + "/state").json()
    return next(iter(state["deployments"].values()))


def wait_instances(client: httpx.Client, url: str, ready: int, total: int | None = None,
                   timeout_s: float = 180.0) -> dict[str, Any]:
    """Wait until the gateway has ``ready`` ready instances (and ``total`` in all)."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        pool = gateway_state(client, url)
        if pool["ready"] == ready and (total is None or len(pool["instances"]) == total):
            return pool
        if pool["start_failures"]:
            raise BenchError("an instance failed to start; see the gateway log")
        if time.monotonic() > deadline_s:
            raise BenchError(f"gateway instances not as expected after {timeout_s:g} s: {pool}")
        time.sleep(0.02)


def spawn_direct(settings: GatewaySettings) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start the instance the gateway would start, by hand; return it, its URL, spawn time."""
    spec = settings.instance_spec()
    port = free_tcp_port(spec.host)
    command = spec.build_command(port, os.getpid())
    env = {**package_env(), **spec.env, "PYTHONUNBUFFERED": "1"}  # as the launcher does
    spawned_s = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    return proc, f"http://{spec.host}:{port}", spawned_s


def wait_direct_ready(proc: subprocess.Popen[bytes], url: str, health_path: str,
                      timeout_s: float = 180.0) -> float:
    """Poll the instance until it answers; return the perf_counter time it first did."""
    deadline_s = time.perf_counter() + timeout_s
    with httpx.Client(trust_env=False, timeout=1.0) as client:
        while True:
            if proc.poll() is not None:
                raise BenchError(f"directly started instance exited with {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url + health_path).status_code == 200:
                    return time.perf_counter()
            if time.perf_counter() > deadline_s:
                raise BenchError(f"directly started instance not ready after {timeout_s:g} s")
            time.sleep(READY_POLL_S)


# --------------------------------------------------------------- measurement


def measure_warm(
    settings: GatewaySettings, body: dict[str, Any], pairs: int, warmup: int, log_path: Path,
    progress: bool,
) -> tuple[list[Sample], list[Sample]]:
    """``pairs`` requests each way, alternating which path goes first."""
    via_gateway: list[Sample] = []
    direct: list[Sample] = []
    with (
        gateway_process(settings.model_copy(update={"policy": "always_on"}), log_path) as url,
        httpx.Client(trust_env=False, timeout=120.0) as gw_client,
        httpx.Client(trust_env=False, timeout=120.0) as direct_client,
    ):
        pool = wait_instances(gw_client, url, ready=1)
        instance = pool["instances"][0]
        direct_url = f"http://127.0.0.1:{instance['port']}/v1/completions"
        gateway_url = url + "/v1/completions"
        for index in range(warmup + pairs):
            order = [("gateway", gw_client, gateway_url), ("direct", direct_client, direct_url)]
            if index % 2:
                order.reverse()
            for name, client, target in order:
                sample = stream_completion(client, target, body)
                if index >= warmup:
                    (via_gateway if name == "gateway" else direct).append(sample)
            if progress and (index + 1) % 50 == 0:
                print(f"  warm: {index + 1}/{warmup + pairs} pairs", file=sys.stderr)
        if gateway_state(gw_client, url)["cold_starts"] != 1:
            raise BenchError("the warm gateway restarted its instance during the run")
    return via_gateway, direct


def measure_cold(
    settings: GatewaySettings, body: dict[str, Any], rounds: int, log_path: Path,
    progress: bool,
) -> list[ColdRound]:
    results: list[ColdRound] = []
    if rounds == 0:
        return results
    with (
        gateway_process(settings.model_copy(update={"policy": "naive"}), log_path) as url,
        httpx.Client(trust_env=False, timeout=300.0) as client,
    ):
        for index in range(rounds):
            gateway_ttft_s = direct_s2r_s = direct_ttft_s = 0.0
            steps = ["gateway", "direct"] if index % 2 == 0 else ["direct", "gateway"]
            for step in steps:
                wait_instances(client, url, ready=0, total=0)  # at zero, nothing stopping
                time.sleep(0.2)  # let the last stop's CPU work settle
                if step == "gateway":
                    sample = stream_completion(client, url + "/v1/completions", body)
                    if sample.headers.get("x-scalezero-cold") != "true":
                        raise BenchError("a cold-path request was served warm")
                    gateway_ttft_s = sample.ttft_s
                    continue
                proc, direct_url, spawned_s = spawn_direct(settings)
                try:
                    ready_s = wait_direct_ready(proc, direct_url,
                                                settings.instance.readiness_path)
                    direct_s2r_s = ready_s - spawned_s
                    with httpx.Client(trust_env=False, timeout=300.0) as direct_client:
                        direct_ttft_s = stream_completion(
                            direct_client, direct_url + "/v1/completions", body
                        ).ttft_s
                finally:
                    terminate_group(proc, grace_s=10.0)
            results.append(ColdRound(gateway_ttft_s, direct_s2r_s, direct_ttft_s))
            if progress:
                print(f"  cold: {index + 1}/{rounds} rounds", file=sys.stderr)
    return results


# ------------------------------------------------------------------- report


def _median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000.0


def summarize(
    gateway: list[Sample], direct: list[Sample], cold: list[ColdRound]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for metric in ("ttft", "e2e"):
        gw_ms = _median_ms([getattr(s, f"{metric}_s") for s in gateway])
        direct_ms = _median_ms([getattr(s, f"{metric}_s") for s in direct])
        paired_ms = _median_ms(
            [getattr(g, f"{metric}_s") - getattr(d, f"{metric}_s")
             for g, d in zip(gateway, direct, strict=True)]
        )
        added_ms = gw_ms - direct_ms
        ratio = gw_ms / direct_ms
        summary[f"warm_{metric}"] = {
            "direct_ms": direct_ms, "gateway_ms": gw_ms, "added_ms": added_ms,
            "paired_added_ms": paired_ms, "ratio": ratio,
            "ok": added_ms < WARM_TARGET_ADDED_MS and ratio < WARM_TARGET_RATIO,
        }
    per_token_ms = _median_ms([
        ((g.e2e_s - g.ttft_s) - (d.e2e_s - d.ttft_s)) / max(1, d.tokens - 1)
        for g, d in zip(gateway, direct, strict=True)
    ])
    summary["warm_per_token"] = {
        "paired_added_ms": per_token_ms, "ok": per_token_ms < PAIRED_TARGET_PER_TOKEN_MS,
    }
    summary["warm_ttft"]["paired_ok"] = (
        summary["warm_ttft"]["paired_added_ms"] < PAIRED_TARGET_TTFT_MS
    )
    if not cold:
        return summary
    warm_ttft_s = statistics.median(s.ttft_s for s in direct)
    baselines = {
        # The definition: the server's own start plus a warm request.
        "cold_vs_warm_ttft": [r.direct_spawn_to_ready_s + warm_ttft_s for r in cold],
        # Like for like: the fresh instance's first request, as the gateway's is.
        "cold_vs_first_ttft": [r.direct_spawn_to_ready_s + r.direct_first_ttft_s for r in cold],
    }
    gw_ms = _median_ms([r.gateway_ttft_s for r in cold])
    for name, direct_s in baselines.items():
        added_ms = _median_ms([r.gateway_ttft_s - d for r, d in zip(cold, direct_s, strict=True)])
        summary[name] = {
            "direct_ms": _median_ms(direct_s), "gateway_ms": gw_ms, "added_ms": added_ms,
            "ratio": gw_ms / _median_ms(direct_s), "ok": added_ms < COLD_TARGET_ADDED_MS,
        }
    summary["cold_parts"] = {
        "direct_spawn_to_ready_ms": _median_ms([r.direct_spawn_to_ready_s for r in cold]),
        "direct_warm_ttft_ms": warm_ttft_s * 1000,
        "direct_first_ttft_ms": _median_ms([r.direct_first_ttft_s for r in cold]),
    }
    return summary


ROW_LABELS = {
    "warm_ttft": "warm TTFT",
    "warm_e2e": "warm E2E",
    "cold_vs_warm_ttft": "cold TTFT vs start+warm TTFT",
    "cold_vs_first_ttft": "cold TTFT vs start+first TTFT",
}


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    header = ("median", "direct ms", "gateway ms", "added ms", "ratio", "target", "result")
    warm_target = f"< {WARM_TARGET_ADDED_MS:g} ms and < {(WARM_TARGET_RATIO - 1) * 100:g} %"
    rows: list[tuple[str, ...]] = []
    for key, label in ROW_LABELS.items():
        row = summary.get(key)
        if row is None:
            continue
        warm = key.startswith("warm")
        digits = 2 if warm else 1
        rows.append((
            label, f"{row['direct_ms']:.{digits}f}", f"{row['gateway_ms']:.{digits}f}",
            f"{row['added_ms']:+.{digits}f}",
            f"{row['ratio']:.4f} ({(row['ratio'] - 1) * 100:+.2f} %)",
            warm_target if warm else f"< {COLD_TARGET_ADDED_MS:g} ms",
            "ok" if row["ok"] else "MISSED",
        ))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if 0 < i < 5 else c.ljust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded).rstrip()

    out = [
        f"gateway overhead: {meta['model']} ({meta['device']}), {meta['pairs']} warm pairs "
        f"(interleaved), {meta['cold_rounds']} cold rounds, max_tokens {meta['max_tokens']}",
        "",
        line(header),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
        f"warm, median of paired differences (same pair): TTFT "
        f"{summary['warm_ttft']['paired_added_ms']:+.2f} ms, E2E "
        f"{summary['warm_e2e']['paired_added_ms']:+.2f} ms",
        f"warm, paired: TTFT added {summary['warm_ttft']['paired_added_ms']:+.3f} ms "
        f"(target < {PAIRED_TARGET_TTFT_MS:g} ms: "
        f"{'ok' if summary['warm_ttft']['paired_ok'] else 'MISSED'}), per streamed token "
        f"{summary['warm_per_token']['paired_added_ms']:+.4f} ms "
        f"(target < {PAIRED_TARGET_PER_TOKEN_MS:g} ms: "
        f"{'ok' if summary['warm_per_token']['ok'] else 'MISSED'})",
    ]
    parts = summary.get("cold_parts")
    if parts:
        out.append(
            f"cold, direct parts: spawn-to-ready {parts['direct_spawn_to_ready_ms']:.1f} ms, "
            f"warm TTFT {parts['direct_warm_ttft_ms']:.2f} ms, first-request TTFT "
            f"{parts['direct_first_ttft_ms']:.1f} ms (a fresh instance's first request pays "
            "for more than a warm one, which is not the gateway's doing)"
        )
    return "\n".join(out)


# ---------------------------------------------------------------------- CLI


def bench_settings(args: argparse.Namespace, model: Path) -> GatewaySettings:
    """The gateway both paths measure (its policy is set per path)."""
    return GatewaySettings(
        model_path=model,
        policy="naive",
        device=args.device,
        instance=InstanceSettings(
            engine=args.engine,
            n_ctx=args.n_ctx,
            n_threads=args.n_threads,
            command=tuple(shlex.split(args.instance_command)) if args.instance_command else None,
            health_path=args.health_path,
        ),
    )


def sample_rows(
    gateway: list[Sample], direct: list[Sample], cold: list[ColdRound]
) -> dict[str, list[dict[str, Any]]]:
    """Every measured request, so that other statistics can be drawn from the same run."""
    warm = [
        {"pair": index, "path": path, "ttft_ms": sample.ttft_s * 1000.0,
         "e2e_ms": sample.e2e_s * 1000.0, "tokens": sample.tokens}
        for index, (via_gateway, straight) in enumerate(zip(gateway, direct, strict=True))
        for path, sample in (("gateway", via_gateway), ("direct", straight))
    ]
    cold_rows = [
        {"round": index, "gateway_ttft_ms": one.gateway_ttft_s * 1000.0,
         "direct_spawn_to_ready_ms": one.direct_spawn_to_ready_s * 1000.0,
         "direct_first_ttft_ms": one.direct_first_ttft_s * 1000.0}
        for index, one in enumerate(cold)
    ]
    return {"warm": warm, "cold": cold_rows}


def run_bench(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if not model.is_file():
        hint = (
            " (fetch it: scalezero fetch-model --config config/config.yaml --name "
            f"{DEFAULT_MODEL_NAME} --out {default_model()})" if model == default_model() else ""
        )
        raise UserError(f"--model: file not found: {model}{hint}")
    if args.warm_requests < 1 or args.cold_starts < 0 or args.warmup < 0:
        raise UserError("--warm-requests must be >= 1, --cold-starts and --warmup >= 0")
    body = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0.0,
            "seed": 1, "stream": True}
    settings = bench_settings(args, model)
    progress = not args.quiet
    with tempfile.TemporaryDirectory(prefix="scalezero-bench-") as tmp:
        log_dir = Path(args.log_dir) if args.log_dir else Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"bench-overhead: warm path, {args.warm_requests} pairs", file=sys.stderr)
        try:
            gateway, direct = measure_warm(settings, body, args.warm_requests, args.warmup,
                                           log_dir / "gateway-warm.log", progress)
            if progress and args.cold_starts:
                print(f"bench-overhead: cold path, {args.cold_starts} rounds", file=sys.stderr)
            cold = measure_cold(settings, body, args.cold_starts,
                                log_dir / "gateway-cold.log", progress)
        except BenchError as exc:
            raise UserError(str(exc)) from None
    summary = summarize(gateway, direct, cold)
    meta = {"model": model.name, "device": args.device, "pairs": args.warm_requests,
            "cold_rounds": args.cold_starts, "max_tokens": args.max_tokens,
            "tokens_per_request": statistics.median(s.tokens for s in direct)}
    print(render(summary, meta))
    if args.json:
        document = {"meta": meta, **summary, "samples": sample_rows(gateway, direct, cold)}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``scalezero bench-overhead``."""
    from scalezero.serving.cli import HelpFormatter

    parser = subparsers.add_parser(
        "bench-overhead",
        help="measure the latency the gateway adds, warm and cold",
        description=(
            "Measure warm TTFT and E2E through the gateway and straight to the same "
            "instance, interleaved in one run, and the cold-start overhead: gateway cold "
            "TTFT minus (the instance's own spawn-to-ready time + warm TTFT). Targets: warm "
            f"added median < {WARM_TARGET_ADDED_MS:g} ms and < "
            f"{(WARM_TARGET_RATIO - 1) * 100:g} %; cold overhead < "
            f"{COLD_TARGET_ADDED_MS:g} ms."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", default=str(default_model()), metavar="PATH",
                        help="GGUF model to serve")
    parser.add_argument("--warm-requests", type=int, default=200, metavar="N",
                        help="warm requests per path (gateway and direct, interleaved)")
    parser.add_argument("--warmup", type=int, default=3, metavar="N",
                        help="request pairs sent first and not counted")
    parser.add_argument("--cold-starts", type=int, default=7, metavar="N",
                        help="cold rounds (one gateway cold start and one direct start each); "
                        "0 skips the cold path")
    parser.add_argument("--max-tokens", type=int, default=16, metavar="N",
                        help="tokens generated per request")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, metavar="TEXT",
                        help="prompt of every request")
    parser.add_argument("--device", choices=DEVICES,
                        default=field_default(GatewaySettings, "device"),
                        help="where the instance runs")
    parser.add_argument("--engine", choices=ENGINES,
                        default=field_default(InstanceSettings, "engine"),
                        help="the instance's server")
    # The bench measures short requests: a small context keeps each instance's start and
    # memory low, unlike the gateway's own default.
    parser.add_argument("--n-ctx", type=int, default=BENCH_N_CTX, metavar="N",
                        help="context size of the instance; smaller than scalezero serve's "
                        f"default ({field_default(InstanceSettings, 'n_ctx')}): the bench "
                        "sends short requests")
    parser.add_argument("--n-threads", type=int, default=None, metavar="N",
                        help="CPU threads of the instance (unset: the engine's default)")
    parser.add_argument("--instance-command", default=None, metavar="CMD",
                        help="instance command instead of llama-cpp-python's server, as for "
                        "'scalezero serve' (unset: llama-cpp-python's server)")
    parser.add_argument("--health-path", default=field_default(InstanceSettings, "health_path"),
                        metavar="PATH",
                        help="path polled to decide that an instance is ready (unset: the "
                        "engine's)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the results as JSON here (unset: not written)")
    parser.add_argument("--log-dir", default=None, metavar="DIR",
                        help="keep the gateways' logs here (unset: a temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(func=run_bench)

