"""`A3SWebSocketProtocol` (the `a3s.websocket.send_many` extension, a3s_core/api/ws_protocol.py)
against adversarial clients on a real uvicorn server: clients that stop reading, reset the
connection in the middle of a large batch, close (or never answer a close) while batches
are written, ping, fragment, send too much or send what nobody asked for; compressed and
plain clients; a backlog larger than one batch with live events; and the extension's own
edge cases. Every wait is bounded, so a hang fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from events_testkit import Server
from uvicorn.protocols.utils import ClientDisconnected
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from a3s_core.api.app import create_app
from a3s_core.api.ws_protocol import SEND_MANY, A3SWebSocketProtocol
from a3s_core.testing import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PAD = "x" * 16_000


class QuickProtocol(A3SWebSocketProtocol):
    """The protocol under test with uvicorn's close timeout (10 s) short enough for a test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = 0.5


@contextlib.contextmanager
def serving(
    app: Any, caplog: pytest.LogCaptureFixture, ws: Any = QuickProtocol, **config: Any
) -> Iterator[Server]:
    """A real server; warnings and errors from the server (uvicorn's own logger does not
    propagate) land in caplog."""
    server = Server(app, ws=ws)
    for name, value in config.items():
        setattr(server.server.config, name, value)
    caplog.set_level(logging.WARNING)
    uvicorn_log = logging.getLogger("uvicorn")  # configured by uvicorn.Config just now
    uvicorn_log.addHandler(caplog.handler)
    try:
        with server:
            yield server
    finally:
        uvicorn_log.removeHandler(caplog.handler)


