"""The HTTP side of FakeKubeApi (testing.py): a threaded server on 127.0.0.1 that hands each
request to `FakeKubeApi.handle` and writes its answer, plain JSON or chunked (watches,
logs), as the API server does."""

from __future__ import annotations

import json
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from a3s_runtime_kubernetes.testing import FakeKubeApi


class WatchRequest:
    def __init__(self, resource: str, ns: str, query: dict[str, str]) -> None:
        self.resource, self.ns, self.query = resource, ns, query


class LogRequest:
    def __init__(self, ns: str, name: str, query: dict[str, str], previous: bool) -> None:
        self.ns, self.name, self.query, self.previous = ns, name, query, previous


def api_status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    api: FakeKubeApi
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment: otherwise Nagle + delayed ACK cost 40 ms a call.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        code, payload = self.api.handle(self.command, url.path, query, body)
        if isinstance(payload, WatchRequest):
            self._chunked("application/json",
                          (json.dumps(e) + "\n" for e in self.api.watch_events(payload)))
            return
        if isinstance(payload, LogRequest):  # chunked, as the API server streams logs
            self._chunked("text/plain", self.api.log_lines(payload))
            return
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunked(self, content_type: str, lines: Iterable[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in lines:
                data = line.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve
