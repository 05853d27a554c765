"""Accepting deployment requests and describing deployments (the API's service layer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from a3s_core.api.schemas import (
    DeploymentCreated,
    DeploymentView,
    ReplicaView,
    SubmitResponse,
)
from a3s_core.errors import InvalidRequest, UnknownPlugin
from a3s_core.platform import Platform
from a3s_core.registry import Registry
from a3s_core.scaling.fleet import FleetTraffic, merge_stats
from a3s_core.store import DeploymentRow, ReplicaRow, new_id
from a3s_core.store.tables import utcnow
from a3s_core.types import DeploymentRequest, ModelSpec


def check_names(platform: Platform, request: DeploymentRequest) -> None:
    """Engine / scheduler / balancer names must be installed; replicas under the ceiling."""
    plugins, settings = platform.plugins, platform.settings
    for i, m in enumerate(request.models):
        checks: list[tuple[str, str | None, Registry[Any]]] = [
            ("engine", m.engine, plugins.engines),
            ("scheduler", m.scheduler, plugins.schedulers),
            ("balancer", m.balancer, plugins.balancers),
        ]
        for field, name, registry in checks:
            if name is not None and name not in registry:
                raise UnknownPlugin(registry.kind, name, registry.names(), f"models[{i}].{field}")
        ceiling = settings.max_replicas
        if m.replicas > ceiling:
            raise InvalidRequest(
                f"models[{i}].replicas: {m.replicas} is above the platform's ceiling of "
                f"{ceiling} (setting A3S_MAX_REPLICAS)",
                field=f"models[{i}].replicas",
                value=m.replicas,
            )
        if m.autoscaling and m.autoscaling.max_replicas > ceiling:
            raise InvalidRequest(
                f"models[{i}].autoscaling.maxReplicas: {m.autoscaling.max_replicas} is above "
                f"the platform's ceiling of {ceiling}",
                field=f"models[{i}].autoscaling.maxReplicas",
                value=m.autoscaling.max_replicas,
            )


def submit(platform: Platform, request: DeploymentRequest) -> SubmitResponse:
    """Validate, persist (all or nothing), issue keys, and open the request's trace."""
    check_names(platform, request)
    namespace = request.resolved_namespace()
    with platform.tracer.start_as_current_span(
        "deployment.request", attributes={"a3s.namespace": namespace}
    ) as root:
        ctx = root.get_span_context()
        trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        rows = [_row(m, namespace, request.metadata, trace_id, span_id) for m in request.models]
        keys = platform.store.create_deployments(rows)
        for row in rows:
            platform.bus.emit(
                "deployment.accepted",
                f"accepted {row.name} ({row.model}, engine {row.engine}) in namespace "
                f"{row.namespace}",
                deployment_id=row.id,
                name=row.name,
                namespace=row.namespace,
                data={"spec": row.spec, "replicas": row.desired_replicas},
            )
    if platform.controller:
        platform.controller.wake()
    return SubmitResponse(
        namespace=namespace,
        trace_id=trace_id,
        deployments=[
            DeploymentCreated(
                id=row.id,
                name=row.name,
                namespace=row.namespace,
                model=row.model,
                engine=row.engine,
                endpoint=platform.settings.endpoint_for(row.namespace, row.name),
                api_key=keys[row.id],
                status=row.status,
                events_url=events_url(platform, row.id),
            )
            for row in rows
        ],
    )


def _row(
    m: ModelSpec, namespace: str, metadata: dict[str, Any], trace_id: str, span_id: str
) -> DeploymentRow:
    return DeploymentRow(
        id=new_id("dep"),
        name=m.name,
        namespace=namespace,
        model=m.model,
        engine=m.engine,
        spec=m.model_dump(mode="json", exclude_none=True),
        metadata_=metadata,
        desired_replicas=m.replicas,
        trace_id=trace_id,
        span_id=span_id,
    )


def events_url(platform: Platform, deployment_id: str) -> str:
    base = platform.settings.base_url.replace("http://", "ws://").replace("https://", "wss://")
    return f"{base}/v1/deployments/{deployment_id}/events"


def views(platform: Platform, rows: Sequence[DeploymentRow]) -> list[DeploymentView]:
    """`view` of many deployments (the list), without their recent events: one query for
    all their replicas and one for every gateway's traffic, however many there are."""
    replicas = platform.store.replicas_of([r.id for r in rows])
    shown = [r.id for r in rows if r.status != "deleted"]
    fleet = (platform.fleet.read_many(shown) if platform.fleet is not None
             and platform.observer is not None and shown else {})
    return [view(platform, r, recent_events=0, replicas=replicas[r.id],
                 traffic=fleet.get(r.id)) for r in rows]


def view(
    platform: Platform,
    row: DeploymentRow,
    recent_events: int = 20,
    *,
    replicas: Sequence[ReplicaRow] | None = None,
    traffic: FleetTraffic | None = None,
) -> DeploymentView:
    """The deployment as the API shows it. `replicas` and `traffic`: already read (the
    list reads them for every deployment at once); otherwise read here."""
    if replicas is None:
        replicas = platform.store.replicas(row.id)
    stats = None
    if platform.observer is not None and row.status != "deleted":
        stats = platform.observer.stats(row.id)
        if platform.fleet is not None:  # every other gateway process's traffic, added
            if traffic is None:
                traffic = platform.fleet.read(row.id)
            stats = merge_stats(stats, traffic, platform.gateway, row.id)
    events = (platform.store.events_since(0, deployment_id=row.id, limit=100_000)
              [-recent_events:] if recent_events > 0 else [])
    return DeploymentView(
        id=row.id,
        name=row.name,
        namespace=row.namespace,
        model=row.model,
        engine=row.engine,
        quantization=row.spec.get("quantization", "none"),
        status=row.status,
        reason=row.reason,
        retry_at=row.retry_at if row.status == "failed" else None,
        suggestions=row.suggestions or [],
        endpoint=platform.settings.endpoint_for(row.namespace, row.name),
        desired_replicas=row.desired_replicas,
        ready_replicas=sum(1 for r in replicas if r.state == "ready"),
        replicas=[
            ReplicaView(
                id=r.id,
                node=r.node,
                gpu=r.gpu,
                gpu_indices=r.gpu_indices or [],
                tensor_parallel_size=r.tensor_parallel_size,
                state=r.state,
                url=r.url,
                message=r.message,
                restarts=r.restarts,
                since=r.updated_at,
                ready_at=r.ready_at,
            )
            for r in replicas
        ],
        spec=row.spec,
        metadata=row.metadata_ or {},
        plan=row.plan,
        trace_id=row.trace_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        stats=stats,
        recent_events=[e.envelope() for e in events],
    )


def request_delete(platform: Platform, deployment_id: str) -> DeploymentRow:
    """Mark for deletion and revoke keys at once (the controller tears down replicas)."""
    row = platform.store.get_deployment(deployment_id)
    if row.status in ("deleting", "deleted"):
        return row
    platform.store.revoke_keys(row.id)
    row = platform.store.update_deployment(row.id, status="deleting", deleted_at=utcnow())
    platform.emit_for(
        row,
        "deployment.deleting",
        f"deleting {row.name}: keys revoked, stopping {len(platform.store.replicas(row.id))} "
        "replica(s)",
    )
    if platform.gateway:
        platform.gateway.invalidate()
    if platform.controller:
        platform.controller.wake()
    return row
