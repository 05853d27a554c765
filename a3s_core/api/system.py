"""Health, the platform's own Prometheus metrics, installed plugins, who leads the controllers,
and the cluster view."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool

from a3s_core import __version__
from a3s_core.api.deps import Admin, PlatformDep
from a3s_core.cluster import cluster_view
from a3s_core.controller.leader import LEASE_NAME, lease_view
from a3s_core.gateway.workers import worker_info
from a3s_core.platform import Platform
from a3s_core.store.leases import Leases

router = APIRouter(tags=["system"])
admin_router = APIRouter(prefix="/v1", dependencies=[Admin], tags=["system"])


@router.get("/healthz")
async def healthz(platform: PlatformDep) -> dict[str, Any]:
    """Liveness (200 while the process serves). `store` says whether the gateway's last
    read of the store worked: during an outage the gateway serves from its last snapshot
    (docs/gateway.md), so the process stays live, and `staleForS` is that snapshot's age."""
    body: dict[str, Any] = {"status": "ok", "runtime": platform.settings.runtime}
    if platform.gateway is not None:
        directory = platform.gateway.directory
        body["store"] = {"ok": directory.store_ok, "staleForS": directory.stale_for_s}
    body.update(worker_info(platform.settings))  # which of `a3s serve --workers N` answered
    return body


class _StoreCollector:
    """Reads the store at scrape time, so figures are right in every platform replica."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Any:
        store = self.platform.store
        deps = GaugeMetricFamily("a3s_deployments", "Deployments by status", labels=["status"])
        for status, n in Counter(d.status for d in store.list_deployments()).items():
            deps.add_metric([status], n)
        yield deps
        reps = GaugeMetricFamily("a3s_replicas", "Replicas by state", labels=["state"])
        for state, n in Counter(r.state for r in store.replicas()).items():
            reps.add_metric([state], n)
        yield reps
        gpus = GaugeMetricFamily("a3s_gpus_allocated", "GPUs booked by replicas", labels=["node"])
        for node, held in store.allocations().items():
            gpus.add_metric([node], len(held))
        yield gpus
        seq = GaugeMetricFamily("a3s_event_seq", "Last event sequence number")
        seq.add_metric([], store.last_seq())
        yield seq
        leads = GaugeMetricFamily(
            "a3s_controller_leader", "1 while this process leads the controllers, else 0"
        )
        leader = self.platform.leader
        leads.add_metric([], 1 if leader is not None and leader.leading else 0)
        yield leads


def metrics_registry(platform: Platform) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(_StoreCollector(platform))  # type: ignore[arg-type]
    return reg


@router.get("/metrics", response_class=Response)
async def metrics(platform: PlatformDep) -> Response:
    reg = platform.__dict__.setdefault("_metrics_registry", metrics_registry(platform))
    body = await run_in_threadpool(generate_latest, reg)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@admin_router.get("/plugins")
async def plugins(platform: PlatformDep) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "version": p.version, "distribution": p.distribution, "hooks": p.hooks}
        for p in platform.plugins.describe()
    ]


@admin_router.get("/system")
async def system(platform: PlatformDep) -> dict[str, Any]:
    """This process and the controllers' leader: `controllers.leading` is this process's
    own view (its loops run), `controllers.leader` the live holder in the store."""
    lease = await run_in_threadpool(Leases(platform.store).get, LEASE_NAME)
    elector = platform.leader
    return {
        "version": __version__,
        "runtime": platform.settings.runtime,
        "store": platform.store.engine.dialect.name,
        "controllers": {
            "enabled": platform.settings.controllers,
            "identity": elector.identity if elector else None,
            "leading": bool(elector and elector.leading),
            "leaseDurationSeconds": platform.settings.lease_duration_s,
            "renewIntervalSeconds": platform.settings.lease_renew_interval_s,
            **(lease_view(lease) if lease else lease_view(None)),
        },
    }


@admin_router.get("/cluster")
async def cluster(platform: PlatformDep) -> dict[str, Any]:
    return await cluster_view(platform)
