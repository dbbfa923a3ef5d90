"""A small OpenAI-compatible server for the serve-lifecycle tests: GET /v1/models, POST /v1/chat/completions.

    python tests/openai_server.py --port 8011 [--model NAME] [--pidfile F] [--startup-delay S] [--fail-after S]
                                     [--reply-delay S]

It answers every chat with the embedded teacher program, starts a helper child process in its own process
group (as real servers start workers) and writes both process ids to --pidfile, so that a test can check that
nothing outlives the stage. --fail-after exits with code 3 after printing an error, before it listens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="served-teacher")
    ap.add_argument("--pidfile")
    ap.add_argument("--startup-delay", type=float, default=0.0)
    ap.add_argument("--fail-after", type=float, default=None)
    ap.add_argument("--reply-delay", type=float, default=0.0)
    a = ap.parse_args()
    # SIGTERM unwinds (as real servers stop their workers on it), so the helper is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            json.dump({"server": os.getpid(), "helper": helper.pid}, f)
    try:
        print(f"loading model {a.model} ...", flush=True)
        if a.fail_after is not None:
            time.sleep(a.fail_after)
            print("RuntimeError: CUDA out of memory while loading the weights (simulated)", flush=True)
            return 3
        time.sleep(a.startup_delay)
        return serve(a)
    finally:
        helper.terminate()
        helper.wait()


def serve(a) -> int:
    from zephyr_recipes.embedded import tasks

    class Handler(BaseHTTPRequestHandler):
        def _send(self, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self._send({"object": "list", "data": [{"id": a.model, "object": "model"}]})
            else:
                self.send_error(404)

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                self.send_error(404)
                return
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            time.sleep(a.reply_delay)
            answer = tasks.teacher(req["messages"])
            self._send({"object": "chat.completion", "model": req.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                     "finish_reason": "stop"}]})

        def log_message(self, fmt, *args):
            print("request: " + fmt % args, flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"listening on 127.0.0.1:{a.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
