"""A stand-in for llama.cpp's ``llama-server`` start-up: its log lines and its /health.

Run with llama-server's arguments (``--host H --port P ...``; others are ignored) plus
``--load-delay-s S``. Like llama-server it binds its port first, answers ``/health`` with
503 while it "loads the model" (S seconds), prints the log lines that mark the load's
start and end on stderr (stamped as ``--log-prefix --log-timestamps`` stamp them), then
answers 200. It serves nothing else. Standard library only.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import sys
import threading
import time

state = {"ready": False, "stamped": False}
LOG_START_S = time.time()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ready = state["ready"]
        body = json.dumps({"status": "ok"} if ready else {
            "error": {"message": "Loading model", "type": "unavailable_error", "code": 503}
        }).encode()
        self.send_response(200 if ready else 503)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def log(line: str) -> None:
    if state["stamped"]:
        us = int((time.time() - LOG_START_S) * 1e6)
        line = (f"{us // 60_000_000}.{us // 1_000_000 % 60:02d}.{us // 1000 % 1000:03d}."
                f"{us % 1000:03d} I {line}")
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default="fake")
    parser.add_argument("--load-delay-s", type=float, default=0.3)
    parser.add_argument("--log-timestamps", action="store_true")
    args, _ = parser.parse_known_args()
    state["stamped"] = args.log_timestamps
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("build: 1 (fake) with a test stand-in")
    log("srv          main: initializing ...")
    log(f"srv    load_model: loading model '{args.alias}'")
    time.sleep(args.load_delay_s)
    log("srv    load_model: initializing, n_slots = 1, n_ctx_slot = 512, kv_unified = 'false'")
    state["ready"] = True
    log("srv  llama_server: model loaded")
    log(f"srv  llama_server: listening on http://{args.host}:{args.port}")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
