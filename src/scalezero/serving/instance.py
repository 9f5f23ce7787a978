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

Two more endpoints let the gateway keep the process while it gives up the model (the
runtime-warm tier, see ``_add_sleep_endpoints``):

    POST /scalezero/sleep   close the model and free its memory; the process stays
    POST /scalezero/wake    load it again; answers {"load_s": ...}

Both are idempotent. A request that comes while the model sleeps loads it first, as
llama-cpp-python's proxy does for a model it does not hold.

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
    marked = [False]

    def init_and_mark(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        # Only the start's load is a phase of the start; a wake's load is timed by wake.
        if not marked[0]:
            marked[0] = True
            emit_marker(Lifecycle.MODEL_LOADED)

    llama_cpp.Llama.__init__ = init_and_mark  # type: ignore[method-assign]

    original_startup = uvicorn.Server.startup

    async def startup_and_mark(self, *args, **kwargs):
        await original_startup(self, *args, **kwargs)
        if self.started:
            emit_marker(Lifecycle.LISTENING)

    uvicorn.Server.startup = startup_and_mark  # type: ignore[method-assign]
    _report_stream_usage(llama_cpp)
    _add_sleep_endpoints(llama_cpp.server.app)


def _add_sleep_endpoints(app_module) -> None:
    """``POST /scalezero/sleep`` and ``/scalezero/wake`` on the app the server creates.

    The model is swapped under the same two locks llama-cpp-python's request handlers
    take (``get_llama_proxy``), so a sleep waits for the request in progress and no
    request sees a model being closed. ``llama_cpp.server.__main__`` reads ``create_app``
    from the module when runpy runs it, so the wrapper is in place before the app exists.
    """
    import contextlib
    import gc
    import time

    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    original_create_app = app_module.create_app

    def proxy_lock():
        return contextlib.asynccontextmanager(app_module.get_llama_proxy)()

    async def sleep() -> JSONResponse:
        async with proxy_lock() as proxy:
            model = proxy._current_model
            was_loaded = model is not None
            if was_loaded:
                proxy._current_model = None

                def close() -> None:
                    model.close()
                    # close() unmaps the weights and frees the context; the Python
                    # objects around them and the heap pages malloc keeps go here.
                    gc.collect()
                    _trim_heap()

                # In a worker thread, as the request handlers run the model: the event
                # loop keeps answering meanwhile.
                await run_in_threadpool(close)
                del model
        return JSONResponse({"sleeping": True, "was_loaded": was_loaded})

    async def wake() -> JSONResponse:
        async with proxy_lock() as proxy:
            started_s = time.monotonic()
            was_loaded = proxy._current_model is not None
            await run_in_threadpool(proxy)  # loads the default model when none is held
            load_s = time.monotonic() - started_s
        return JSONResponse({"sleeping": False, "was_loaded": was_loaded, "load_s": load_s})

    def create_app(*args, **kwargs):
        app = original_create_app(*args, **kwargs)
        app.add_api_route("/scalezero/sleep", sleep, methods=["POST"], include_in_schema=False)
        app.add_api_route("/scalezero/wake", wake, methods=["POST"], include_in_schema=False)
        return app

    app_module.create_app = create_app


def _trim_heap() -> None:
    """Give freed heap pages back to the kernel (glibc's malloc_trim); nothing elsewhere."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


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
