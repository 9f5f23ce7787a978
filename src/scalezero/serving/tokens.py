"""Exact prompt token counts with the model's own tokenizer.

Counting loads only the vocabulary (no weights). It runs in a child process with CUDA
hidden, so that a measured run never gains a CUDA context from bookkeeping.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from scalezero.system.procs import package_env


def count_tokens(model_path: Path, texts: Sequence[str]) -> list[int]:
    """Tokens per text, as llama-cpp-python's completion endpoint counts a prompt."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    counts = []
    for text in texts:
        if text == "":
            counts.append(1)  # the server substitutes a lone BOS token for an empty prompt
        else:
            counts.append(len(llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)))
    return counts


def count_tokens_isolated(
    model_path: Path, texts: Sequence[str], timeout_s: float = 300
) -> list[int]:
    env = {**package_env(), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "scalezero.serving.tokens", str(model_path)],
        input=json.dumps(list(texts)),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=True,
    )
    counts = json.loads(result.stdout)
    if len(counts) != len(texts):
        raise RuntimeError("token counter returned a wrong number of counts")
    return [int(c) for c in counts]


def main() -> None:
    texts = json.loads(sys.stdin.read())
    print(json.dumps(count_tokens(Path(sys.argv[1]), texts)))


if __name__ == "__main__":
    main()
