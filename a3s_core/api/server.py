"""How every `a3s serve` process runs uvicorn: its HTTP protocol with one socket write per
plain answer, the sans-I/O WebSocket protocol of ws_protocol.py, and the heap settled
once the app has started.

Two costs this takes off every request (measured by benchmarks/profile_gateway.py under
the proxy-bound load of benchmarks/bench_gateway.py):

- uvicorn writes an answer's status line and headers in one `write` and its body in
  another. On loopback each `write` also runs the receiver's TCP stack, so a plain
  answer cost the gateway two system calls and the client two wake-ups. `A3SHttpProtocol`
  holds the head back until the first body bytes (or the end of the current event-loop
  turn, for an app that starts an answer and then waits) and writes both at once.
- The app's startup leaves some hundred thousand long-lived objects (FastAPI, pydantic,
  SQLAlchemy, the plugins) that every full garbage collection walked again: about 100 ms
  with the event loop stopped, every ~15,000 requests, which is the p99 of every request
  in flight then. After startup the heap is collected once and frozen (`gc.freeze()`):
  later full collections walk only what was made since (4–6 ms), and young collections
  run every 10,000 allocations rather than 700.

    from a3s_core.api import server
    server.run(app, host="127.0.0.1", port=8000, log_level="info")   # as uvicorn.run
    server.run(app, sockets=[sock], ...)                             # on bound sockets
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import urllib.parse
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from a3s_core.api.fast_lane import (
    JOIN_UNDER,
    DataPlane,
    Exchange,
    default_header_bytes,
    status_line,
)
from a3s_core.api.ws_protocol import A3SWebSocketProtocol
from a3s_core.gateway.asgi import MATCHED_MAX, WHOLE, Route, match
from a3s_core.gateway.request import read_headers

# Names uvicorn treats itself (framing): an answer carrying one goes the ordinary way.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
STARTUP_FAILURE = 3  # uvicorn.run's exit status when the app did not start


class _HeadHeld:
    """The transport as one request's `RequestResponseCycle` sees it: the first write after
    the answer has started (its head) is held, and goes out with the next write, before
    the transport closes, or at the end of this event-loop turn, whichever comes first."""

    __slots__ = ("_cycle", "_flush", "_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._cycle: RequestResponseCycle | None = cycle
        self._loop = loop
        self._head: bytes | None = None
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._cancel_flush()
            if len(data) < JOIN_UNDER:
                self._transport.write(head + data)
            else:
                self._transport.writelines((head, data))
        elif self._cycle is not None and self._cycle.response_started:
            # The head (uvicorn sets response_started just before writing it); writes
            # before it (a "100 Continue") go out at once. The cycle is let go here: it
            # holds this object, and a reference cycle per request would leave each
            # request's objects to the garbage collector.
            self._cycle = None
            self._head = data
            self._flush = self._loop.call_soon(self._write_head)
        else:
            self._transport.write(data)

    def _cancel_flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None  # (the handle holds this object: no cycle left behind)

    def _write_head(self) -> None:
        self._flush = None
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._cancel_flush()
        self._write_head()
        self._transport.close()

    def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        """Write a complete answer with its Content-Length in one go: the bytes uvicorn's
        `send` writes for `http.response.start` and a last `http.response.body`, and the
        same bookkeeping, for one pass instead of two (its per-header checks, once over
        all headers). False, having done nothing, when the answer must go the ordinary
        way: already started, a HEAD request, writes paused, a framing header among
        `headers`, or a header uvicorn would refuse (so the ordinary way raises as it
        always has)."""
        cycle = self._cycle
        if (cycle is None or cycle.response_started or cycle.disconnected
                or cycle.flow.write_paused or cycle.scope["method"] == "HEAD"
                or not 100 <= status < 600):
            return False
        names = [name for name, _ in headers]
        joined = b"".join(names)
        if (HEADER_RE.search(joined) or joined.lower() != joined
                or HEADER_VALUE_RE.search(b"\t".join([value for _, value in headers]))
                or not _FRAMING.isdisjoint(names)):
            return False
        content = [status_line(status), default_header_bytes(cycle.default_headers)]
        for name, value in headers:
            content += (name, b": ", value, b"\r\n")
        content.append(b"content-length: %d\r\n" % len(body))
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        self._cycle = None  # (see write: no reference cycle left behind)
        if cycle.access_log:  # uvicorn's line, as its send writes it
            scope = cycle.scope
            cycle.access_logger.info(
                '%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                get_path_with_query_string(scope), scope["http_version"], status,
            )
        if len(body) < JOIN_UNDER:
            content.append(body)
            self._transport.write(b"".join(content))
        else:
            self._transport.writelines((b"".join(content), body))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self._transport.close()
        cycle.on_response()
        return True

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class A3SHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the data plane's own lane (fast_lane.py), and,
    for everything else, an answer's head and first body bytes written together
    (`_HeadHeld`) and whole answers in one pass (the `WHOLE` extension)."""

    data_plane: DataPlane | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The app as given to uvicorn (PlatformApp, GatewayApp) names its gateway; an app
        # wrapped in anything else is served entirely the ordinary way.
        if self.limit_concurrency is None:  # (else uvicorn's 503 must see every request)
            self.data_plane = getattr(self.config.app, "data_plane", None)

    def on_message_begin(self) -> None:
        # The ASGI scope is built in on_headers_complete, for requests that need one.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_headers_complete(self) -> None:
        data_plane = self.data_plane
        if data_plane is not None:
            route = self._data_plane_route()
            if route is not None:
                self._start_exchange(data_plane, route)
                return
        # uvicorn's way: its scope (on_message_begin resets what the parser gave since).
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and cycle.transport is self.transport:
            # A new request (not an upgrade): its task is created but has not run yet.
            held = _HeadHeld(self.transport, cycle, self.loop)
            cycle.transport = held  # type: ignore[assignment]
            cycle.scope.setdefault("extensions", {})[WHOLE] = {"send": held.whole}

    def _data_plane_route(self) -> Route | None:
        """The gateway's route for this request, or None to take uvicorn's way (not a
        data-plane path, an upgrade, or HEAD: uvicorn's answers to HEAD carry no body)."""
        url = self.url
        try:
            route = _ROUTES[url]
        except KeyError:
            route = _route_of_url(url)
            if len(_ROUTES) < MATCHED_MAX:
                _ROUTES[url] = route
        if route is None or self.parser.should_upgrade():
            return None
        return route

    def _start_exchange(self, data_plane: DataPlane, route: Route) -> None:
        parser = self.parser
        method = parser.get_method()
        name = _METHODS.get(method) or method.decode("ascii")
        if name == "HEAD":
            self._start_ordinary_anyway()
            return
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        exchange = Exchange(self, data_plane, name, route, read_headers(self.headers),
                            keep_alive, self.expect_100_continue)
        before = self.cycle
        self.cycle = exchange  # type: ignore[assignment]
        if before is None or before.response_complete:
            self._start_asgi_task(exchange, self.app)  # type: ignore[arg-type]
        else:  # pipelined behind an answer still going out: queued, as uvicorn does
            self.flow.pause_reading()
            self.pipeline.appendleft((exchange, self.app))  # type: ignore[arg-type]

    def _start_ordinary_anyway(self) -> None:
        data_plane, self.data_plane = self.data_plane, None
        try:
            self.on_headers_complete()
        finally:
            self.data_plane = data_plane


