"""Shared pieces of the WebSocket protocol tests (test_events_ws_protocol_*.py): a server
with short timeouts, raw WebSocket frames, resets, and helpers that wait with a bound."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from events_testkit import Server
from websockets.asyncio.client import ClientConnection

from a3s_core.api.ws_protocol import A3SWebSocketProtocol
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
