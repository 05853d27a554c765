"""The event fan-out on a real uvicorn server, as `a3s serve` runs it: many envelopes per
socket write (the `a3s.websocket.send_many` extension), with and without per-message
compression, and through uvicorn's stock protocols (no extension: plain ASGI sends)
alike — every client gets every event once, in order, one envelope per message."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from events_testkit import Server
from websockets.asyncio.client import connect

from a3s_core.api import events_ws
from a3s_core.api.app import create_app
from a3s_core.api.ws_protocol import SEND_MANY, A3SWebSocketProtocol
from a3s_core.testing import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
N = 400
CLIENTS = 6


@pytest.mark.parametrize(
    ("ws", "compression"),
    [(A3SWebSocketProtocol, None), (A3SWebSocketProtocol, "deflate"),
     ("websockets-sansio", None), ("websockets", "deflate")],
    ids=["send-many", "send-many-deflate", "sansio-plain-asgi", "legacy-deflate"],
)
async def test_every_client_gets_every_event_once_in_order(
    a3s_settings: Any, a3s_plugins: Any, monkeypatch: pytest.MonkeyPatch, ws: Any,
    compression: str | None,
) -> None:
    used_send_many: list[bool] = []
    real_init = events_ws._Socket.__init__

    def spy(self: Any, sock: Any) -> None:
        real_init(self, sock)
        used_send_many.append(sock.scope["extensions"].get(SEND_MANY) is not None)

    monkeypatch.setattr(events_ws._Socket, "__init__", spy)
    app = create_app(a3s_settings, a3s_plugins)
    with Server(app, ws=ws) as server:
        bus = app.state.platform.bus
        url = server.ws + "/v1/events?namespace=fan&heartbeat=60"

        async def client() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            async with connect(url, additional_headers=AUTH, compression=compression,
                               max_queue=None) as sock:
                async for raw in sock:
                    assert isinstance(raw, str)  # text frames
                    got.append(json.loads(raw))  # one envelope per message, never an array
                    if len(got) == N:
                        return got
            return got

        readers = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        deadline = asyncio.get_running_loop().time() + 20
        while bus.live_subscriber_count < CLIENTS:
            assert asyncio.get_running_loop().time() < deadline, "clients did not connect"
            await asyncio.sleep(0.01)

        def emit_all() -> None:  # fast enough that envelopes gather between writes
            for i in range(N):
                bus.emit("test.fan", f"event {i}", namespace="fan", data={"i": i})

        await asyncio.to_thread(emit_all)
        results = await asyncio.wait_for(asyncio.gather(*readers), 30)
    assert used_send_many == [ws is A3SWebSocketProtocol] * CLIENTS
    for got in results:
        assert [e["data"]["i"] for e in got] == list(range(N))
        seqs = [e["seq"] for e in got]
        assert seqs == sorted(set(seqs)) and len(seqs) == N


@pytest.mark.parametrize("size", [0, 5, 125, 126, 1000, 65535, 65536, 70000])
def test_prepared_frames_are_the_bytes_the_websockets_protocol_would_send(size: int) -> None:
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    from a3s_core.api.ws_protocol import _frame

    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8: lengths are in bytes
    protocol = ServerProtocol()
    protocol.state = State.OPEN
    protocol.send_text(text.encode())
    assert _frame(text) == b"".join(protocol.data_to_send())