def complaints(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
def app(a3s_settings: Any, a3s_plugins: Any) -> Any:
    return create_app(a3s_settings, a3s_plugins)


async def until(check: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def connections(server: Server) -> list[Any]:
    while True:
        try:
            return list(server.server.server_state.connections)
        except RuntimeError:  # the server thread changed the set while we copied it
            continue


def protocol_of(server: Server, local_port: int) -> Any:
    """The server's protocol instance for the client socket bound to `local_port`."""
    for proto in connections(server):
        if proto.client and proto.client[1] == local_port:
            return proto
    raise AssertionError(f"no server connection for the client port {local_port}")


async def on_server(proto: Any, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on the server's event loop (where the protocol lives)."""
    future = asyncio.run_coroutine_threadsafe(coro, proto.loop)
    return await asyncio.wait_for(asyncio.wrap_future(future), 5)


# ------------------------------------------------------------------ raw WebSocket client


def raw_connect(port: int, path: str, rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    """A WebSocket client socket after a successful handshake, and what followed it."""
    sock = socket.socket()
    if rcvbuf:  # before connect, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += struct.pack("!BH", 0x80 | 126, n)
    else:
        head += struct.pack("!BQ", 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Frames:
    """Reads unmasked server frames from a raw socket."""

    def __init__(self, sock: socket.socket, rest: bytes = b"") -> None:
        self.sock, self.buf, self.at = sock, bytearray(rest), 0

    def _need(self, n: int) -> None:
        while len(self.buf) - self.at < n:
            if self.at > 1 << 20:
                del self.buf[: self.at]
                self.at = 0
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def next(self) -> tuple[int, bytes]:
        self._need(2)
        at = self.at
        opcode, n = self.buf[at] & 0x0F, self.buf[at + 1] & 0x7F
        head = 2
        if n == 126:
            self._need(4)
            (n,) = struct.unpack_from("!H", self.buf, self.at + 2)
            head = 4
        elif n == 127:
            self._need(10)
            (n,) = struct.unpack_from("!Q", self.buf, self.at + 2)
            head = 10
        self._need(head + n)
        payload = bytes(self.buf[self.at + head : self.at + head + n])
        self.at += head + n
        return opcode, payload


def rst(sock: socket.socket) -> None:
    """Close with a TCP reset instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def emit(bus: Any, n: int, namespace: str, pad: str = "", start: int = 0) -> None:
    for i in range(start, start + n):
        bus.emit("test.ws", f"event {i}", namespace=namespace, data={"i": i, "pad": pad})


async def read_events(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < n:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if msg["type"] != "heartbeat":
            got.append(msg)
    return got


def in_order_once(got: list[dict[str, Any]], n: int, start: int = 0) -> None:
    assert [e["data"]["i"] for e in got] == list(range(start, start + n))
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(set(seqs))


# ------------------------------------------------------------------ slow and vanishing


async def test_a_client_that_stops_reading_is_cut_off_without_holding_up_others(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The TCP window fills and the server's writes pause: the other client still gets
    everything, the stuck one holds a bounded amount of memory, and uvicorn's keepalive
    cuts it off (it used to close the transport gracefully, which waits for the buffer to
    drain: the connection and its subscription stayed for good)."""
    with serving(app, caplog, ws_ping_interval=None, ws_ping_timeout=0.3) as server:
        bus = app.state.platform.bus
        bus.queue_size = 50
        url = server.ws + "/v1/events?namespace=stuck&heartbeat=60"
        stuck, _ = raw_connect(server.port, "/v1/events?namespace=stuck&heartbeat=60", 4096)
        async with connect(url, additional_headers=AUTH, max_queue=None, max_size=None) as ws:
            await until(lambda: bus.live_subscriber_count == 2, "two subscribers")
            proto = protocol_of(server, stuck.getsockname()[1])
            buffered: list[int] = []

            def emit_until_paused_and_beyond() -> int:
                paused_at = None
                for i in range(3000):
                    buffered.append(proto.transport.get_write_buffer_size())
                    if paused_at is None and buffered[-1] and not proto.writable.is_set():
                        paused_at = i
                    if paused_at is not None and i == paused_at + 100:  # stuck one overflows
                        return i
                    bus.emit("test.ws", f"event {i}", namespace="stuck", data={"i": i, "pad": PAD})
                    if i % 20 == 0:  # slow enough that the stuck socket's buffers fill
                        time.sleep(0.01)
                raise AssertionError("the server never had to wait for the stuck client")

            got: list[dict[str, Any]] = []

            async def read_until_after() -> None:
                while not got or got[-1]["message"] != "after":
                    got.extend(await read_events(ws, 1))

            reader = asyncio.create_task(read_until_after())
            n = await asyncio.to_thread(emit_until_paused_and_beyond)
            # At most the high-water mark and one batch (the subscriber overflows beyond 50
            # events), not the megabytes emitted.
            assert max(buffered) < 64 * 1024 + 50 * (len(PAD) + 200)

            async def keepalive_ping() -> None:
                proto.send_keepalive_ping()  # as uvicorn's timer does; no pong will come

            await on_server(proto, keepalive_ping())
            await until(lambda: bus.subscriber_count == 1, "the stuck client's subscription to go")
            await until(lambda: len(connections(server)) == 1, "the stuck connection to go")
            bus.emit("test.ws", "after", namespace="stuck", data={"i": n, "pad": ""})
            await asyncio.wait_for(reader, 10)
            in_order_once(got, n + 1)
        stuck.close()
    assert complaints(caplog) == []


async def test_a_client_that_pings_but_does_not_read(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Each ping gets a pong, written past flow control: a client that pings and never
    reads grew the server's write buffer without bound (tens of MB a second). Reading from
    it now stops while its writes are paused, and resumes once it reads again."""
    n = 400
    with serving(app, caplog, ws_ping_interval=None) as server:
        bus = app.state.platform.bus
        sock, rest = raw_connect(server.port, "/v1/events?namespace=pings&heartbeat=60", 4096)
        await until(lambda: bus.live_subscriber_count == 1, "the subscriber")
        proto = protocol_of(server, sock.getsockname()[1])
        for i in range(n):  # slow enough that the socket's buffers fill
            bus.emit("test.ws", f"event {i}", namespace="pings", data={"i": i, "pad": PAD})
            if i % 20 == 0:
                await asyncio.sleep(0.01)
        await until(lambda: not proto.writable.is_set(), "the server's writes to pause")

        def flood() -> int:
            pings = client_frame(0x9, b"p" * 125) * 100
            sock.settimeout(0.5)
            sent, started = 0, time.monotonic()
            with contextlib.suppress(TimeoutError):  # the server stopped reading: good
                while time.monotonic() - started < 2:
                    sock.sendall(pings)
                    sent += len(pings)
            sock.settimeout(5)
            return sent

        sent = await asyncio.to_thread(flood)
        await asyncio.sleep(0.2)
        assert proto.transport.get_write_buffer_size() < 1 << 20, f"after {sent} bytes of pings"

        def read_all_then_ping() -> tuple[list[dict[str, Any]], int]:
            frames, pongs = Frames(sock, rest), 0
            got: list[dict[str, Any]] = []
            while len(got) < n:
                opcode, payload = frames.next()
                if opcode == 0x1:
                    got.append(json.loads(payload))
                pongs += opcode == 0xA
            sock.sendall(client_frame(0x9, b"last"))  # reading resumed: it gets its pong
            while frames.next() != (0xA, b"last"):
                pass
            return got, pongs

        got, pongs = await asyncio.to_thread(read_all_then_ping)
        in_order_once(got, n)
        assert pongs > 0
        sock.close()
    assert complaints(caplog) == []


async def test_server_shutdown_is_not_held_up_by_a_client_that_stops_reading(app: Any) -> None:
    """uvicorn waits for every connection to close before it stops; one whose buffer
    never drains held the platform's shutdown forever."""
    server = Server(app, ws=QuickProtocol)
    server.__enter__()
    try:
        bus = app.state.platform.bus
        stuck, _ = raw_connect(server.port, "/v1/events?namespace=stuck&heartbeat=60", 4096)
        await until(lambda: bus.live_subscriber_count == 1, "the subscriber")
        proto = protocol_of(server, stuck.getsockname()[1])

        def emit_until_paused() -> None:
            for i in range(2000):
                if proto.transport.get_write_buffer_size() and not proto.writable.is_set():
                    return
                bus.emit("test.ws", f"event {i}", namespace="stuck", data={"pad": PAD})
                if i % 20 == 0:
                    time.sleep(0.01)
            raise AssertionError("the stuck client's writes never paused")

        await asyncio.to_thread(emit_until_paused)
        server.server.should_exit = True
        await asyncio.to_thread(server.thread.join, 5)
        assert not server.thread.is_alive(), "shutdown waits for the stuck connection"
    finally:
        stuck.close()
        server.__exit__(None, None, None)


async def test_a_reset_in_the_middle_of_a_large_batch_is_just_a_disconnect(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The backlog goes out 500 envelopes (8 MB here) per socket write; clients reset the
    connection after reading none, some or much of one."""
    n = 1000
    with serving(app, caplog) as server:
        bus = app.state.platform.bus
        await asyncio.to_thread(emit, bus, n, "rst", PAD)
        url = server.ws + "/v1/events?namespace=rst&since=0&heartbeat=60"
        async with connect(url, additional_headers=AUTH, max_queue=None, max_size=None) as ws:
            reader = asyncio.create_task(read_events(ws, n + 10))

            def reset_clients() -> None:
                for k in range(8):
                    sock, _ = raw_connect(server.port, "/v1/events?namespace=rst&since=0", 4096)
                    got = 0
                    while got < k * 300_000:
                        chunk = sock.recv(65536)
                        assert chunk, "the server closed first"
                        got += len(chunk)
                    rst(sock)

            await asyncio.to_thread(reset_clients)
            await asyncio.to_thread(emit, bus, 10, "rst", "", n)  # live ones still flow
            in_order_once(await reader, n + 10)
            await until(lambda: bus.subscriber_count == 1, "the reset clients' subscriptions")
            await until(lambda: len(connections(server)) == 1, "the reset connections to go")
    assert complaints(caplog) == []


# ------------------------------------------------------------------ closing


async def test_server_shutdown_while_batches_are_written(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Platform shutdown sends 1012 on every socket while the pumps are writing: that is
    a disconnect for them, not an error (it was InvalidState, a warning per socket)."""
    server = Server(app, ws=QuickProtocol)
    caplog.set_level(logging.WARNING)
    logging.getLogger("uvicorn").addHandler(caplog.handler)
    server.__enter__()
    try:
        bus = app.state.platform.bus
        url = server.ws + "/v1/events?namespace=down&heartbeat=60"
        stop = threading.Event()

        async def emit_on_the_server_loop() -> None:
            # On the server's own loop, like the controllers: no emit can race the store
            # being closed at the end of the shutdown.
            i = 0
            while not stop.is_set():
                try:
                    bus.emit("test.ws", f"event {i}", namespace="down", data={"pad": "y" * 2000})
                except Exception:
                    return
                i += 1
                await asyncio.sleep(0)

        async def client(compression: str | None) -> int | None:
            async with connect(
                url, additional_headers=AUTH, compression=compression, max_queue=None
            ) as ws:
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code

        clients = [asyncio.create_task(client(None if k % 2 else "deflate")) for k in range(8)]
        await until(lambda: bus.live_subscriber_count == 8, "the clients")
        loop = next(iter(connections(server))).loop
        asyncio.run_coroutine_threadsafe(emit_on_the_server_loop(), loop)
        await asyncio.sleep(0.3)
        server.server.should_exit = True
        codes = await asyncio.wait_for(asyncio.gather(*clients), 10)
        stop.set()
        await asyncio.to_thread(server.thread.join, 10)
        assert not server.thread.is_alive()
        assert codes == [1012] * 8
    finally:
        stop.set()
        server.__exit__(None, None, None)
        logging.getLogger("uvicorn").removeHandler(caplog.handler)
    assert complaints(caplog) == []


def _close_frame_from_client(proto: Any) -> None:
    proto.data_received(client_frame(0x8, struct.pack("!H", 1000)))


def _oversized_frame_from_client(proto: Any) -> None:
    proto.data_received(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + os.urandom(4))


@pytest.mark.parametrize(
    "closing",
    [
        _close_frame_from_client,
        lambda proto: proto.shutdown(),
        lambda proto: proto.keepalive_timeout(),
        _oversized_frame_from_client,
    ],
    ids=["client-close", "server-shutdown", "keepalive-timeout", "oversized-message"],
)
async def test_send_many_on_a_closing_connection_is_a_disconnect(
    app: Any, caplog: pytest.LogCaptureFixture, closing: Callable[[Any], None]
) -> None:
    """Between the protocol starting to close and connection_lost (a loop turn or, with a
    full buffer, much longer), send_many raises what `send` raises: ClientDisconnected.
    It raised InvalidState or RuntimeError, which the event stream logs as an error."""
    with serving(app, caplog) as server:
        url = server.ws + "/v1/events?namespace=nobody&heartbeat=60"
        async with connect(url, additional_headers=AUTH) as ws:
            await until(lambda: len(connections(server)) == 1, "the connection")
            proto = connections(server)[0]

            async def close_then_send() -> BaseException | None:
                closing(proto)
                try:
                    await proto.send_many(["too late"])
                except BaseException as exc:
                    return exc
                return None

            raised = await on_server(proto, close_then_send())
            assert isinstance(raised, ClientDisconnected), repr(raised)
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)


async def test_send_many_with_no_frame_one_frame_and_after_the_close(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(app, caplog) as server:
        url = server.ws + "/v1/events?namespace=nobody&heartbeat=60"
        for compression in (None, "deflate"):
            async with connect(url, additional_headers=AUTH, compression=compression) as ws:
                await until(lambda: len(connections(server)) == 1, "the connection")
                proto = connections(server)[0]
                assert proto.scope["extensions"][SEND_MANY]["send"] == proto.send_many
                await on_server(proto, proto.send_many([]))
                await on_server(proto, proto.send_many(["one"]))
                await on_server(proto, proto.send_many(["two", "", "é" * 70_000]))
                got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
                assert got == ["one", "two", "", "é" * 70_000]  # nothing for the empty list
            await until(lambda: not connections(server), "the connection to go")
            assert proto.disconnected
            for texts in ([], ["gone"]):
                with pytest.raises(ClientDisconnected):
                    await on_server(proto, proto.send_many(texts))
    assert complaints(caplog) == []


async def test_client_initiated_closes_while_streaming(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(app, caplog) as server:
        bus = app.state.platform.bus
        url = server.ws + "/v1/events?namespace=close&heartbeat=60"
        stop = threading.Event()

        def emit_until_stopped() -> None:
            i = 0
            while not stop.is_set():
                bus.emit("test.ws", f"event {i}", namespace="close", data={"pad": "z" * 2000})
                i += 1

        emitter = asyncio.create_task(asyncio.to_thread(emit_until_stopped))
        try:
            for k in range(16):
                async with connect(
                    url,
                    additional_headers=AUTH,
                    max_queue=None,
                    compression=None if k % 2 else "deflate",
                ) as ws:
                    for _ in range(k % 5):
                        await asyncio.wait_for(ws.recv(), 5)
                    started = time.monotonic()
                    await asyncio.wait_for(ws.close(), 5)
                    assert time.monotonic() - started < 2  # the server answered the close
                    assert ws.close_code == 1000
        finally:
            stop.set()
            await emitter
        await until(lambda: bus.subscriber_count == 0, "the subscriptions to go")
        await until(lambda: not connections(server), "the connections to go")
    assert complaints(caplog) == []


async def test_a_client_that_never_answers_the_close(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """`follow=false` ends with a close (1000) from the server. A client that reads it all
    but never answers is let go after the close timeout, having received everything."""
    n = 300
    with serving(app, caplog) as server:
        bus = app.state.platform.bus
        await asyncio.to_thread(emit, bus, n, "mute", "w" * 3000)
        sock, rest = raw_connect(server.port, "/v1/events?namespace=mute&since=0&follow=false")
        frames = Frames(sock, rest)

        def read_all() -> tuple[list[dict[str, Any]], tuple[int, bytes], float]:
            got = []
            while True:
                opcode, payload = frames.next()
                if opcode == 0x8:
                    break
                assert opcode == 0x1
                got.append(json.loads(payload))
            closed_at = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""  # the server ends the TCP connection
            return got, (opcode, payload), time.monotonic() - closed_at

        got, (_, close), waited = await asyncio.to_thread(read_all)
        sock.close()
        in_order_once(got, n)
        code, reason = struct.unpack("!H", close[:2])[0], close[2:].decode()
        assert code == 1000 and reason == f"caught up at seq {got[-1]['seq']}"
        assert waited < 3
        await until(lambda: not connections(server), "the connection to go")
    assert complaints(caplog) == []


async def test_an_overflowing_client_that_neither_reads_nor_answers_the_close(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The overflow close (1013) goes out while the client's window is full and it never
    reads again: uvicorn's close timeout closed the transport gracefully, which waits for
    the buffer to drain, so the connection stayed for good. Now it is aborted."""
    with serving(app, caplog, ws_ping_interval=None) as server:
        bus = app.state.platform.bus
        bus.queue_size = 50
        sock, _ = raw_connect(server.port, "/v1/events?namespace=full&heartbeat=60", 4096)
        await until(lambda: bus.live_subscriber_count == 1, "the subscriber")
        proto = protocol_of(server, sock.getsockname()[1])
        for i in range(5000):  # until the kernel's buffers are full and ours holds a little
            if proto.transport.get_write_buffer_size():
                break
            bus.emit("test.ws", f"event {i}", namespace="full", data={"pad": "f" * 4000})
            await asyncio.sleep(0.001)
        assert proto.writable.is_set(), "paused: the overflow would wait for the keepalive"

        async def burst() -> None:  # on the server's loop: all 60 reach the queue at once
            emit(bus, 60, "full")

        await on_server(proto, burst())
        await until(lambda: proto.close_sent, "the overflow close")
        await until(lambda: not connections(server), "the connection to go")
        assert bus.subscriber_count == 0
        sock.close()
    assert complaints(caplog) == []


# ------------------------------------------------------------------ what clients send


async def test_pings_fragments_unexpected_and_oversized_messages_while_streaming(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    n = 300
    with serving(app, caplog, ws_max_size=64 * 1024) as server:
        bus = app.state.platform.bus
        url = server.ws + "/v1/events?namespace=chatty&heartbeat=60"

        async def pinger(ws: ClientConnection) -> list[dict[str, Any]]:
            reader = asyncio.create_task(read_events(ws, n))
            for k in range(5):
                pong = await ws.ping(f"ping {k}")
                await asyncio.wait_for(pong, 5)
                await asyncio.sleep(0.02)
            return await reader

        async def talker(ws: ClientConnection) -> list[dict[str, Any]]:
            reader = asyncio.create_task(read_events(ws, n))
            await ws.send(["frag", "mented ", "text"])  # one message in three frames
            await ws.send([b"frag", b"mented bytes"])
            await ws.send("unexpected text")
            await ws.send(b"\x00unexpected bytes\xff")
            await ws.send('{"type":"subscribe"}')
            return await reader

        async def oversized(ws: ClientConnection) -> int | None:
            await ws.send(b"o" * (65 * 1024))
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code

        def bad_utf8() -> int:
            sock, rest = raw_connect(server.port, "/v1/events?namespace=chatty")
            sock.sendall(client_frame(0x1, b"\xc3\x28"))
            frames = Frames(sock, rest)
            while True:
                opcode, payload = frames.next()
                if opcode == 0x8:
                    sock.close()
                    return int(struct.unpack("!H", payload[:2])[0])

        kw: dict[str, Any] = {"additional_headers": AUTH, "max_queue": None, "max_size": None}
        async with (
            connect(url, **kw) as p,
            connect(url, compression=None, **kw) as t,
            connect(url, **kw) as o,
        ):
            await until(lambda: bus.live_subscriber_count == 3, "the subscribers")
            jobs = asyncio.gather(pinger(p), talker(t), oversized(o), asyncio.to_thread(bad_utf8))
            await asyncio.to_thread(emit, bus, n, "chatty", "v" * 500)
            pinged, talked, too_big, invalid = await asyncio.wait_for(jobs, 10)
            in_order_once(pinged, n)
            in_order_once(talked, n)
            assert too_big == 1009 and invalid == 1007
            await until(lambda: bus.subscriber_count == 2, "the failed clients' subscriptions")
    # uvicorn logs the bad UTF-8 itself (with a traceback), then closes with 1007.
    assert complaints(caplog) == ["uvicorn.error: Invalid UTF-8 sequence received from client."]


# ------------------------------------------------------------------ what clients get


async def test_compressed_and_plain_clients_get_the_same_envelopes(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sizes = [0, 1, 100, 125, 126, 1000, 65_535, 65_536, 100_000]
    with serving(app, caplog) as server:
        bus = app.state.platform.bus
        url = server.ws + "/v1/events?namespace=zip&heartbeat=60"
        kw: dict[str, Any] = {"additional_headers": AUTH, "max_queue": None, "max_size": None}
        async with connect(url, compression=None, **kw) as plain, connect(url, **kw) as zipped:
            assert not plain.protocol.extensions
            assert [e.name for e in zipped.protocol.extensions] == ["permessage-deflate"]
            await until(lambda: bus.live_subscriber_count == 2, "the subscribers")

            def emit_sizes() -> None:
                for i in range(200):
                    text = ("é€𝄞x" * 30_000)[: sizes[i % len(sizes)]]
                    bus.emit("test.ws", f"event {i}", namespace="zip", data={"i": i, "t": text})

            readers = asyncio.gather(
                *(asyncio.create_task(_raw_texts(ws, 200)) for ws in (plain, zipped))
            )
            await asyncio.to_thread(emit_sizes)
            texts_plain, texts_zipped = await asyncio.wait_for(readers, 10)
    assert texts_plain == texts_zipped
    in_order_once([json.loads(t) for t in texts_plain], 200)
    assert complaints(caplog) == []


async def _raw_texts(ws: ClientConnection, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        raw = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(raw, str)
        if json.loads(raw)["type"] != "heartbeat":
            out.append(raw)
    return out


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_a_backlog_larger_than_a_batch_while_live_events_keep_coming(
    app: Any, caplog: pytest.LogCaptureFixture, compression: str | None
) -> None:
    backlog, live = 1300, 300
    with serving(app, caplog) as server:
        bus = app.state.platform.bus
        await asyncio.to_thread(emit, bus, backlog, "since", "b" * 300)
        url = server.ws + "/v1/events?namespace=since&since=0&heartbeat=60"
        async with connect(
            url, additional_headers=AUTH, compression=compression, max_queue=None, max_size=None
        ) as ws:
            reader = asyncio.create_task(read_events(ws, backlog + live))
            await asyncio.to_thread(emit, bus, live, "since", "b" * 300, backlog)
            in_order_once(await asyncio.wait_for(reader, 10), backlog + live)
    assert complaints(caplog) == []


async def test_an_event_with_a_lone_surrogate_does_not_end_every_stream(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """`os.fsdecode` of a non-UTF-8 path gives a string with no UTF-8 form: its envelope
    could not be framed, so every stream reaching it ended with 1011, on every resume."""
    with serving(app, caplog) as server:
        bus = app.state.platform.bus
        bus.emit("test.ws", "odd path", namespace="odd", data={"path": "caf\udce9"})
        bus.emit("test.ws", "next", namespace="odd", data={"path": "café"})
        for compression in (None, "deflate"):
            url = server.ws + "/v1/events?namespace=odd&since=0&follow=false"
            async with connect(url, additional_headers=AUTH, compression=compression) as ws:
                got = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1000
            assert [e["data"]["path"] for e in got] == ["caf\udce9", "café"]
    assert complaints(caplog) == []


def test_serialisation_caches_are_bounded_in_bytes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from a3s_core.api import events_ws, ws_protocol
    from a3s_core.types import Event

    cache = events_ws._WireCache()
    cache.MAX_CHARS = 10_000
    for seq in range(1, 50):
        e = Event(seq=seq, ts=datetime.now(UTC), type="t", level="info", message="x" * 3000)
        assert json.loads(cache(e))["seq"] == seq
        assert cache.chars == sum(len(t) for t in cache.texts.values()) <= 10_000
    assert 1 <= len(cache.texts) <= 3

    monkeypatch.setattr(ws_protocol, "_FRAMES", {})
    monkeypatch.setattr(ws_protocol, "_frames_bytes", 0)
    monkeypatch.setattr(ws_protocol, "_FRAMES_MAX_BYTES", 10_000)
    for i in range(50):
        frame = ws_protocol._frame(f"{i:04d}" + "y" * 3000)
        assert frame[0] == 0x81 and frame.endswith(b"y" * 3000)
        assert sum(len(f) for f in ws_protocol._FRAMES.values()) <= 10_000
