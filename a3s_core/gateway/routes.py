"""The data-plane routes.

They are plain Starlette routes on the APIRouter, not FastAPI path operations: the bodies
are forwarded as bytes, never parsed into models and serialised again, so FastAPI's
dependency solving and validation would be pure cost on the hot path (about half a
millisecond a request; the gateway's whole budget is one). The OpenAI API is documented by
OpenAI; docs/gateway.md lists these paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from a3s_core.gateway.app import Gateway

POST_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MODELS = "/v1/models"

Endpoint = Callable[[Request], Awaitable[Response]]


def build_router(gateway: Gateway) -> APIRouter:
    def bare(upstream: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            return await gateway.handle(request, upstream)

        return endpoint

    def by_path(upstream: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            p = request.path_params
            return await gateway.handle(request, upstream, p["namespace"], p["name"])

        return endpoint

    routes = []
    for path in POST_PATHS:
        routes.append(Route(path, bare(path), methods=["POST"]))
        routes.append(Route("/d/{namespace}/{name}" + path, by_path(path), methods=["POST"]))
    for suffix in ("", "/{model:path}"):
        routes.append(Route(MODELS + suffix, bare(MODELS), methods=["GET"]))
        routes.append(Route("/d/{namespace}/{name}" + MODELS + suffix, by_path(MODELS),
                            methods=["GET"]))
    router = APIRouter()
    router.routes.extend(routes)
    return router
