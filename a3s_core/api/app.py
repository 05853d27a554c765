"""The app factory. No module-level app, engine or plugin manager: tests build fresh ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace.export import SpanExporter

from a3s_core import __version__
from a3s_core.api import autoscaling, deployments, errors, system
from a3s_core.gateway.asgi import Message, Receive, Scope, Send, route_of
from a3s_core.platform import Platform
from a3s_core.plugins import Plugins
from a3s_core.settings import Settings

if TYPE_CHECKING:
    from a3s_core.gateway.app import Gateway


class PlatformApp(FastAPI):
    """FastAPI, with the gateway's data-plane paths answered before routing and middleware
    (raw ASGI: see a3s_core/gateway/asgi.py for why) and the control plane's body limit
    checked as plain ASGI (Starlette's BaseHTTPMiddleware costs a task per request)."""

    data_plane: Gateway | None = None
    max_body_bytes: int = 1 << 20

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            gateway = self.data_plane
            if gateway is not None and (route := route_of(scope)) is not None:
                return await gateway.serve(scope, receive, send, route)
            if scope["path"].startswith("/v1/deployments"):
                length = self._content_length(scope)
                if length is not None and length > self.max_body_bytes:
                    return await self._refuse_body(scope, receive, send, length)
                if length is None:  # chunked: count it as it arrives
                    bounded = await self._bounded(scope, receive, send)
                    if bounded is None:
                        return None
                    receive = bounded
        await super().__call__(scope, receive, send)

    @staticmethod
    def _content_length(scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return int(value) if value.isdigit() else None
        return None

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """A body without Content-Length, read up to the limit and replayed; None when it
        went over (answered here, before anything parsed or stored it)."""
        chunks: list[bytes] = []
        size = 0
        last: Message
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                last = message
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                await self._refuse_body(scope, receive, send, None)
                return None
            if not message.get("more_body", False):
                last = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return last

        return replay

    async def _refuse_body(
        self, scope: Scope, receive: Receive, send: Send, size: int | None
    ) -> None:
        said = f"{size} bytes is" if size is not None else "the body (chunked) is"
        response = JSONResponse(
            {
                "error": {
                    "code": "invalid_request",
                    "message": f"body: {said} over the limit of {self.max_body_bytes} bytes",
                    "details": [{"field": "body", "value": size, "message": "too large"}],
                }
            },
            status_code=422,
        )
        await response(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    plugins: Plugins | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    settings = settings or Settings()
    platform = Platform(settings, plugins, span_exporter=span_exporter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        try:
            yield
        finally:
            await platform.stop()

    app = PlatformApp(
        title="A3S GPU inference platform",
        version=__version__,
        description=(
            "Send one JSON model declaration; get an OpenAI-compatible endpoint and an API "
            "key. Control-plane calls take the admin token (`Authorization: Bearer …`); "
            "data-plane calls take the deployment's API key."
        ),
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.max_body_bytes = settings.max_body_bytes
    app.state.events_heartbeat_s = settings.events_heartbeat_s
    errors.install(app)

    app.include_router(system.router)
    app.include_router(system.admin_router)
    app.include_router(deployments.router)
    app.include_router(autoscaling.router)
    app.data_plane = platform.gateway
    try:  # the event stream routes (WebSocket) live in their own module
        from a3s_core.api import events_ws

        app.include_router(events_ws.router)
    except ImportError:
        pass
    else:
        http_not_found = app.router.default

        async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "websocket":
                return await events_ws.unknown_socket(scope, receive, send)
            await http_not_found(scope, receive, send)

        app.router.default = not_found
    return app
