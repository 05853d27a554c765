"""`A3SWebSocketProtocol` (a3s_core/api/ws_protocol.py) on a real uvicorn server against
clients that stop reading, ping without reading, reset in the middle of a large batch,
close (or never answer a close) while batches are written, and server shutdown meanwhile.
Every wait is bounded, so a hang fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from events_testkit import Server
from uvicorn.protocols.utils import ClientDisconnected
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from ws_protocol_kit import (
    AUTH,
    PAD,
    Frames,
    QuickProtocol,
    client_frame,
    complaints,
    connections,
    emit,
    in_order_once,
    on_server,
    protocol_of,
    raw_connect,
    read_events,
    rst,
    serving,
    until,
)

from a3s_core.api.app import create_app
from a3s_core.api.ws_protocol import SEND_MANY


@pytest.fixture
def app(a3s_settings: Any, a3s_plugins: Any) -> Any:
    return create_app(a3s_settings, a3s_plugins)


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
