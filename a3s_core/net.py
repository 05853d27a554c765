"""Two small network helpers for runtimes that run replicas on this machine."""

from __future__ import annotations

import socket
from collections.abc import Iterable

import aiohttp


def free_port(host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    """A port nothing listens on now, chosen by the kernel, not one of `avoid`."""
    avoided = set(avoid)
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in avoided:
            return port
    raise RuntimeError(f"no free port on {host} outside {len(avoided)} reserved ones")


async def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET `url` → (status, body). Raises aiohttp.ClientError / TimeoutError on failure."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(url, allow_redirects=False) as response,
    ):
        return response.status, await response.text(errors="replace")
