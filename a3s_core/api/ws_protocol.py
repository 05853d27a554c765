"""uvicorn's sans-I/O WebSocket protocol with one ASGI extension: `a3s.websocket.send_many`.

An event socket under load sends several envelopes per wake-up, one WebSocket message
each. Over ASGI every message is its own `send` through Starlette and uvicorn and its own
socket write (a system call); with 50 clients and 1,000 events/s that is 50,000 writes a
second and most of the platform's CPU (benchmarks/bench_events.py). The extension frames
the messages as the protocol would (compression included, when negotiated) and writes
them in one go. Servers without it (Starlette's TestClient, hypercorn) take the plain ASGI
path; `a3s serve` runs uvicorn with this class (`ws=A3SWebSocketProtocol`).

    send_many = ws.scope["extensions"].get(SEND_MANY)
    if send_many: await send_many["send"](["text 1", "text 2"])
"""

from __future__ import annotations

import struct
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

SEND_MANY = "a3s.websocket.send_many"


class A3SWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:  # the app's task is created but has not run yet
            scope["extensions"][SEND_MANY] = {"send": self.send_many}

    async def send_many(self, texts: list[str]) -> None:
        """Send each text as its own WebSocket message, in order, in one socket write.
        Raises ClientDisconnected (an OSError) once the client is gone, as `send` does."""
        await self.writable.wait()  # flow control: a slow reader holds us here
        if self.disconnected:
            raise ClientDisconnected()
        if self.close_sent or not self.handshake_complete or self.initial_response:
            raise RuntimeError("the WebSocket is not open for sending")
        if self.conn.extensions or self.conn.state is not State.OPEN:
            # Compression is per connection (and a closing state must raise): let the
            # protocol frame each message.
            for text in texts:
                self.conn.send_text(text.encode())
            self.transport.write(b"".join(self.conn.data_to_send()))
            return
        # Uncompressed server frames are the same bytes for every client: the fan-out
        # sends one envelope to many sockets, so each is framed once (gorilla/websocket's
        # PreparedMessage, for the same reason).
        self.transport.write(b"".join([_frame(text) for text in texts]))


_FRAMES: dict[str, bytes] = {}
_FRAMES_MAX = 4096


def _frame(text: str) -> bytes:
    """A final, unmasked text frame (RFC 6455 §5.2) carrying `text`, cached by content."""
    frame = _FRAMES.get(text)
    if frame is None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            head = bytes((0x81, n))
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x81, 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 127, n)
        frame = head + payload
        if len(_FRAMES) >= _FRAMES_MAX:
            _FRAMES.clear()
        _FRAMES[text] = frame
    return frame
