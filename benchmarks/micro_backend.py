"""A backend that answers in microseconds, for the proxy-bound benchmark: whatever sits in
front of it (the gateway, vllm-router) is then the bottleneck, not the replica.

asyncio + httptools, one process, keep-alive. POST /v1/chat/completions answers a fixed
OpenAI chat completion, or with `"stream": true` in the body, `--chunks` SSE chunks and
`[DONE]` (each chunk its own write, chunked transfer encoding). GET /metrics is a tiny
vLLM page (nothing waiting or running), GET /health and /v1/models answer 200.

    python benchmarks/micro_backend.py --port 8001 --chunks 64
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httptools

MODEL = "bench"
ANSWER = json.dumps({
    "id": "chatcmpl-micro", "object": "chat.completion", "created": 0, "model": MODEL,
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()
METRICS = (b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n"
           b"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n")
MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()


def _whole(body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Backend(asyncio.Protocol):
    chunks = 64
    gap_s = 0.0  # between chunks; 0: back to back (a proxy may then read several at once)

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        url, body = self.url.split(b"?")[0], b"".join(self.body)
        self.url, self.body = b"", []
        write = self.transport.write
        if url == b"/metrics":
            write(_whole(METRICS, b"text/plain"))
        elif url.startswith(b"/v1/models"):
            write(_whole(MODELS))
        elif url == b"/health":
            write(_whole(b"{}"))
        elif b'"stream": true' in body or b'"stream":true' in body:
            pieces = [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                      b"transfer-encoding: chunked\r\n\r\n"]
            for i in range(self.chunks):
                event = json.dumps({"id": "chatcmpl-micro", "object": "chat.completion.chunk",
                                    "model": MODEL, "choices": [{"index": 0, "delta": {
                                        "content": f"t{i} "}}]})
                pieces.append(_chunk(b"data: " + event.encode() + b"\n\n"))
            pieces.append(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            if self.gap_s:  # paced like tokens: each chunk reaches the proxy on its own
                self._paced(pieces, 0)
                return
            for piece in pieces:
                write(piece)
        else:
            write(_whole(ANSWER))
        if not self.parser.should_keep_alive():
            self.transport.close()

    def _paced(self, pieces: list[bytes], i: int) -> None:
        # One timer after the other (not all at once: timers due in the same tick may
        # fire out of order, and a chunk after the final one breaks the answer).
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(pieces[i])
        if i + 1 < len(pieces):
            asyncio.get_running_loop().call_later(self.gap_s, self._paced, pieces, i + 1)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Backend, "127.0.0.1", port,
                                                            backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--chunk-gap-ms", type=float, default=0.0,
                        help="pause between streamed chunks (0: back to back)")
    args = parser.parse_args()
    Backend.chunks = args.chunks
    Backend.gap_s = args.chunk_gap_ms / 1000
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
