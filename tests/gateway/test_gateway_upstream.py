"""The hot path's HTTP client: keep-alive reuse, stale connections, streaming, failures."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from gateway_fake_replica import FakeReplica

from a3s_core.gateway.upstream import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE_S,
    ConnectFailed,
    UpstreamError,
    UpstreamPool,
    origin_of,
)

CHAT = json.dumps({"model": "m", "messages": []}).encode()
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def replica() -> AsyncIterator[FakeReplica]:
    r = await FakeReplica(model="m", tokens=3).start()
    yield r
    await r.stop()


async def test_sequential_requests_share_one_connection(replica: FakeReplica) -> None:
    pool = UpstreamPool()
    try:
        conns = set()
        for _ in range(5):
            resp = await pool.request(replica.url, "POST", "/v1/chat/completions", JSON, CHAT)
            assert resp.status == 200 and resp.content_type == "application/json"
            body = json.loads(await resp.read())
            assert body["choices"][0]["message"]["content"] == "tok0 tok1 tok2 "
            conns.add(id(resp._conn))
            resp.release()
        assert len(conns) == 1
    finally:
        await pool.close()


async def test_streams_arrive_in_pieces_and_an_unfinished_stream_closes(
    replica: FakeReplica,
) -> None:
    replica.token_s = 0.05
    pool = UpstreamPool()
    try:
        body = json.dumps({"model": "m", "messages": [], "stream": True}).encode()
        resp = await pool.request(replica.url, "POST", "/v1/chat/completions", JSON, body)
        assert resp.content_type == "text/event-stream"
        first = await resp.next_chunk()
        assert first.startswith(b"data: ") and b"tok0" in first and b"tok2" not in first
        resp.release()  # mid-answer: the connection is closed, not pooled
        assert resp._conn.closed and not pool._idle.get(origin_of(replica.url))
        for _ in range(100):
            if replica.cancelled:
                break
            await asyncio.sleep(0.02)
        assert replica.cancelled == 1  # the replica saw the client go
    finally:
        await pool.close()


async def test_a_pooled_connection_closed_by_the_replica_is_replaced(
    replica: FakeReplica,
) -> None:
    pool = UpstreamPool()
    try:
        resp = await pool.request(replica.url, "GET", "/health", {}, b"")
        await resp.read()
        resp.release()
        # The replica restarts on the same port: the idle pooled connection is dead.
        port = replica.port
        await replica.stop()
        replica.port = port
        await replica.start()
        resp = await pool.request(replica.url, "GET", "/health", {}, b"")
        assert await resp.read() == b"ok"
        resp.release()
    finally:
        await pool.close()


async def test_failures_are_upstream_errors() -> None:
    pool = UpstreamPool(connect_timeout_s=2)
    crashing = await FakeReplica(model="m", ttft_s=5).start()
    try:
        with pytest.raises(ConnectFailed, match="cannot connect"):
            await pool.request("http://127.0.0.1:9", "GET", "/health", {}, b"")
        pending = asyncio.ensure_future(
            pool.request(crashing.url, "POST", "/v1/chat/completions", JSON, CHAT))
        for _ in range(100):
            if crashing.running:
                break
            await asyncio.sleep(0.02)
        await crashing.crash()
        with pytest.raises(UpstreamError, match="closed the connection"):
            await pending
        with pytest.raises(ValueError, match="not an http"):
            origin_of("ftp://x")
    finally:
        await pool.close()
        await crashing.stop()


async def test_a_body_delimited_by_closing_the_connection() -> None:
    async def old_style(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        writer.write(b"whole body")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(old_style, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool()
    try:
        resp = await pool.request(f"http://127.0.0.1:{port}", "GET", "/", {}, b"")
        assert await resp.read() == b"whole body"
        resp.release()
        assert not pool._idle.get(("127.0.0.1", port, False))  # not reusable
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


async def test_replica_connections_probe_a_vanished_peer(replica: FakeReplica) -> None:
    # TCP keep-alive, so a request to a replica whose node is gone fails in ~1 min.
    pool = UpstreamPool()
    try:
        resp = await pool.request(replica.url, "POST", "/v1/chat/completions", JSON, CHAT)
        await resp.read()
        assert resp._conn.transport is not None
        sock = resp._conn.transport.get_extra_info("socket")
        resp.release()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_COUNT
    finally:
        await pool.close()
