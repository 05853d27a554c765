"""A real uvicorn server on 127.0.0.1 with `a3s serve`'s HTTP protocol, recording every
socket write it makes, and a raw client: the kit of the protocol tests (test_api_server.py,
test_api_fast_lane.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from a3s_core.api.server import A3SHttpProtocol


class Writes:
    """Every transport write the server made since `serving` began (a `writelines` counts
    as one write: it is one system call)."""

    log: list[bytes] = []


class RecordingProtocol(A3SHttpProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real_write = transport.write  # type: ignore[attr-defined]
        real_writelines = transport.writelines  # type: ignore[attr-defined]

        def write(data: bytes) -> None:
            Writes.log.append(bytes(data))
            real_write(data)

        def writelines(parts: Any) -> None:
            parts = list(parts)
            Writes.log.append(b"".join(parts))
            real_writelines(parts)

        class Spy:
            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

        spy = Spy()
        spy.write = write  # type: ignore[attr-defined]
        spy.writelines = writelines  # type: ignore[attr-defined]
        super().connection_made(spy)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serving(app: Any, **config: Any) -> AsyncIterator[int]:
    """`app` served on a free port (yielded) until the block ends."""
    Writes.log = []
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off",
                                        log_level="warning", http=RecordingProtocol,
                                        timeout_graceful_shutdown=5, **config))
    task = asyncio.get_running_loop().create_task(srv.serve())
    while not srv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield int(srv.servers[0].sockets[0].getsockname()[1])
    finally:
        srv.should_exit = True
        await task


async def talk(port: int, raw: bytes, until: bytes, timeout: float = 5.0) -> bytes:
    """Send `raw` on a new connection; read until `until` has arrived (or the server
    closes), within `timeout`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    got = b""
    async with asyncio.timeout(timeout):
        while until not in got:
            chunk = await reader.read(65536)
            if not chunk:
                break
            got += chunk
    writer.close()
    return got


async def asgi_body(receive: Any) -> bytes:
    """The whole request body, through ASGI `receive` (for the test apps)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body
