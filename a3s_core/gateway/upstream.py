"""A small keep-alive HTTP/1.1 client for the hot path, on asyncio protocols and httptools.

Why not aiohttp here: measured on this platform's benchmark box, an aiohttp round trip
costs ~300 µs of CPU per request against ~30 µs for this client, and the gateway's whole
budget is 1 ms (benchmarks/bench_gateway.py). The client does only what forwarding needs:
plain or TLS connections pooled per replica, one request per connection at a time,
Content-Length bodies out, fixed-length or chunked bodies in (httptools parses them, the
same C parser uvicorn uses), body chunks handed over as they arrive, back-pressure, and
"closed before the answer was complete" reported as an error. The scraper keeps aiohttp.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

CONNECT_TIMEOUT_S = 5.0
IDLE_PER_ORIGIN = 256
HIGH_WATER = 1 << 20  # pause reading a replica whose answer the client reads slower
STARTS_MAX = 4096  # request lines kept made (see UpstreamPool._start_of)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
KEEPALIVE_IDLE_S = 30  # TCP keep-alive: first probe after this long without traffic,
KEEPALIVE_INTERVAL_S = 10  # then one every this often,
KEEPALIVE_COUNT = 3  # and the connection fails after this many go unanswered


class UpstreamError(Exception):
    """The replica could not be reached, or the connection ended before the answer did."""


class ConnectFailed(UpstreamError):
    pass


Origin = tuple[str, int, bool]


def origin_of(base_url: str) -> Origin:
    parts = urlsplit(base_url)
    tls = parts.scheme == "https"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"replica URL {base_url!r} is not an http(s) URL")
    return parts.hostname, parts.port or (443 if tls else 80), tls


class _Conn(asyncio.Protocol):
    """One connection; carries one exchange at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.loop = asyncio.get_running_loop()
        # One parser for the connection's life: llhttp starts on the next message once one
        # is complete, and a connection is reused only after a complete keep-alive answer.
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        # Made here, not once the request is written: a connection can be lost (or answer)
        # before that, and the callbacks must have a future to fail (or resolve).
        self.headers_future: asyncio.Future[None] = self.loop.create_future()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.received_any = False
        self.keep_alive = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _keep_alive_probes(sock)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(UpstreamError(f"malformed HTTP from replica: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and exc is None and self._delimited_by_close():
            self.complete = True  # HTTP/1.0 style: the body ends where the connection does
            self._wake()
            return
        if not self.complete:
            self._fail(UpstreamError(
                "replica closed the connection before the answer was complete"
                + (f" ({exc})" if exc else "")
            ))

    def _delimited_by_close(self) -> bool:
        if not self.status:  # no status line yet: nothing to complete
            return False
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        return not chunked and "content-length" not in self.headers

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # Bytes after the whole answer, which no request asked for: the connection is
            # out of step. Raising stops the parser (so they never mix into this answer,
            # nor become the next one) and data_received closes the connection.
            raise UpstreamError("replica sent bytes after its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.status:  # a trailer after a chunked body: not one of the answer's headers
            return
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows. (A
            # 101 makes the parser raise HttpParserUpgrade next: an error.)
            self.headers.clear()
            return
        self.status = status
        # Asked here: llhttp answers False once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()
        if not self.headers_future.done():
            self.headers_future.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status:  # else the end of an interim 1xx answer
            self.complete = True
            self._wake()

    # -- helpers ----------------------------------------------------------------------------

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        if not self.headers_future.done():
            self.headers_future.set_exception(exc)
        self._wake()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed


def _keep_alive_probes(sock: Any) -> None:  # socket.socket, or uvloop's PseudoSocket
    """TCP keep-alive probes on a replica connection: if the replica's host vanishes (a
    node lost, no FIN and no RST ever comes), a request waiting on it fails after about
    KEEPALIVE_IDLE_S + KEEPALIVE_COUNT × KEEPALIVE_INTERVAL_S instead of waiting forever.
    A replica that is alive but slow is not affected: its kernel answers the probes."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    except OSError:  # not a TCP socket (a test double): nothing to probe
        pass


class UpstreamResponse:
    def __init__(self, pool: UpstreamPool, conn: _Conn) -> None:
        self._pool = pool
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._done = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def next_chunk(self) -> bytes:
        """The body bytes received since the last call (waiting for some), b"" at the end."""
        conn = self._conn
        while True:
            if conn.chunks:
                data = b"".join(conn.chunks) if len(conn.chunks) > 1 else conn.chunks[0]
                conn.chunks.clear()
                conn.buffered = 0
                if conn.paused and conn.transport is not None:
                    conn.paused = False
                    conn.transport.resume_reading()
                return data
            if conn.complete:
                return b""
            if conn.error is not None:
                raise conn.error
            conn.waiter = conn.loop.create_future()
            await conn.waiter

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.next_chunk():
            yield chunk

    async def read(self) -> bytes:
        conn = self._conn
        if conn.complete:  # the whole body is in (a small answer, usually): no waiting
            return await self.next_chunk()
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back if the exchange completed; otherwise close it (which
        is how a replica learns the client went away)."""
        if self._done:
            return
        self._done = True
        self._pool._give_back(self._conn)


class UpstreamPool:
    """Keep-alive connections per replica origin."""

    def __init__(self, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[Origin, list[_Conn]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._origins: dict[str, Origin] = {}
        self._starts: dict[tuple[str, str, str], tuple[Origin, bytes]] = {}
        self._closed = False

    async def request(
        self, base_url: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> UpstreamResponse:
        """Send the request; returns once the status line and headers are in."""
        known = self._starts.get((base_url, method, path))
        if known is None:
            known = self._start_of(base_url, method, path)
        origin, start = known
        fields = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        if body or method in _BODY_METHODS:
            fields += f"Content-Length: {len(body)}\r\n\r\n"
        else:
            fields += "\r\n"
        payload = b"".join((start, fields.encode("latin-1"), body))
        # A pooled connection the replica has just closed fails before any byte of an
        # answer: then nothing was processed, and a fresh connection is safe.
        for reused in (True, False):
            conn = self._take(origin) if reused else await self._connect(origin)
            if conn is None:
                continue
            assert conn.transport is not None
            conn.transport.write(payload)
            try:
                await conn.headers_future
            except UpstreamError:
                conn.close()
                if reused and not conn.received_any:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            return UpstreamResponse(self, conn)
        raise AssertionError("unreachable")

    def _start_of(self, base_url: str, method: str, path: str) -> tuple[Origin, bytes]:
        """The origin and the request line with Host, made once per replica, method and
        path (a gateway sends few distinct ones; bounded all the same)."""
        origin = self._origins.get(base_url)
        if origin is None:
            try:
                origin = self._origins[base_url] = origin_of(base_url)
            except ValueError as exc:
                raise ConnectFailed(str(exc)) from None
        start = f"{method} {path} HTTP/1.1\r\nHost: {origin[0]}:{origin[1]}\r\n"
        known = origin, start.encode("latin-1")
        if len(self._starts) < STARTS_MAX:
            self._starts[(base_url, method, path)] = known
        return known

    def _take(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn._reset()
                return conn
        return None

    async def _connect(self, origin: Origin) -> _Conn:
        host, port, tls = origin
        loop = asyncio.get_running_loop()
        context = None
        if tls:
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for runs the connect in a task of
            # its own and can swallow a cancellation that lands as the connect completes.
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Conn(origin), host, port, ssl=context
                )
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise ConnectFailed(
                f"cannot connect to {host}:{port}: no answer within {self.connect_timeout_s:g} s"
            ) from exc
        except OSError as exc:
            raise ConnectFailed(
                f"cannot connect to {host}:{port}: {str(exc) or type(exc).__name__}"
            ) from exc
        return conn

    def _give_back(self, conn: _Conn) -> None:
        if self._closed or not conn.reusable():
            conn.close()
            return
        if conn.paused:
            # A complete answer released unread (its client left) while reading was paused
            # over HIGH_WATER: pooled paused, the connection would never deliver the next.
            conn.paused = False
            assert conn.transport is not None
            conn.transport.resume_reading()
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= IDLE_PER_ORIGIN:
            conn.close()
        else:
            idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing
