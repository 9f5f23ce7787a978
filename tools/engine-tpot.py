#!/usr/bin/env python3
"""Compare the warm decode speed (TPOT) of llama-cpp-python builds on one model.

    tools/engine-tpot.py --model resources/models/smollm2-135m.gguf \
        --engine project=.venv/lib/python3.11/site-packages --engine native=/tmp/site-native

Each engine is a folder that holds a `llama_cpp` package (put first on PYTHONPATH). The
engines take turns (ABAB...) so that a change in machine load hits both alike; each turn
is a fresh child that loads the model, warms up, then streams `--tokens` tokens
`--repeats` times. Printed: the median TPOT per engine over all turns, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, sys, time
from llama_cpp import Llama
model, tokens, repeats, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=model, n_ctx=512, n_threads=threads, verbose=False)
ban = {llm.token_eos(): -100.0}
llm.create_completion("Warm up.", max_tokens=8, temperature=0.0, logit_bias=ban)
tpots = []
for i in range(repeats):
    stamps = []
    for _ in llm.create_completion(f"Story {i}: once upon a time", max_tokens=tokens,
                                   temperature=0.0, logit_bias=ban, stream=True):
        stamps.append(time.perf_counter())
    tpots.append((stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1000.0)
print(json.dumps({"tpot_ms": tpots, "system_info": __import__("llama_cpp").llama_print_system_info().decode()}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--engine", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    engines = dict(e.split("=", 1) for e in args.engine)
    results: dict[str, list[float]] = {name: [] for name in engines}
    for turn in range(args.turns):
        for name, site in engines.items():
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, os.environ.get(
                "PYTHONPATH", "")]).rstrip(os.pathsep)}
            out = subprocess.run([sys.executable, "-c", _CHILD, args.model, str(args.tokens),
                                  str(args.repeats), str(args.threads)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            data = json.loads(out.strip().splitlines()[-1])
            results[name] += data["tpot_ms"]
            if turn == 0:
                print(f"{name}: {data['system_info'].strip()}")
    medians = {name: statistics.median(v) for name, v in results.items()}
    first = next(iter(medians))
    print(f"\n{'engine':<12} {'TPOT p50 ms':>12} {'n':>4} {'vs ' + first:>10}")
    for name, median in medians.items():
        print(f"{name:<12} {median:>12.2f} {len(results[name]):>4} "
              f"{(median / medians[first] - 1) * 100:>+9.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
