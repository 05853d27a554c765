"""`A3SWebSocketProtocol` (a3s_core/api/ws_protocol.py) on a real uvicorn server: what
clients send (pings, fragments, unexpected and oversized messages), what they get
(compressed and plain alike; a backlog larger than a batch with live events; events no
UTF-8 can carry), and the serialisation caches' bounds. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from ws_protocol_kit import (
    AUTH,
    Frames,
    client_frame,
    complaints,
    emit,
    in_order_once,
    raw_connect,
    read_events,
    serving,
    until,
)

from a3s_core.api.app import create_app


@pytest.fixture
def app(a3s_settings: Any, a3s_plugins: Any) -> Any:
    return create_app(a3s_settings, a3s_plugins)


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
