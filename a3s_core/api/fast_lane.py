"""The data plane's own lane through `a3s serve`'s HTTP protocol (issue 16).

A request for a gateway path (`gateway/asgi.py: match`) that reaches `A3SHttpProtocol`
is answered without ASGI: no scope dict, no `RequestResponseCycle`, no message dicts
through `receive`/`send`, no proxy-headers middleware in between. The protocol hands the
gateway the method, the headers it reads, the route and an `Exchange`, which takes the
body as the parser delivers it and writes the answer straight to the transport. Measured
with benchmarks/profile_gateway.py: about a third of the gateway's CPU per plain request
was that layer (a bare httptools proxy in front of the same backends spends a quarter of
the gateway's CPU per request).

Everything else takes uvicorn's way, unchanged: the control API, WebSocket upgrades, HEAD
requests, and every request when `limit_concurrency` is set. The `Exchange` stands in for
uvicorn's cycle wherever the protocol touches one (body arriving, message complete,
connection lost, shutdown, pipelined requests queued), so the connection's handling — the
keep-alive timer, pipelined requests answered in order, read back-pressure, a graceful
shutdown that waits for the request's task — stays uvicorn's own. What goes on the wire
is what uvicorn writes for the same answer (tests/core/test_api_fast_lane.py compares).

    class DataPlane(Protocol):   # PlatformApp.data_plane / GatewayApp.data_plane: a Gateway
        async def answer(self, method, headers, route, receive, reply) -> None: ...
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
)

from a3s_core.gateway.asgi import Headers, Message, Receive, Reply, Route

if TYPE_CHECKING:
    from uvicorn.protocols.http.flow_control import FlowControl

# Above this, head and body go out as two buffers of one write (no copy of the body).
JOIN_UNDER = 64 * 1024
DISCONNECT: Message = {"type": "http.disconnect"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUSES = (204, 304)
_log = logging.getLogger("uvicorn.error")


class DataPlane(Protocol):
    """What an app offers the fast lane (as its `data_plane` attribute): the gateway."""

    async def answer(self, method: str, headers: dict[str, str], route: Route,
                     receive: Receive, reply: Reply, body: bytes | None = None) -> None:
        """Answer one request through `reply`: always, errors included (in the client's
        terms). `headers` holds the ones the gateway reads (lower-case names, decoded);
        `receive` yields the body as ASGI `http.request` messages, then `http.disconnect`
        once the client has gone. `body`: the whole body when it was already in as the
        request started (`receive` then waits for the client to leave), else None."""


def status_line(status: int) -> bytes:
    return STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status


class Exchange(Reply):
    """One data-plane request on a connection, and its answer.

    To the protocol it is the connection's current cycle (the attributes and methods of
    uvicorn's `RequestResponseCycle` that `HttpToolsProtocol` uses); to the gateway it is
    the `Reply` (and, through `receive`, the body and the disconnect)."""

    __slots__ = (
        "_flag", "_flush", "_head", "_remaining", "_waiter", "body", "chunked", "disconnected",
        "flow", "handler", "headers", "keep_alive", "logged_client", "method", "more_body",
        "protocol", "response_complete", "route", "transport", "url",
        "waiting_for_100_continue",
    )

    def __init__(self, protocol: HttpToolsProtocol, handler: DataPlane, method: str,
                 route: Route, headers: dict[str, str], keep_alive: bool,
                 expect_100_continue: bool) -> None:
        self.started = False
        self.protocol: HttpToolsProtocol | None = protocol
        self.transport: asyncio.Transport = protocol.transport
        self.flow: FlowControl = protocol.flow
        self.handler: DataPlane | None = handler
        self.method = method
        self.route = route
        self.url: bytes = protocol.url  # as sent (for the access log)
        # The client as uvicorn's access log names it (behind a trusted proxy, the one
        # X-Forwarded-For names), worked out only when that log is on.
        self.logged_client = _client_of(protocol) if protocol.access_log else ""
        self.headers = headers
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = b""
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None
        self._head: bytes | None = None  # a streamed answer's head, sent with its first bytes
        self._flush: asyncio.Handle | None = None  # … or at the end of the loop turn
        self.chunked = False
        self._remaining = 0  # bytes still owed under a Content-Length the caller gave

    # -- the protocol's side (as uvicorn's cycle) ----------------------------------------

    @property
    def message_event(self) -> Exchange:
        """The protocol calls `cycle.message_event.set()`: this object is its own event
        (a property, not an attribute: a reference to itself would be a cycle)."""
        return self

    def set(self) -> None:
        """Body bytes arrived, the request is complete, or the client left."""
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def run_asgi(self, app: Any) -> Any:
        """The coroutine the protocol runs as this request's task (named as uvicorn's
        cycle method is, since the protocol starts pipelined requests through it)."""
        return self.run()

    async def run(self) -> None:
        handler = self.handler
        assert handler is not None
        body = None
        if not self.more_body and not self.waiting_for_100_continue and not self.disconnected:
            # The whole body is in (a small request, nearly always): handed over as is.
            body, self.body, self._flag = self.body, b"", False
        try:
            await handler.answer(self.method, self.headers, self.route, self.receive, self,
                                 body)
        except BaseException as exc:  # as uvicorn's run_asgi: log, and never leave it open
            _log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.started:
                self._internal_error()
            else:
                self.transport.close()
        else:
            if not self.started and not self.disconnected:
                _log.error("ASGI callable returned without starting response.")
                self._internal_error()
            elif not self.response_complete and not self.disconnected:
                _log.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            # The protocol keeps this object as its cycle until the next request: let go of
            # the protocol and the gateway (no reference cycle per request).
            self.protocol = None
            self.handler = None

    # -- the gateway's side: the body, and the client leaving ----------------------------

    async def receive(self) -> Message:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(CONTINUE)
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            if not self._flag:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            self._flag = False
        if self.disconnected or self.response_complete:
            return DISCONNECT
        message = {"type": "http.request", "body": self.body, "more_body": self.more_body}
        self.body = b""
        return message

    # -- the answer (Reply) ----------------------------------------------------------------

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        if self.started:
            raise RuntimeError("the answer has already started")
        if self.flow.write_paused and not self.disconnected:
            # The client reads slower than it is answered (pipelining, say): wait, as
            # uvicorn's send does, rather than pile answers up in the transport.
            await self.flow.drain()
        if self.disconnected:
            self.started = True
            return
        content = self._head_lines(status, headers)
        content.append(b"content-length: %d\r\n" % len(body))
        self._finish_head(content)
        if len(body) < JOIN_UNDER:
            content.append(body)
            self.transport.write(b"".join(content))
        else:
            self.transport.writelines((b"".join(content), body))
        self._complete()

    async def start(self, status: int, headers: Headers) -> None:
        if self.started:
            raise RuntimeError("the answer has already started")
        content = self._head_lines(status, headers, framing=True)
        if self._remaining < 0:  # no Content-Length among the headers
            self._remaining = 0
            if status not in _NO_BODY_STATUSES:
                self.chunked = True
                content.append(b"transfer-encoding: chunked\r\n")
        self._finish_head(content)
        # Held until the first body bytes, to go out in the same write, or the end of this
        # event-loop turn if they are not ready by then (the client sees the head at once).
        self._head = b"".join(content)
        self._flush = asyncio.get_running_loop().call_soon(self._write_head)

    def _write_head(self) -> None:
        self._flush = None
        head, self._head = self._head, None
        if head is not None and not self.disconnected and not self.transport.is_closing():
            self.transport.write(head)

    async def chunk(self, data: bytes) -> None:
        await self._body(data, more=True)

    async def end(self, data: bytes = b"") -> None:
        await self._body(data, more=False)

    async def _body(self, data: bytes, more: bool) -> None:
        if not self.started:
            raise RuntimeError("the answer has not started")
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected or self.response_complete:
            return
        head, self._head = self._head, None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        parts = [head] if head is not None else []
        if self.chunked:
            if data:
                parts += (b"%x\r\n" % len(data), data, b"\r\n")
            if not more:
                parts.append(b"0\r\n\r\n")
        else:
            if len(data) > self._remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self._remaining -= len(data)
            parts.append(data)
        if len(data) < JOIN_UNDER:
            self.transport.write(b"".join(parts))
        else:
            self.transport.writelines(parts)
        if not more:
            if self._remaining:
                raise RuntimeError("Response content shorter than Content-Length")
            self._complete()

    def _head_lines(self, status: int, headers: Headers, framing: bool = False) -> list[bytes]:
        """The status line and headers (uvicorn's defaults first, as its `send` writes
        them). `framing`: the caller may give Content-Length or Connection itself.
        Headers are checked before the answer counts as started, so a caller whose
        headers are refused can still answer with an error."""
        protocol = self.protocol
        content = [status_line(status)]
        if protocol is not None:
            content.append(default_header_bytes(protocol.server_state.default_headers))
        names = b"".join([name for name, _ in headers])
        if HEADER_RE.search(names):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"\t".join([value for _, value in headers])):
            raise RuntimeError("Invalid HTTP header value.")
        self.started = True
        self.waiting_for_100_continue = False
        lower = names.lower() != names
        self._remaining = -1
        for name, value in headers:
            if lower:
                name = name.lower()
            if framing:
                if name == b"content-length" and self._remaining < 0:
                    self._remaining = int(value.decode())
                elif name == b"connection" and b"close" in [
                        t.strip().lower() for t in value.split(b",")]:
                    self.keep_alive = False
                    continue  # written once, below
            content += (name, b": ", value, b"\r\n")
        if protocol is not None and protocol.access_log:
            _access_log(protocol, self.logged_client, self.method, self.url, status)
        return content

    def _finish_head(self, content: list[bytes]) -> None:
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")

    def _complete(self) -> None:
        self.response_complete = True
        self.set()  # a waiting `receive` returns the disconnect: the exchange is over
        if not self.keep_alive:
            self.transport.close()
        protocol = self.protocol
        if protocol is not None:
            protocol.on_response_complete()

    def _internal_error(self) -> None:
        """uvicorn's answer when the app failed before answering (nobody to answer once
        the client has gone)."""
        if self.disconnected or self.transport.is_closing():
            self.started = True
            return
        self.keep_alive = False
        body = b"Internal Server Error"
        content = self._head_lines(500, [(b"content-type", b"text/plain; charset=utf-8")])
        content.append(b"content-length: %d\r\n" % len(body))
        self._finish_head(content)
        content.append(body)
        self.transport.write(b"".join(content))
        self._complete()


_DEFAULTS: list[Any] = [None, b""]  # uvicorn's default headers (a list) and their bytes


def default_header_bytes(headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (Date, Server) as its `send` writes them. uvicorn makes
    a new list when the date changes (once a second), so the bytes are made once per list."""
    if _DEFAULTS[0] is not headers:
        _DEFAULTS[1] = b"".join([name.lower() + b": " + value + b"\r\n"
                                 for name, value in headers])
        _DEFAULTS[0] = headers
    return _DEFAULTS[1]  # type: ignore[no-any-return]


