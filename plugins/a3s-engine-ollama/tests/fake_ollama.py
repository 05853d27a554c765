#!/usr/bin/env python3
"""A stand-in `ollama` binary for the entry-script test: `serve` binds OLLAMA_HOST and
answers /api/version and /api/tags; the client verbs log themselves and need a server.
`run` stands for a model that never stops answering (FAKE_RUN_FOREVER=1: a base model
given an empty prompt); `ps` lists the model once a `run` has started."""

from __future__ import annotations

import http.server
import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

host, _, port = os.environ["OLLAMA_HOST"].rpartition(":")
verb = sys.argv[1]
with Path(os.environ["FAKE_OLLAMA_LOG"]).open("a") as log:
    log.write(" ".join([verb, os.environ["OLLAMA_HOST"], *sys.argv[2:]]) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"version": "0.12.6", "models": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if verb == "serve":
    server = http.server.HTTPServer((host, int(port)), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
try:
    urllib.request.urlopen(f"http://{host}:{port}/api/tags", timeout=2).read()
except OSError:
    sys.exit(1)
if verb == "pull":
    time.sleep(float(os.environ.get("FAKE_PULL_SECONDS", "0")))
if verb == "run":
    (Path(os.environ["FAKE_OLLAMA_LOG"]).parent / "loaded").write_text(sys.argv[2] + ":latest")
    while os.environ.get("FAKE_RUN_FOREVER") == "1":
        time.sleep(0.1)
if verb == "ps":
    print("NAME    ID    SIZE    PROCESSOR    CONTEXT    UNTIL")
    loaded = Path(os.environ["FAKE_OLLAMA_LOG"]).parent / "loaded"
    if loaded.exists():
        print(loaded.read_text() + "    abc    6 MB    100% CPU    512    Forever")
