"""A fake engine replica for gateway tests and the gateway benchmark.

Speaks the OpenAI API (chat and text completions, streaming or not, embeddings) and
vLLM's /metrics dialect. It has `max_running` decode slots: requests beyond them wait,
and /metrics reports waiting and running as vLLM does. Speed is set per replica
(`ttft_s`, `token_s`), and it can be told to fail the next requests with a status.

In-process: `replica = FakeReplica(...); await replica.start(); replica.url`;
`await replica.crash()` cuts it off like a SIGKILL.
As a process (to be killed for real): `python gateway_fake_replica.py --port 8001`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeReplica:
    name: str = "replica"
    model: str = "chat"
    ttft_s: float = 0.0
    token_s: float = 0.0
    tokens: int = 4
    max_running: int = 64
    host: str = "127.0.0.1"
    port: int = 0
    fail_next: list[int] = field(default_factory=list)  # statuses for the next requests
    hits: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0
    running: int = 0
    waiting: int = 0
    metrics_status: int = 200
    header_names: set[str] = field(default_factory=set)  # every request header name seen

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_running)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        return app

    async def start(self) -> FakeReplica:
        self._runner = web.AppRunner(
            # Cancel the handler when the client leaves, as vLLM aborts the request then.
            self.app(), access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def crash(self) -> None:
        """Die as a killed process would: the port stops accepting and every open
        connection is cut, mid-request or not."""
        runner = self._runner
        assert runner is not None
        for site in list(runner.sites):
            server = site._server  # type: ignore[attr-defined]
            if server is not None:
                server.close()
        assert runner.server is not None
        for transport in list(runner.server._connections.values()):  # handler → transport
            transport.abort()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- handlers -------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(self, request: web.Request) -> web.Response:
        self.hits["metrics"] += 1
        if self.metrics_status != 200:
            return web.Response(status=self.metrics_status, text="metrics broken")
        labels = f'model_name="{self.model}"'
        usage = min(1.0, self.running / max(1, self.max_running))
        text = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{{{labels}}} {float(self.running)}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{{{labels}}} {float(self.waiting)}\n"
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f"vllm:kv_cache_usage_perc{{{labels}}} {usage}\n"
        )
        return web.Response(text=text, content_type="text/plain")

    def _failure(self) -> web.Response | None:
        if not self.fail_next:
            return None
        status = self.fail_next.pop(0)
        body = {"error": {"message": f"{self.name} told to fail with {status}",
                          "type": "server_error", "param": None, "code": status}}
        return web.json_response(body, status=status)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.hits["embeddings"] += 1
        if (failed := self._failure()) is not None:
            return failed
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(x))), 0.5, -0.25]}
            for i, x in enumerate(inputs)
        ]
        return web.json_response({
            "object": "list", "model": body["model"], "data": data,
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
        })

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await request.json()
        self.header_names.update(name.lower() for name in request.headers)
        self.hits["chat" if chat else "completions"] += 1
        if (failed := self._failure()) is not None:
            return failed
        if body.get("model") != self.model:
            return web.json_response(
                {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                           "type": "NotFoundError", "param": None, "code": 404}}, status=404)
        stream = bool(body.get("stream"))
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            if stream:
                return await self._stream(request, body, chat)
            await asyncio.sleep(self.ttft_s + self.token_s * self.tokens)
            return web.json_response(self._whole(body, chat))
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
            self._slots.release()

    def _text(self) -> list[str]:
        return [f"tok{i} " for i in range(self.tokens)]

    def _whole(self, body: dict[str, object], chat: bool) -> dict[str, object]:
        text = "".join(self._text())
        usage = {"prompt_tokens": 3, "completion_tokens": self.tokens,
                 "total_tokens": 3 + self.tokens}
        if chat:
            return {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
            }
        return {
            "id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": body["model"], "usage": usage,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
        }

    async def _stream(
        self, request: web.Request, body: dict[str, object], chat: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        created = int(time.time())
        await asyncio.sleep(self.ttft_s)
        for i, piece in enumerate(self._text()):
            if i:
                await asyncio.sleep(self.token_s)
            if chat:
                chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                         "created": created, "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": None}]}
            else:
                chunk = {"id": "cmpl-fake", "object": "text_completion", "created": created,
                         "model": body["model"],
                         "choices": [{"index": 0, "text": piece, "finish_reason": None,
                                      "logprobs": None}]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--model", default="chat")
    parser.add_argument("--ttft-s", type=float, default=0.0)
    parser.add_argument("--token-s", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--max-running", type=int, default=256)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def serve() -> None:
        replica = FakeReplica(model=args.model, ttft_s=args.ttft_s, token_s=args.token_s,
                              tokens=args.tokens, max_running=args.max_running,
                              host=args.host, port=args.port)
        await replica.start()
        print(f"ready {replica.url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
