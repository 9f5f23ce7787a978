"""One serving instance: llama-cpp-python's OpenAI server with lifecycle markers.

Run as ``python -m scalezero.serving.instance --parent-pid PID -- <llama_cpp.server arguments>``.
It runs ``llama_cpp.server`` unchanged (as ``python -m llama_cpp.server`` would), and
prints one marker line on stdout per start-up phase so the gateway can time a cold start
without polling:

    @scalezero runtime_ready <monotonic s>   interpreter up, llama.cpp library loaded
    @scalezero model_loaded  <monotonic s>   weights loaded and context created
    @scalezero listening     <monotonic s>   HTTP socket bound, app started

Streamed answers also get their token usage on their last chunk (see
``_report_stream_usage``), which llama-cpp-python gives whole answers only.

The instance dies with the gateway (parent-death signal plus a watchdog), even when the
gateway is killed with SIGKILL.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from scalezero.serving.events import Lifecycle, emit_marker


def _instrument_llama_cpp() -> None:
    import llama_cpp
    import llama_cpp.server.app
    import uvicorn

    llama_cpp.llama_backend_init()
    emit_marker(Lifecycle.RUNTIME_READY)

    original_init = llama_cpp.Llama.__init__

    def init_and_mark(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        emit_marker(Lifecycle.MODEL_LOADED)

    llama_cpp.Llama.__init__ = init_and_mark  # type: ignore[method-assign]

    original_startup = uvicorn.Server.startup

    async def startup_and_mark(self, *args, **kwargs):
        await original_startup(self, *args, **kwargs)
        if self.started:
            emit_marker(Lifecycle.LISTENING)

    uvicorn.Server.startup = startup_and_mark  # type: ignore[method-assign]
    _report_stream_usage(llama_cpp)


def _report_stream_usage(llama_cpp) -> None:
    """Streamed answers end with their token usage, as whole answers do.

    llama-cpp-python counts usage for whole answers only; the gateway needs it to answer
    OpenAI's ``stream_options.include_usage``. The tokens are counted where they are
    generated, the way llama-cpp-python counts them for a whole answer (the prompt's
    tokens; the generated ones but the end-of-generation token), and the counts are put
    on the chunk that carries the finish reason.
    """
    Llama = llama_cpp.Llama
    original_generate = Llama.generate
    original_completion = Llama.create_completion
    original_chat = Llama.create_chat_completion

    def generate(self, tokens, *args, **kwargs):
        counts = self._scalezero_usage = [len(tokens), 0]
        vocab = self._model.vocab
        for token in original_generate(self, tokens, *args, **kwargs):
            if not llama_cpp.llama_vocab_is_eog(vocab, token):
                counts[1] += 1
            yield token

    def with_usage(llama, chunks):
        for chunk in chunks:
            choices = chunk.get("choices") or ()
            if any(choice.get("finish_reason") for choice in choices):
                prompt, completion = getattr(llama, "_scalezero_usage", (0, 0))
                chunk["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                  "total_tokens": prompt + completion}
            yield chunk

    def create_completion(self, *args, **kwargs):
        result = original_completion(self, *args, **kwargs)
        return with_usage(self, result) if kwargs.get("stream") else result

    def create_chat_completion(self, *args, **kwargs):
        result = original_chat(self, *args, **kwargs)
        return with_usage(self, result) if kwargs.get("stream") else result

    Llama.generate = generate
    Llama.create_completion = create_completion
    Llama.create_chat_completion = create_chat_completion


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        split = argv.index("--")
        own, server_args = argv[:split], argv[split + 1 :]
    else:
        own, server_args = argv, []
    parser = argparse.ArgumentParser(prog="python -m scalezero.serving.instance")
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(own)

    if args.parent_pid is not None:
        from scalezero.system.procs import die_with_parent

        die_with_parent(args.parent_pid)

    _instrument_llama_cpp()
    sys.argv = [os.path.join(os.path.dirname(sys.executable), "llama_cpp.server"), *server_args]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
