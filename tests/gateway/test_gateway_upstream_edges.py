"""The hot path's HTTP client against replicas that send exactly the bytes we choose.

Each case runs a raw asyncio server on 127.0.0.1 and bounds every wait with
`asyncio.wait_for(..., T)`, so a client that would wait forever fails instead. What must
never happen: a hang, a wrong or truncated body handed over as a good one, a connection
reused while it is not clean, a connection leaked.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from upstream_edges_kit import (
    Handler,
    RawServer,
    Reader,
    Writer,
    answer,
    bounded,
    fetch,
    idle,
    read_request,
    reset,
    until,
)

from a3s_core.gateway import upstream
from a3s_core.gateway.upstream import (
    Origin,
    UpstreamError,
    UpstreamPool,
    _Conn,
)


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    p = UpstreamPool(connect_timeout_s=2)
    yield p
    await p.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        servers.append(await RawServer(handler).start())
        return servers[-1]

    yield start
    for s in servers:
        await s.stop()


async def test_chunked_one_byte_per_write_with_extensions_and_trailers(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: real\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\n"
        b"Content-Type: text/evil\r\nX-Request-Id: trailer\r\n\r\n"
    )

    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        while await read_request(reader):
            for i in range(len(chunked)):
                writer.write(chunked[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)

    srv = await serve(handler)
    for _ in range(2):
        resp, body = await fetch(pool, srv.url, "POST", b"{}")
        assert (resp.status, body) == (200, b"hello" + b"z" * 26)
        # Trailers are not the answer's headers (the proxy reads these after the body).
        assert resp.content_type == "application/json"
        assert resp.headers["x-request-id"] == "real"
    assert srv.connections == 1


async def test_interim_1xx_answers_are_skipped(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)  # interim answers in their own writes
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(answer(b"first"))
        await read_request(reader)  # and all in one write
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"second"))
        await read_request(reader)
        writer.write(answer(b"third"))
        await srv.wait_eof(reader)

    srv = await serve(handler)
    for expected in (b"first", b"second", b"third"):
        resp, body = await fetch(pool, srv.url, "POST", b"{}")
        assert (resp.status, body) == (200, expected)
        assert "link" not in resp.headers
    assert srv.connections == 1


async def test_a_101_upgrade_is_an_error(
    pool: UpstreamPool,
    serve: Callable[[Handler], Awaitable[RawServer]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                     b"Connection: upgrade\r\n\r\nbinary")
        await srv.wait_eof(reader)

    srv = await serve(handler)
    with pytest.raises(UpstreamError):
        await bounded(pool.request(srv.url, "POST", "/x", {}, b"{}"))
    await until(lambda: srv.eofs == 1)
    assert idle(pool, srv) == 0
    # Handled by the client, not escaped from data_received into asyncio's error log.
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_answers_without_a_body_keep_the_connection(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await read_request(reader)  # a 304's Content-Length is the resource's, not a body
        writer.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
        await read_request(reader)
        writer.write(answer(b"", extra=""))
        await read_request(reader)
        writer.write(answer(b"after"))
        await srv.wait_eof(reader)

    srv = await serve(handler)
    for status, expected in ((204, b""), (304, b""), (200, b""), (200, b"after")):
        resp, body = await fetch(pool, srv.url)
        assert (resp.status, body) == (status, expected)
    assert srv.connections == 1 and idle(pool, srv) == 1


async def test_connection_close_and_http_1_0_answers_are_not_reused(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        if n == 0:  # says close, and closes
            writer.write(answer(b"closing", extra="Connection: close\r\n"))
        elif n == 1:  # HTTP/1.0, the body delimited by the close
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold body")
        elif n == 2:  # says close but keeps the connection open: the client must close it
            writer.write(answer(b"lingering", extra="Connection: close\r\n"))
            await srv.wait_eof(reader)
        elif n == 3:  # HTTP/1.0 with a length and no keep-alive: not reusable either
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nten!")
            await srv.wait_eof(reader)
        else:
            writer.write(answer(b"fresh"))
            await read_request(reader)
            writer.write(answer(b"reused"))
            await srv.wait_eof(reader)

    srv = await serve(handler)
    for expected in (b"closing", b"old body", b"lingering", b"ten!", b"fresh", b"reused"):
        _, body = await fetch(pool, srv.url)
        assert body == expected
    assert srv.connections == 5
    await until(lambda: srv.eofs == 2)  # connections 2 and 3 closed by the client


# -- the replica going away ---------------------------------------------------------------


async def test_an_idle_connection_closed_as_the_request_goes_out_is_retried_once(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        writer.write(answer(b"one"))
        if n in (0, 1):
            # The replica's idle timeout fires just as the next request arrives: it is
            # read, never answered (a FIN the first time, an RST the second).
            await read_request(reader)
            if n == 1:
                reset(writer)
        else:
            await srv.wait_eof(reader)

    srv = await serve(handler)
    assert (await fetch(pool, srv.url))[1] == b"one"
    assert (await fetch(pool, srv.url))[1] == b"one"  # conn 0 died: retried on conn 1
    assert srv.connections == 2
    assert (await fetch(pool, srv.url))[1] == b"one"  # conn 1 reset: retried on conn 2
    assert srv.connections == 3


async def test_no_retry_once_a_byte_of_the_answer_arrived(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        writer.write(answer(b"one"))
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")  # then the replica dies
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)

    srv = await serve(handler)
    await fetch(pool, srv.url)
    with pytest.raises(UpstreamError):
        await bounded(pool.request(srv.url, "POST", "/x", {}, b"{}"))
    assert srv.connections == 1  # the request was not sent twice


async def test_a_fresh_connection_the_replica_drops_at_once_fails_fast(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    """An overloaded or stopping replica accepts and closes (or resets) at once. From
    another process that close often reaches the client before `request` has resumed
    from connecting (asyncio.wait_for runs the connect in a task of its own): it must be
    an error then, not a wait for headers that never come. The slow connect below makes
    that ordering certain."""

    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        if n % 2:
            reset(writer)

    connect = pool._connect

    async def slow_connect(origin: Origin) -> _Conn:
        conn = await connect(origin)
        await until(lambda: conn.closed)
        return conn

    pool._connect = slow_connect  # type: ignore[method-assign]
    srv = await serve(handler)
    for _ in range(4):
        with pytest.raises(UpstreamError):
            await bounded(pool.request(srv.url, "GET", "/x", {}, b""))
    assert idle(pool, srv) == 0


async def test_resets_mid_headers_and_mid_body_are_errors(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: te")
        elif n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)

    srv = await serve(handler)
    with pytest.raises(UpstreamError):
        await bounded(pool.request(srv.url, "GET", "/x", {}, b""))
    for _ in range(2):
        resp = await bounded(pool.request(srv.url, "GET", "/x", {}, b""))
        with pytest.raises(UpstreamError):
            await bounded(resp.read())
        resp.release()
    assert idle(pool, srv) == 0


async def test_a_body_shorter_than_announced_is_an_error_not_a_short_body(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 99)
        else:  # chunked, the last chunk never comes
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        # A FIN, as a crashed process's kernel sends.

    srv = await serve(handler)
    for _ in range(2):
        resp = await bounded(pool.request(srv.url, "GET", "/x", {}, b""))
        with pytest.raises(UpstreamError, match="before the answer was complete"):
            await bounded(resp.read())
        resp.release()


# -- a connection out of step --------------------------------------------------------------


async def test_bytes_after_a_complete_answer_are_never_taken_for_an_answer(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    extra = (b"HTTP/1.1 201 Created\r\nContent-Type: text/event-stream\r\n"
             b"Content-Length: 4\r\n\r\nEVIL")

    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        while head := await read_request(reader):
            if head.startswith(b"GET /one "):  # the answer and a well-formed extra one
                writer.write(answer(b"one") + extra)
            elif head.startswith(b"GET /two "):  # an unsolicited answer while idle
                writer.write(answer(b"two"))
                await asyncio.sleep(0.05)
                writer.write(extra[:-2])
            elif head.startswith(b"GET /three "):  # garbage while idle
                writer.write(answer(b"three"))
                await asyncio.sleep(0.05)
                writer.write(b"\x00garbage")
            else:
                writer.write(answer(b"clean"))

    srv = await serve(handler)
    for case in ("one", "two", "three"):
        resp, body = await fetch(pool, srv.url, path=f"/{case}")
        assert (resp.status, resp.content_type, body) == (200, "text/plain", case.encode())
        await asyncio.sleep(0.15)  # the extra bytes arrive
        # The connection is out of step with the replica: never used again.
        assert idle(pool, srv) == 0
        assert (await fetch(pool, srv.url, path="/clean"))[1] == b"clean"
    assert srv.connections == 4


# -- back-pressure -------------------------------------------------------------------------


async def test_a_large_body_read_slowly_pauses_and_the_connection_is_reused(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    big = bytes(range(256)) * (3 * upstream.HIGH_WATER // 256)

    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        writer.write(answer(big))
        while await read_request(reader):
            writer.write(answer(b"next"))

    srv = await serve(handler)
    resp = await bounded(pool.request(srv.url, "GET", "/x", {}, b""))
    got, paused = [], False
    try:
        while chunk := await bounded(resp.next_chunk()):
            got.append(chunk)
            await asyncio.sleep(0.02)
            paused = paused or resp._conn.paused
    finally:
        resp.release()
    assert paused and b"".join(got) == big
    assert (await fetch(pool, srv.url))[1] == b"next"
    assert srv.connections == 1


async def test_a_complete_answer_released_unread_while_paused_does_not_stall_the_next(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    """The proxy releases a streamed answer unread when its client leaves; the answer may
    be complete by then, with reading paused over HIGH_WATER. Pooled still paused, the
    connection would never deliver the next answer."""
    big = b"d" * (upstream.HIGH_WATER + 1)  # crosses HIGH_WATER with its last byte

    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        writer.write(answer(big))
        while await read_request(reader):
            writer.write(answer(b"next"))

    srv = await serve(handler)
    resp = await bounded(pool.request(srv.url, "GET", "/x", {}, b""))
    await until(lambda: resp._conn.complete)
    assert resp._conn.paused
    resp.release()  # the client left: nothing read
    assert (await fetch(pool, srv.url))[1] == b"next"


# -- cancellation --------------------------------------------------------------------------


async def test_cancelled_while_waiting_the_connection_is_closed_not_pooled(
    pool: UpstreamPool, serve: Callable[[Handler], Awaitable[RawServer]]
) -> None:
    async def handler(reader: Reader, writer: Writer, n: int) -> None:
        await read_request(reader)
        if n == 0:  # never answers
            await srv.wait_eof(reader)
        elif n == 1:  # half an answer, then nothing
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await srv.wait_eof(reader)
        else:
            writer.write(answer(b"fine"))
            while await read_request(reader):
                writer.write(answer(b"fine"))

    srv = await serve(handler)
    waiting = asyncio.ensure_future(pool.request(srv.url, "GET", "/x", {}, b""))
    await until(lambda: srv.connections == 1)
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await until(lambda: srv.eofs == 1)

    async def read_half() -> None:
        resp = await pool.request(srv.url, "GET", "/x", {}, b"")
        try:
            assert await resp.next_chunk() == b"abc"
            await resp.next_chunk()  # waits forever
        finally:
            resp.release()

    reading = asyncio.ensure_future(read_half())
    await until(lambda: srv.connections == 2)
    await asyncio.sleep(0.05)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    await until(lambda: srv.eofs == 2)
    assert idle(pool, srv) == 0
    for _ in range(2):
        assert (await fetch(pool, srv.url))[1] == b"fine"
    assert srv.connections == 3


async def test_a_connect_that_never_completes_times_out() -> None:
    # A listener that never accepts, its backlog full: the kernel drops further SYNs, so
    # a connect hangs until the pool's own deadline.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        await asyncio.sleep(0.05)
        pool = UpstreamPool(connect_timeout_s=0.3)
        with pytest.raises(upstream.ConnectFailed, match=r"no answer within 0\.3 s"):
            await bounded(pool.request(f"http://127.0.0.1:{port}", "GET", "/x", {}, b""))
        await pool.close()
    finally:
        for s in fillers:
            s.close()
        listener.close()
