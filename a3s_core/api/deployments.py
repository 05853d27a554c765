"""Control plane: deployments (admin token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from a3s_core import deployments as service
from a3s_core.api.deps import Admin, PlatformDep
from a3s_core.api.schemas import (
    DeploymentView,
    KeyResponse,
    ScaleRequest,
    SubmitResponse,
)
from a3s_core.errors import Conflict, InvalidRequest
from a3s_core.planning import plan_request
from a3s_core.sizing.served import parse_overrides
from a3s_core.types import DeploymentRequest
from a3s_core.types.spec import check_dns_label

router = APIRouter(prefix="/v1", dependencies=[Admin], tags=["deployments"])

_EXAMPLES: dict[str, Any] = {
    "minimal": {
        "summary": "Minimal request: one model, every default",
        "value": {"models": [{"name": "qwen-72b", "model": "Qwen/Qwen2.5-72B-Instruct"}]},
    },
    "full": {
        "summary": "Every field of a model, a namespace and metadata",
        "value": {
            "models": [
                {
                    "name": "qwen-72b",
                    "model": "Qwen/Qwen2.5-72B-Instruct",
                    "engine": "vllm",
                    "quantization": "awq",
                    "max_model_len": 32768,
                    "replicas": 1,
                    "extra_args": {},
                }
            ],
            "namespace": "team-ai",
            "metadata": {"userId": "user-001", "teamId": "team-001", "source": "cli"},
        },
    },
    "multi": {
        "summary": "Several models in one request",
        "value": {
            "models": [
                {
                    "name": "qwen-72b",
                    "model": "Qwen/Qwen2.5-72B-Instruct",
                    "engine": "vllm",
                    "quantization": "awq",
                },
                {"name": "embedding", "model": "BAAI/bge-large-zh-v1.5", "engine": "tgi"},
            ]
        },
    },
}

RequestBody = Annotated[DeploymentRequest, Body(openapi_examples=_EXAMPLES)]


def check_extra_args(request: DeploymentRequest) -> None:
    """The `extra_args` that override sizing (max_model_len, tensor_parallel_size, …) are
    typed: a wrong one is refused now, not accepted and then failed by the controller."""
    for i, m in enumerate(request.models):
        try:
            parse_overrides(m.extra_args)
        except InvalidRequest as exc:
            field = f"models[{i}].{exc.field}"
            raise InvalidRequest(f"{field}: {exc.message}", field=field, value=exc.value) from None


@router.post(
    "/deployments",
    status_code=202,
    response_model=SubmitResponse,
    response_model_by_alias=True,
    summary="Deploy models; returns endpoints and API keys at once",
    responses={200: {"description": "dry run: the sizing and placement plan"},
               422: {"description": "dry run: a model cannot be sized (see `error`)"},
               503: {"description": "dry run: a model's hub cannot be reached"}},
)
async def create_deployments(
    platform: PlatformDep,
    body: RequestBody,
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
) -> Any:
    check_extra_args(body)
    if dry_run:
        return JSONResponse(*await plan_request(platform, body))
    return await run_in_threadpool(service.submit, platform, body)


@router.post(
    "/deployments:plan",
    summary="Size and place without deploying",
    responses={422: {"description": "a model cannot be sized: `error` names it, and each "
                                    "model's entry says why"},
               503: {"description": "a model's hub cannot be reached (retry later)"}},
)
async def plan_deployments(platform: PlatformDep, body: RequestBody) -> JSONResponse:
    check_extra_args(body)
    return JSONResponse(*await plan_request(platform, body))


@router.get("/deployments", response_model=list[DeploymentView], response_model_by_alias=True)
async def list_deployments(
    platform: PlatformDep,
    namespace: str | None = None,
    include_deleted: Annotated[bool, Query(alias="includeDeleted")] = False,
) -> list[DeploymentView]:
    if namespace:  # one that cannot exist is a mistake, not an empty list
        try:
            check_dns_label(namespace, "namespace")
        except ValueError as exc:
            raise InvalidRequest(f"namespace: {exc}", field="namespace", value=namespace) from None

    def work() -> list[DeploymentView]:
        rows = platform.store.list_deployments(namespace, include_deleted=include_deleted)
        return service.views(platform, rows)

    return await run_in_threadpool(work)


@router.get(
    "/deployments/{deployment_id}", response_model=DeploymentView, response_model_by_alias=True
)
async def get_deployment(platform: PlatformDep, deployment_id: str) -> DeploymentView:
    row = await run_in_threadpool(platform.store.get_deployment, deployment_id)
    return await run_in_threadpool(service.view, platform, row)


@router.delete(
    "/deployments/{deployment_id}",
    status_code=202,
    response_model=DeploymentView,
    response_model_by_alias=True,
)
async def delete_deployment(platform: PlatformDep, deployment_id: str) -> DeploymentView:
    row = await run_in_threadpool(service.request_delete, platform, deployment_id)
    return await run_in_threadpool(service.view, platform, row)


@router.post(
    "/deployments/{deployment_id}/scale",
    status_code=202,
    response_model=DeploymentView,
    response_model_by_alias=True,
)
async def scale_deployment(
    platform: PlatformDep, deployment_id: str, body: ScaleRequest
) -> DeploymentView:
    def work() -> DeploymentView:
        row = platform.store.get_deployment(deployment_id)
        if row.status in ("deleting", "deleted"):
            raise Conflict(f"deployment {row.name!r} is {row.status}; it cannot be scaled")
        # The autoscaling block's bounds hold only while it is on: `enabled: false` is the
        # opt-out for scaling by hand (its stored defaults, maxReplicas 4, were never set).
        auto = row.spec.get("autoscaling") or {}
        bounded = bool(auto) and auto.get("enabled", True)
        platform_max = platform.settings.max_replicas
        ceiling = min(platform_max, int(auto.get("max_replicas", platform_max)))
        if not bounded or ceiling == platform_max:
            ceiling, source = platform_max, "the platform's, A3S_MAX_REPLICAS"
        else:
            source = "autoscaling.maxReplicas"
        if body.replicas > ceiling:
            raise InvalidRequest(
                f"replicas: {body.replicas} is above this deployment's maximum of {ceiling} "
                f"({source})",
                field="replicas",
                value=body.replicas,
            )
        floor = int(auto.get("min_replicas", 1)) if bounded else 1
        if body.replicas < floor:
            raise InvalidRequest(
                f"replicas: {body.replicas} is below this deployment's autoscaling minimum of "
                f"{floor} (autoscaling.minReplicas)",
                field="replicas",
                value=body.replicas,
            )
        before = row.desired_replicas
        row = platform.store.update_deployment(row.id, desired_replicas=body.replicas)
        platform.emit_for(
            row,
            "scaling.manual",
            f"{row.name}: desired replicas set to {body.replicas} (was {before}) by the API",
            data={"from": before, "to": body.replicas},
        )
        if platform.controller:
            platform.controller.wake()
        return service.view(platform, row)

    return await run_in_threadpool(work)


@router.post(
    "/deployments/{deployment_id}/keys:rotate",
    response_model=KeyResponse,
    response_model_by_alias=True,
    summary="Revoke the deployment's keys and issue a new one (shown once)",
)
async def rotate_key(platform: PlatformDep, deployment_id: str) -> KeyResponse:
    def work() -> KeyResponse:
        row = platform.store.get_deployment(deployment_id)
        if row.status in ("deleting", "deleted"):
            raise Conflict(f"deployment {row.name!r} is {row.status}; it has no keys")
        key = platform.store.rotate_key(row.id)
        platform.emit_for(
            row,
            "apikey.rotated",
            f"{row.name}: API key rotated; old keys revoked",
        )
        if platform.gateway:
            platform.gateway.invalidate()
        return KeyResponse(deployment_id=row.id, api_key=key)

    return await run_in_threadpool(work)


@router.post("/deployments/{deployment_id}/keys:revoke", summary="Revoke every key")
async def revoke_keys(platform: PlatformDep, deployment_id: str) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        row = platform.store.get_deployment(deployment_id)
        n = platform.store.revoke_keys(row.id)
        platform.emit_for(
            row,
            "apikey.revoked",
            f"{row.name}: {n} API key(s) revoked",
        )
        if platform.gateway:
            platform.gateway.invalidate()
        return {"deploymentId": row.id, "revoked": n}

    return await run_in_threadpool(work)


__all__ = ["router"]
