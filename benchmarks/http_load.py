"""Load generators for the benchmarks: N clients, each on its own keep-alive connection,
closed loop (the next request when the last is answered) or paced (requests started on a
fixed schedule, so the machine keeps CPU to spare). `light` is asyncio + httptools, the
parser uvicorn uses; `aiohttp` is the usual client. The generator shares the machine's
CPUs with what it measures, and aiohttp costs several times more per request and per
streamed chunk, which lands on every target's latency as run-queue wait.

    ok, failed, seconds, latencies = await run_load("light", url, headers, body, stream=True,
                                                    concurrency=4, requests=1600, warmup=200)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import httptools

Send = Callable[[], Awaitable[bool]]  # one request; True when answered 200


class LightConnection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection that sends a prepared request and reads the whole
    answer (streamed or not) with httptools, keeping nothing but its status."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._end(exc)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        self._end(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._end(exc or ConnectionError("closed by the server"))

    def _end(self, exc: BaseException | None) -> None:
        if self.done is not None and not self.done.done():
            if exc is None:
                self.done.set_result(self.status)
            else:
                self.done.set_exception(exc)

    async def exchange(self, payload: bytes) -> int:
        assert self.transport is not None
        self.parser = httptools.HttpResponseParser(self)
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.done


def light_client(url: str, headers: dict[str, str], body: bytes) -> Callable[[], Send]:
    """A factory of per-client senders, each with its own connection (made on first use,
    and again after a failure)."""
    parts = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    payload = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
               ).encode() + body

    def make() -> Send:
        conn: LightConnection | None = None

        async def send() -> bool:
            nonlocal conn
            try:
                if conn is None or conn.transport is None:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        LightConnection, parts.hostname, parts.port)
                return await conn.exchange(payload) == 200
            except (OSError, httptools.HttpParserError):
                conn = None
                return False

        return send

    return make


def aiohttp_client(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, stream: bool
) -> Callable[[], Send]:
    hdrs = {"Content-Type": "application/json", **headers}

    async def send() -> bool:
        try:
            async with http.post(url, data=body, headers=hdrs) as resp:
                if stream:
                    async for _ in resp.content.iter_any():
                        pass
                else:
                    await resp.read()
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    return lambda: send


async def drive(
    make: Callable[[], Send], concurrency: int, requests: int, warmup: int,
    rate: float | None = None,
) -> tuple[int, int, float, list[float]]:
    """Warm up, then `requests` measured requests from `concurrency` clients; with `rate`
    (requests/s in all) each client starts its requests on a fixed schedule. Returns
    (answered, failed, seconds, latencies of the answered)."""
    latencies: list[float] = []
    failed = 0

    async def client(send: Send, n: int, record: bool, offset: float) -> None:
        nonlocal failed
        interval = concurrency / rate if rate else 0.0
        due = time.perf_counter() + offset * interval
        for _ in range(n):
            if interval:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += interval
            t0 = time.perf_counter()
            ok = await send()
            if record:
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    failed += 1

    senders = [make() for _ in range(concurrency)]
    await asyncio.gather(*(client(s, max(1, warmup // concurrency), False, i / concurrency)
                           for i, s in enumerate(senders)))
    per = max(1, requests // concurrency)
    t0 = time.perf_counter()
    await asyncio.gather(*(client(s, per, True, i / concurrency) for i, s in enumerate(senders)))
    return len(latencies), failed, time.perf_counter() - t0, latencies


async def run_load(
    kind: str, url: str, headers: dict[str, str], body: bytes, stream: bool, concurrency: int,
    requests: int, warmup: int, rate: float | None = None,
) -> tuple[int, int, float, list[float]]:
    """`drive` with the `light` or the `aiohttp` client (`stream`: the answer is SSE)."""
    if kind == "light":
        return await drive(light_client(url, headers, body), concurrency, requests, warmup, rate)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        make = aiohttp_client(http, url, headers, body, stream)
        return await drive(make, concurrency, requests, warmup, rate)