def _access_log(protocol: HttpToolsProtocol, client: str, method: str, url: bytes,
                status: int) -> None:
    """uvicorn's access-log line for this request."""
    version = protocol.parser.get_http_version() if protocol.parser is not None else "1.1"
    protocol.access_logger.info('%s - "%s %s HTTP/%s" %d', client, method,
                                url.decode("latin-1"), version, status)


def _client_of(protocol: HttpToolsProtocol) -> str:
    """"host:port" of the client as uvicorn's access log has it: through its own
    ProxyHeadersMiddleware when `proxy_headers` is on (as the ordinary way runs it)."""
    client = protocol.client
    config = protocol.config
    if config.proxy_headers:
        scope: dict[str, Any] = {"type": "http", "client": client, "scheme": protocol.scheme,
                                 "headers": protocol.headers}
        middleware = _PROXY_HEADERS.get(id(config))
        if middleware is None or middleware[0] is not config:
            middleware = _PROXY_HEADERS[id(config)] = (
                config, ProxyHeadersMiddleware(_nothing, config.forwarded_allow_ips))
        step = middleware[1](scope, _nothing, _nothing)  # type: ignore[arg-type]
        try:  # it awaits nothing but the app, which returns at once
            step.send(None)
        except StopIteration:
            client = scope["client"]
        else:
            step.close()
    return f"{client[0]}:{client[1]}" if client else ""


_PROXY_HEADERS: dict[int, tuple[Any, ProxyHeadersMiddleware]] = {}


async def _nothing(*_: Any) -> None:
    return None
