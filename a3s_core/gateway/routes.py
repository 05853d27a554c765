"""The data-plane routes. Every handler takes the raw request: bodies are forwarded as
bytes, never parsed into models and serialised again (the model field is the only thing
read, and only where it routes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from a3s_core.gateway.app import Gateway

POST_PATHS = ("/chat/completions", "/completions", "/embeddings")
TAG = "data plane (OpenAI-compatible)"


def build_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(tags=[TAG])

    for sub in POST_PATHS:
        upstream = "/v1" + sub

        async def by_model(request: Request, _upstream: str = upstream) -> Response:
            return await gateway.handle(request, _upstream)

        async def by_path(
            request: Request, namespace: str, name: str, _upstream: str = upstream
        ) -> Response:
            return await gateway.handle(request, _upstream, namespace, name)

        router.add_api_route(
            "/v1" + sub, by_model, methods=["POST"], name=f"openai{sub.replace('/', '_')}",
            summary=f"OpenAI {sub} — routed by Host (<name>.<domain>) or the body's model",
        )
        router.add_api_route(
            "/d/{namespace}/{name}/v1" + sub, by_path, methods=["POST"],
            name=f"deployment{sub.replace('/', '_')}",
            summary=f"OpenAI {sub} of one deployment (its path-based endpoint)",
        )

    async def models(request: Request) -> Response:
        return await gateway.handle(request, "/v1/models")

    async def model(request: Request, model: str) -> Response:
        return await gateway.handle(request, "/v1/models")

    async def models_by_path(request: Request, namespace: str, name: str) -> Response:
        return await gateway.handle(request, "/v1/models", namespace, name)

    async def model_by_path(request: Request, namespace: str, name: str, model: str) -> Response:
        return await gateway.handle(request, "/v1/models", namespace, name)

    router.add_api_route("/v1/models", models, methods=["GET"], summary="the key's model")
    router.add_api_route("/v1/models/{model}", model, methods=["GET"])
    router.add_api_route("/d/{namespace}/{name}/v1/models", models_by_path, methods=["GET"])
    router.add_api_route("/d/{namespace}/{name}/v1/models/{model}", model_by_path,
                         methods=["GET"])
    return router
