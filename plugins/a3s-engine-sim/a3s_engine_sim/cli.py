"""Entry point of the simulator process (`python -m a3s_engine_sim`, `a3s-engine-sim`).

aiohttp builds two client TLS contexts when it is imported, loading the system CA bundle:
0.1–0.3 s of a replica's start-up, for a server that never makes an outgoing TLS call. So the
import runs with CA loading switched off. This is safe by construction: the resulting
contexts still require verification and trust no CA, so any outgoing TLS call would fail
closed, never open.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any


def _import_server() -> Callable[[list[str] | None], None]:
    create_default_context = ssl.create_default_context
    set_default_verify_paths = ssl.SSLContext.set_default_verify_paths

    def bare_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    ssl.create_default_context = bare_context  # type: ignore[assignment]
    ssl.SSLContext.set_default_verify_paths = lambda self: None  # type: ignore[method-assign]
    try:
        from a3s_engine_sim.server import main
    finally:
        ssl.create_default_context = create_default_context
        ssl.SSLContext.set_default_verify_paths = set_default_verify_paths  # type: ignore[method-assign]
    return main


def run(argv: list[str] | None = None) -> None:
    _import_server()(argv)
