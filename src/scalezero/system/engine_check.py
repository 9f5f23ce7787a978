"""The engine self-check: load a model in a child process and generate a few tokens.

A broken engine build (the AMX crash, an instruction the CPU lacks) kills the process
that loads a model with a signal. Run in a child, that becomes a readable failure that
names the CPU, the build flags, the signal and the remedy, instead of a segfault minutes
into a run. `tools/setup-venv.sh` runs it after every install; `scalezero doctor` runs
it too; tests that need llama.cpp in-process use `generate_in_child` for the same reason.

    python -m scalezero.system.engine_check [--model PATH] [--python PYTHON]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalezero.system.engine_build import (
    cpu_model_name,
    describe_exit,
    installed_build,
    native_server,
    native_server_version,
    read_cpu_flags,
)
from scalezero.system.layout import default_model

REMEDY = (
    "rebuild the engine with the project's AMX-free flags: `rm -rf .venv && "
    "tools/setup-venv.sh` (a wheel built elsewhere, or by pip with its default "
    "-march=native, may use instructions or code paths this CPU cannot run); to change "
    "the flags, set SCALEZERO_ENGINE_CMAKE_ARGS (e.g. \"-DGGML_AVX512=OFF\") and run "
    "setup again; `scalezero doctor` shows what the engine and the CPU report"
)

# Runs in the child: load, generate `n_tokens` greedily with end-of-generation banned
# (so the count is exact), print one JSON line.
_CHILD = r"""
import json, sys, time
from llama_cpp import Llama
model, n_tokens, prompt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
# One thread: the check must not depend on how busy the machine is.
llm = Llama(model_path=model, n_ctx=256, n_threads=1, n_gpu_layers=0, verbose=False)
t1 = time.perf_counter()
out = llm.create_completion(prompt, max_tokens=n_tokens, temperature=0.0,
                            logit_bias={llm.token_eos(): -100.0})
t2 = time.perf_counter()
print(json.dumps({"completion_tokens": out["usage"]["completion_tokens"],
                  "finish_reason": out["choices"][0]["finish_reason"],
                  "text": out["choices"][0]["text"], "load_s": t1 - t0,
                  "generate_s": t2 - t1}))
"""


@dataclasses.dataclass
class CheckResult:
    """What the child did: `ok` when it exited 0 and generated at least one token."""

    ok: bool
    returncode: int | None
    wall_s: float
    answer: dict[str, Any] | None = None
    detail: str = ""

    def summary(self) -> str:
        if self.ok and self.answer is not None:
            a = self.answer
            return (f"ok: {a['completion_tokens']} tokens in {a['generate_s']:.2f} s "
                    f"(model load {a['load_s']:.2f} s, child wall {self.wall_s:.1f} s)")
        return f"FAILED: {self.detail}"


def generate_in_child(model: Path | str, n_tokens: int = 8, prompt: str = "Once upon a time",
                      python: str | None = None, timeout_s: float = 180.0) -> CheckResult:
    """Load `model` with llama.cpp in a child interpreter and generate `n_tokens`."""
    cmd = [python or sys.executable, "-c", _CHILD, str(model), str(n_tokens), prompt]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return CheckResult(False, None, time.monotonic() - start,
                           detail=f"the child did not answer within {timeout_s:.0f} s")
    except OSError as exc:
        return CheckResult(False, None, time.monotonic() - start,
                           detail=f"cannot start {cmd[0]}: {exc}")
    wall_s = time.monotonic() - start
    answer: dict[str, Any] | None = None
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            answer = json.loads(line)
            break
        except ValueError:
            continue
    if proc.returncode != 0:
        tail = proc.stderr.strip()[-600:]
        return CheckResult(False, proc.returncode, wall_s, answer,
                           detail=f"the child died with {describe_exit(proc.returncode)}"
                                  + (f"; its last words: {tail}" if tail else ""))
    if answer is None or int(answer.get("completion_tokens", 0)) < 1:
        return CheckResult(False, 0, wall_s, answer,
                           detail="the child exited normally but generated no token "
                                  f"(stdout: {proc.stdout.strip()[-300:]!r})")
    return CheckResult(True, 0, wall_s, answer)


def failure_message(result: CheckResult, model: Path | str, python: str | None = None) -> str:
    """The setup's message on a failed check: what failed, on what, and what to do."""
    flags = read_cpu_flags()
    # A virtualenv's interpreter is <venv>/bin/python; its build record is in <venv>.
    build = installed_build(Path(python).parent.parent if python else None)
    build_text = (" ".join(build["cmake_args"]) if build
                  else "not recorded (llama-cpp-python was not installed by tools/setup-venv.sh)")
    return "\n".join([
        f"engine self-check FAILED loading {model}: {result.detail}",
        f"  CPU: {cpu_model_name()} (AMX: {'yes' if 'amx_int8' in flags else 'no'}, "
        f"AVX-512: {'yes' if 'avx512f' in flags else 'no'})",
        f"  engine build flags: {build_text}",
        f"  remedy: {REMEDY}",
    ])


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scalezero.system.engine_check",
        description="Load a model with the installed engine in a child process and "
                    "generate a few tokens; exit 1 with the cause and remedy if it fails.")
    parser.add_argument("--model", type=Path, default=default_model())
    parser.add_argument("--python", help="interpreter whose engine to check (default: this)")
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--timeout-s", type=float, default=180.0)
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"engine self-check: model not found: {args.model}", file=sys.stderr)
        return 2
    result = generate_in_child(args.model, args.tokens, python=args.python,
                               timeout_s=args.timeout_s)
    if not result.ok:
        print(failure_message(result, args.model, args.python), file=sys.stderr)
        return 1
    print(f"engine self-check: {result.summary()}")
    # The native engine (llama-server), where there is one: it must at least run here.
    found = native_server(Path(args.python).parent.parent if args.python else None)
    if found.path is None:
        print(f"engine self-check: llama-server {found.reason}")
        return 0
    version = native_server_version(found.path)
    if version.startswith("error"):
        print(f"engine self-check FAILED: {found.path} does not run: {version}\n"
              f"  remedy: {REMEDY}", file=sys.stderr)
        return 1
    print(f"engine self-check: llama-server {found.path} runs ({version})")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
