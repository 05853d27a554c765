"""Shared pieces of the upstream client's edge tests: raw servers that send exactly the
bytes a test chooses, and helpers that wait with a bound."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import TypeVar

from a3s_core.gateway.upstream import (
    UpstreamPool,
    UpstreamResponse,
)

T = 5.0
X = TypeVar("X")
Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Handler = Callable[[Reader, Writer, int], Awaitable[None]]


async def bounded(aw: Awaitable[X]) -> X:
    return await asyncio.wait_for(aw, T)


def answer(body: bytes = b"ok", status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n{extra}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def read_request(reader: Reader) -> bytes | None:
    """One request's head (its body read and dropped); None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    if m:
        await reader.readexactly(int(m.group(1)))
    return head


def reset(writer: Writer) -> None:
    """Close with an RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def until(cond: Callable[[], object]) -> None:
    for _ in range(250):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


class RawServer:
    """Runs `handler(reader, writer, n)` for the n-th connection (from 0)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.eofs = 0  # connections whose client closed its side
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader: Reader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        n = self.connections
        self.connections += 1
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self.handler(reader, writer, n)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stopped; ending normally spares asyncio's "exception never retrieved"
        finally:
            writer.close()
            self._tasks.discard(task)

    async def wait_eof(self, reader: Reader) -> None:
        """Park until the client closes this connection (and count it)."""
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.eofs += 1

    async def stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def fetch(
    pool: UpstreamPool, url: str, method: str = "GET", body: bytes = b"", path: str = "/x"
) -> tuple[UpstreamResponse, bytes]:
    """One whole exchange as the proxy does it: request, read, release (in a finally)."""
    resp = await bounded(pool.request(url, method, path, {}, body))
    try:
        return resp, await bounded(resp.read())
    finally:
        resp.release()


def idle(pool: UpstreamPool, srv: RawServer) -> int:
    """Pooled connections still open (closed ones are dropped when next taken)."""
    host, port = srv.url.removeprefix("http://").split(":")
    return sum(not c.closed for c in pool._idle.get((host, int(port), False), []))


# -- framing ------------------------------------------------------------------------------
