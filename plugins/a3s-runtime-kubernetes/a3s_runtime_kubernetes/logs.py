"""Pod log lines (`timestamps=true`) → LogLine, and a followed log stream bridged from the
sync client's blocking read into asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

from a3s_core.types import LogLine

_END = object()


def parse_line(replica_id: str, raw: str) -> LogLine:
    """`2026-11-25T08:00:00.123456789Z text` (RFC 3339, kubelet's format) → LogLine."""
    stamp, sep, text = raw.partition(" ")
    try:
        ts = datetime.fromisoformat(stamp) if sep else None
    except ValueError:
        ts = None
    if ts is None:  # not stamped (a line the kubelet did not prefix): keep it whole
        return LogLine(replica_id=replica_id, ts=datetime.now(UTC), line=raw)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return LogLine(replica_id=replica_id, ts=ts, line=text)


def parse_text(replica_id: str, text: str) -> list[LogLine]:
    return [parse_line(replica_id, raw) for raw in text.splitlines() if raw]


async def follow(replica_id: str, response: Any) -> AsyncIterator[LogLine]:
    """Lines from a urllib3 response (`_preload_content=False`) as they arrive. The read
    runs on a daemon thread; closing the generator shuts the socket so the thread ends."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def put(item: object) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def chunks() -> Iterator[bytes]:
        # read1 returns what has arrived; stream(n) would wait for n bytes unless the body
        # is chunked (the API server's is, a proxy's may not be).
        read1 = getattr(response, "read1", None)
        if read1 is None:  # urllib3 1.x
            yield from response.stream(4096, decode_content=True)
            return
        while chunk := read1(65536):
            yield chunk

    def pump() -> None:
        buffer = b""
        try:
            for chunk in chunks():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    put(raw.decode("utf-8", "replace").rstrip("\r"))
            if buffer:
                put(buffer.decode("utf-8", "replace"))
        except Exception as exc:  # a shut socket on close, or the stream broke
            put(exc)
        finally:
            put(_END)

    thread = threading.Thread(target=pump, name=f"a3s-k8s-log-{replica_id}", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END or isinstance(item, Exception):
                return
            if isinstance(item, str) and item:
                yield parse_line(replica_id, item)
    finally:
        shutdown = getattr(response, "shutdown", None)  # urllib3 >= 2.3 unblocks the read
        with contextlib.suppress(Exception):
            if shutdown is not None:
                shutdown()
            response.release_conn()
            response.close()
