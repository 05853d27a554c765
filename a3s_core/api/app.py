"""The app factory. No module-level app, engine or plugin manager: tests build fresh ones."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace.export import SpanExporter

from a3s_core import __version__
from a3s_core.api import autoscaling, deployments, errors, system
from a3s_core.platform import Platform
from a3s_core.plugins import Plugins
from a3s_core.settings import Settings


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

    app = FastAPI(
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
    app.state.events_heartbeat_s = settings.events_heartbeat_s
    errors.install(app)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Refuse bodies over the limit before reading them (1 MiB by default)."""
        size = request.headers.get("content-length")
        control = request.url.path.startswith("/v1/deployments")  # prompts may be larger
        if control and size and size.isdigit() and int(size) > settings.max_body_bytes:
            return JSONResponse(
                {
                    "error": {
                        "code": "invalid_request",
                        "message": f"body: {int(size)} bytes is over the limit of "
                        f"{settings.max_body_bytes} bytes",
                        "details": [{"field": "body", "value": int(size), "message": "too large"}],
                    }
                },
                status_code=422,
            )
        return await call_next(request)

    app.include_router(system.router)
    app.include_router(system.admin_router)
    app.include_router(deployments.router)
    app.include_router(autoscaling.router)
    if platform.gateway is not None:
        app.include_router(platform.gateway.router())
    try:  # the event stream routes (WebSocket) live in their own module
        from a3s_core.api import events_ws

        app.include_router(events_ws.router)
    except ImportError:
        pass
    return app
