"""A client that stops reading, on a real server: the platform keeps emitting at its own
pace, the client is cut off with the seq to resume from, and resuming loses nothing."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from events_testkit import Server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from a3s_core.api.app import create_app
from a3s_core.testing import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
N = 1000
PAYLOAD = "x" * 16_000  # 16 MB in all: far more than the socket buffers between the ends


@pytest.fixture
def server(a3s_settings: Any, a3s_plugins: Any) -> Iterator[Server]:
    with Server(create_app(a3s_settings, a3s_plugins)) as s:
        yield s


async def test_a_client_that_stops_reading_is_cut_off_and_resumes(server: Server) -> None:
    bus = server.app.state.platform.bus
    bus.queue_size = 20
    url = server.ws + "/v1/events?namespace=slow"
    received: list[dict[str, Any]] = []
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no autotuning to 32 MB
    sock.connect(("127.0.0.1", server.port))
    async with connect(
        url, sock=sock, additional_headers=AUTH, max_queue=1, max_size=None, compression=None
    ) as ws:
        while bus.live_subscriber_count < 1:
            await asyncio.sleep(0.01)

        def emit_all() -> None:
            for i in range(N):
                bus.emit("test.big", f"event {i}", namespace="slow", data={"pad": PAYLOAD})

        # The emitter finishes although nobody reads: a slow client never slows it.
        await asyncio.to_thread(emit_all)
        with pytest.raises(ConnectionClosedError) as closed:
            async for raw in ws:
                received.append(json.loads(raw))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    overflow = received.pop()
    assert overflow["type"] == "stream.overflow"
    assert received and len(received) < N
    assert overflow["resumeFrom"] == received[-1]["seq"]
    async with connect(
        server.ws + f"/v1/events?namespace=slow&follow=false&since={overflow['resumeFrom']}",
        additional_headers=AUTH,
        max_size=None,
    ) as ws:
        rest = [json.loads(raw) async for raw in ws]
    assert [e["message"] for e in received + rest] == [f"event {i}" for i in range(N)]