# The data-plane route of each raw request target seen (None: not the gateway's). Bounded,
# since clients choose the targets; past the bound, targets are matched afresh.
_ROUTES: dict[bytes, Route | None] = {}
_METHODS = {b"GET": "GET", b"POST": "POST"}


def _route_of_url(url: bytes) -> Route | None:
    """`asgi.match` on the path uvicorn would put in the scope (below its root_path)."""
    try:
        path = httptools.parse_url(url).path.decode("ascii")
    except (httptools.HttpParserInvalidURLError, UnicodeDecodeError, AttributeError):
        return None  # (no path, not ASCII) uvicorn's way: it answers such a target as ever
    if "%" in path:
        path = urllib.parse.unquote(path)
    return match(path)


class Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            settle_heap()


# Container allocations between young collections. The default (700) ran one every ~100
# requests, ~0.2 ms each: ~2.2 µs of CPU a request; at 10,000 the same requests cost
# ~0.6 µs, in pauses of ~2 ms (benchmarks/profile_gateway.py with a gc callback).
YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect what startup left for the collector, then exempt the survivors from every
    later collection (they live as long as the process), and collect the young
    generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(YOUNG_THRESHOLD, gc.get_threshold()[0]), *gc.get_threshold()[1:])


def run(app: Any, sockets: list[socket.socket] | None = None, **config: Any) -> None:
    """`uvicorn.run(app, **config)` with this module's protocols and heap settling; with
    `sockets`, on those (bound) sockets instead of `host`/`port`."""
    config.setdefault("http", A3SHttpProtocol)
    config.setdefault("ws", A3SWebSocketProtocol)
    server = Server(uvicorn.Config(app, **config))
    if sockets is not None:  # a worker on the supervisor's port (gateway/workers.py)
        server.run(sockets=sockets)
        return
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
