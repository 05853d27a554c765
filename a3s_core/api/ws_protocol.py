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

    # A client that pings without reading would grow the write buffer by one pong per ping
    # (uvicorn writes pongs past flow control), without bound: while writes are paused, a
    # ping also stops reading from that client until its buffer drains.
    _reads_held = False

    def handle_ping(self) -> None:
        super().handle_ping()
        if not self.writable.is_set():
            self._reads_held = True
            self.transport.pause_reading()  # again if uvicorn's receive() resumed it

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._reads_held:
            self._reads_held = False
            if not self.read_paused:  # else receive() resumes once the app has read
                self.transport.resume_reading()

    # asyncio's transport.close() (how uvicorn ends a connection: at once, at its close
    # timeout, on a keepalive timeout) waits for the write buffer to drain, forever when
    # the client has stopped reading (TCP window full): the connection, its app task and
    # its event subscription would stay, and server shutdown would wait for them. Once the
    # connection is ending, abort it when its buffer stops draining.

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # the app may still be blocked on `writable`
        self._abort_when_stalled()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self._abort_when_stalled()

    def _abort_when_stalled(self, last: int | None = None) -> None:
        if self.disconnected:
            return
        size = self.transport.get_write_buffer_size()
        if last is not None and size and size >= last:  # nothing written for close_timeout
            self.transport.abort()
            return
        self.loop.call_later(self.close_timeout, self._abort_when_stalled, size)

    async def send_many(self, texts: list[str]) -> None:
        """Send each text as its own WebSocket message, in order, in one socket write.
        Raises ClientDisconnected (an OSError) once the connection is closing or gone."""
        await self.writable.wait()  # flow control: a slow reader holds us here
        if self.disconnected:
            raise ClientDisconnected()
        if not self.handshake_complete or self.initial_response:
            raise RuntimeError("the WebSocket is not open for sending")
        if self.close_sent or self.conn.state is not State.OPEN:
            # Closing: the client's close, server shutdown (1012), a keepalive timeout or
            # a bad client frame, before connection_lost has run. `send` turns the
            # protocol's InvalidState into ClientDisconnected too; anything else would
            # end the stream "by an error" (a warning and a 1011 attempt per socket).
            raise ClientDisconnected()
        if self.conn.extensions:
            # Compression is per connection: let the protocol frame each message.
            for text in texts:
                self.conn.send_text(text.encode())
            self.transport.write(b"".join(self.conn.data_to_send()))
            return
        # Uncompressed server frames are the same bytes for every client: the fan-out
        # sends one envelope to many sockets, so each is framed once (gorilla/websocket's
        # PreparedMessage, for the same reason).
        self.transport.write(b"".join([_frame(text) for text in texts]))


_FRAMES: dict[str, bytes] = {}
_FRAMES_MAX = 4096  # frames, and
_FRAMES_MAX_BYTES = 16 << 20  # bytes: a few large events must not pin hundreds of MB
_frames_bytes = 0


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
        global _frames_bytes
        if len(_FRAMES) >= _FRAMES_MAX or _frames_bytes + len(frame) > _FRAMES_MAX_BYTES:
            _FRAMES.clear()
            _frames_bytes = 0
        _FRAMES[text] = frame
        _frames_bytes += len(frame)
    return frame
