"""A stand-in for ``llama_cpp.server`` that the gateway can start in milliseconds.

Run as ``python tests/support/fake_instance.py --host H --port P --model FILE --alias NAME``
(through the gateway's instance command). Like ``scalezero.serving.instance`` it prints the
``@scalezero`` phase markers (runtime_ready, model_loaded, listening), then serves
``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` (JSON or SSE streams,
one made-up token per ``--token-delay-s``) over plain HTTP/1.1 with keep-alive.

Misbehaviour on request, each option also settable as ``FAKE_INSTANCE_<OPTION>`` in the
environment, or in the JSON file given by ``--control`` (read at start-up, so a test can
change what the *next* instance does):

- ``--load-delay-s S``: take S seconds to "load the model" (a slow start);
- ``--fail-at-load``: exit with an error instead of loading;
- ``--crash-after-tokens N``: die (exit code 70) after N tokens of a request, only for
  requests whose prompt contains ``--crash-trigger`` (default: every request);
- ``--error-trigger TEXT``: answer 500 with an empty message (as llama-cpp-python does
  for an exception) to requests whose prompt contains TEXT;
- ``--reject-trigger TEXT``: answer 422 with FastAPI's validation body to such requests.

``--record FILE`` appends each completion request's JSON body to FILE, one per line, so
that tests can see what the gateway sent on. Like ``scalezero.serving.instance``, the chunk of a
streamed answer that carries the finish reason also carries the token usage.

The model file must start with the GGUF magic, as llama.cpp checks, so a bad model file
fails the start with a reason on stderr. Standard library only, besides the marker helpers
of ``scalezero.serving.events`` (the gateway puts the package on PYTHONPATH): it must
start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

from scalezero.serving.events import Lifecycle, emit_marker

CRASH_EXIT_CODE = 70
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           422: "Unprocessable Entity", 500: "Internal Server Error"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def env(name: str, default: str | None = None) -> str | None:
        return os.environ.get(f"FAKE_INSTANCE_{name.upper()}", default)

    parser = argparse.ArgumentParser(prog="fake_instance")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", default="fake")
    parser.add_argument("--token-delay-s", type=float, default=float(env("token_delay_s", "0")))
    parser.add_argument("--first-token-delay-s", type=float,
                        default=float(env("first_token_delay_s", "0")))
    parser.add_argument("--load-delay-s", type=float, default=float(env("load_delay_s", "0")))
    parser.add_argument("--fail-at-load", action="store_true",
                        default=env("fail_at_load", "") not in ("", "0"))
    parser.add_argument("--crash-after-tokens", type=int,
                        default=int(env("crash_after_tokens", "-1")))
    parser.add_argument("--crash-trigger", default=env("crash_trigger", ""))
    parser.add_argument("--max-generate", type=int, default=int(env("max_generate", "64")),
                        help="cap on tokens produced, whatever max_tokens says")
    parser.add_argument("--error-trigger", default=env("error_trigger"))
    parser.add_argument("--reject-trigger", default=env("reject_trigger"))
    parser.add_argument("--record", default=env("record"))
    parser.add_argument("--control", default=env("control"))
    args = parser.parse_args(argv)
    if args.control and os.path.exists(args.control):
        with open(args.control, encoding="utf-8") as fh:
            for key, value in json.load(fh).items():
                setattr(args, key, value)
    return args


class FakeServer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.counter = 0

    # ------------------------------------------------------------------ HTTP
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(length) if length else b""
                await self.route(method, path, raw, writer)
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def send_json(
        self, writer: asyncio.StreamWriter, status: int, body: dict[str, Any]
    ) -> None:
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()

    async def route(
        self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter
    ) -> None:
        if path in ("/v1/models", "/health") and method == "GET":
            await self.send_json(writer, 200, {
                "object": "list",
                "data": [{"id": self.args.alias, "object": "model", "owned_by": "me"}],
            })
            return
        if path not in ("/v1/completions", "/v1/chat/completions"):
            await self.send_json(writer, 404, {"error": {"message": f"no route {path}"}})
            return
        if method != "POST":
            await self.send_json(writer, 405, {"error": {"message": "use POST"}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            await self.send_json(writer, 400, {"error": {"message": "bad JSON"}})
            return
        chat = path.endswith("chat/completions")
        if self.args.record:
            with open(self.args.record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"path": path, "body": body}) + "\n")
        prompt = self.prompt_of(body, chat)
        if self.args.error_trigger and self.args.error_trigger in prompt:
            await self.send_json(writer, 500, {"error": {
                "message": "", "type": "internal_server_error", "param": None, "code": None}})
            return
        if self.args.reject_trigger and self.args.reject_trigger in prompt:
            await self.send_json(writer, 422, {"detail": [
                {"type": "missing", "loc": ["body", "x"], "msg": "Field required"}]})
            return
        await self.complete(body, chat=chat, writer=writer)

    # ----------------------------------------------------------- generation
    def prompt_of(self, body: dict[str, Any], chat: bool) -> str:
        if chat:
            return " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        prompt = body.get("prompt", "")
        return " ".join(prompt) if isinstance(prompt, list) else str(prompt)

    async def tokens(self, body: dict[str, Any], chat: bool):  # type: ignore[no-untyped-def]
        """Yield made-up tokens at the configured pace; crash where told to."""
        n_tokens = min(int(body.get("max_tokens") or 16), self.args.max_generate)
        crash = self.args.crash_after_tokens >= 0 and (
            self.args.crash_trigger in self.prompt_of(body, chat)
        )
        if self.args.first_token_delay_s:
            await asyncio.sleep(self.args.first_token_delay_s)
        for index in range(n_tokens):
            if crash and index >= self.args.crash_after_tokens:
                sys.stderr.write("fatal error: simulated crash mid-request\n")
                sys.stderr.flush()
                os._exit(CRASH_EXIT_CODE)
            if index and self.args.token_delay_s:
                await asyncio.sleep(self.args.token_delay_s)
            yield f"tok{index} "

    async def complete(
        self, body: dict[str, Any], chat: bool, writer: asyncio.StreamWriter
    ) -> None:
        self.counter += 1
        ident = f"{'chatcmpl' if chat else 'cmpl'}-fake{self.counter}"
        created = int(time.time())
        model = str(body.get("model") or self.args.alias)
        obj = "chat.completion" if chat else "text_completion"
        n_prompt = len(self.prompt_of(body, chat).split())
        if not body.get("stream"):
            text = "".join([tok async for tok in self.tokens(body, chat)])
            n_out = len(text.split())
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            await self.send_json(writer, 200, {
                "id": ident, "object": obj, "created": created, "model": model,
                "choices": [choice],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out,
                          "total_tokens": n_prompt + n_out},
            })
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )

        async def event(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            chunk = f"data: {data}\r\n\r\n".encode()
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
            if chat:
                choice["delta"] = delta
            else:
                choice["text"] = delta.get("content", "")
            return {"id": ident, "object": f"{obj}.chunk" if chat else obj,
                    "created": created, "model": model, "choices": [choice]}

        first = True
        n_out = 0
        async for token in self.tokens(body, chat):
            if chat and first:
                await event(chunk({"role": "assistant"}, None))
            first = False
            n_out += 1
            await event(chunk({"content": token}, None))
        last = chunk({}, "length")
        last["usage"] = {"prompt_tokens": n_prompt, "completion_tokens": n_out,
                         "total_tokens": n_prompt + n_out}
        await event(last)
        await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def serve(args: argparse.Namespace) -> None:
    server = FakeServer(args)
    try:
        listener = await asyncio.start_server(server.handle, args.host, args.port)
    except OSError as exc:
        sys.stderr.write(f"error: could not bind {args.host}:{args.port}: {exc}\n")
        sys.exit(1)
    emit_marker(Lifecycle.LISTENING)
    async with listener:
        await listener.serve_forever()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    emit_marker(Lifecycle.RUNTIME_READY)
    with open(args.model, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        sys.stderr.write(f"error: failed to load model from {args.model}: not a GGUF file\n")
        sys.exit(1)
    if args.load_delay_s:
        time.sleep(args.load_delay_s)
    if args.fail_at_load:
        sys.stderr.write("RuntimeError: simulated failure while loading the model\n")
        sys.exit(1)
    emit_marker(Lifecycle.MODEL_LOADED)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
