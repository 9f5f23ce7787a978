"""A process that holds a minimal model and does nothing: the context-only idle level.

Between "no process" (bare idle) and "model loaded" there is a third level: a process
with the runtime and a device context but (almost) no weights. On HBM GPUs it costs
tens of watts by itself, so the runner records it as its own baseline window. The probe
loads the `tiny` synthetic shape (a few MB) with the same offload settings as the
instances and prints one marker line once it is loaded.

    python -m scalezero.serving.context_probe --model tiny.gguf --n-gpu-layers -1
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from scalezero.serving.events import MARKER, Lifecycle, emit_marker
from scalezero.system.procs import die_with_parent

#: The start of the line the probe prints once its model is loaded.
LOADED_MARKER = f"{MARKER} {Lifecycle.CONTEXT_LOADED}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scalezero.serving.context_probe")
    parser.add_argument("--model", required=True)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--n-ctx", type=int, default=256)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    from llama_cpp import Llama

    llm = Llama(model_path=args.model, n_gpu_layers=args.n_gpu_layers, n_ctx=args.n_ctx,
                verbose=False)
    # The handler comes first: whoever reads the marker may stop the probe at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    emit_marker(Lifecycle.CONTEXT_LOADED)
    while llm is not None:  # hold the context until told to stop
        time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
