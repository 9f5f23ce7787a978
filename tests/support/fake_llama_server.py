"""A stand-in for llama.cpp's ``llama-server`` start-up: its log lines and its /health.

Run with llama-server's arguments (``--host H --port P ...``; others are ignored) plus
``--load-delay-s S``. Like llama-server it binds its port first, answers ``/health`` with
503 while it "loads the model" (S seconds), prints the log lines that mark the load's
start and end on stderr (stamped as ``--log-prefix --log-timestamps`` stamp them), then
answers 200. With ``--sleep-idle-seconds N`` it "sleeps" after N idle seconds, as
llama-server does: ``GET /props`` says ``is_sleeping``, and ``POST /tokenize`` wakes it
(another load delay) before it answers. ``--never-sleep`` keeps it awake whatever the
timer says. It serves nothing else. Standard library only.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import sys
import threading
import time

state: dict[str, object] = {"ready": False, "stamped": False, "last_task_s": time.time(),
                            "sleep_idle_s": -1.0, "load_delay_s": 0.3, "never_sleep": False}
LOG_START_S = time.time()
lock = threading.Lock()


def sleeping() -> bool:
    timer_s = float(state["sleep_idle_s"])  # type: ignore[arg-type]
    idle_s = time.time() - float(state["last_task_s"])  # type: ignore[arg-type]
    return bool(state["ready"]) and not state["never_sleep"] and 0 <= timer_s <= idle_s


class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/props":
            self._answer(200, {"is_sleeping": sleeping()})
            return
        ready = state["ready"]
        self._answer(200 if ready else 503, {"status": "ok"} if ready else {
            "error": {"message": "Loading model", "type": "unavailable_error", "code": 503}
        })

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path != "/tokenize":
            self._answer(404, {"error": "not here"})
            return
        with lock:  # a sleeping server reloads before it answers
            if sleeping():
                time.sleep(float(state["load_delay_s"]))  # type: ignore[arg-type]
            state["last_task_s"] = time.time()
        self._answer(200, {"tokens": [1]})

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
    parser.add_argument("--sleep-idle-seconds", type=float, default=-1.0)
    parser.add_argument("--never-sleep", action="store_true")
    args, _ = parser.parse_known_args()
    state["stamped"] = args.log_timestamps
    state["sleep_idle_s"] = args.sleep_idle_seconds
    state["load_delay_s"] = args.load_delay_s
    state["never_sleep"] = args.never_sleep
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("build: 1 (fake) with a test stand-in")
    log("srv          main: initializing ...")
    log(f"srv    load_model: loading model '{args.alias}'")
    time.sleep(args.load_delay_s)
    log("srv    load_model: initializing, n_slots = 1, n_ctx_slot = 512, kv_unified = 'false'")
    state["last_task_s"] = time.time()
    state["ready"] = True
    log("srv  llama_server: model loaded")
    log(f"srv  llama_server: listening on http://{args.host}:{args.port}")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
