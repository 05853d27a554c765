"""Health, the platform's own Prometheus metrics, installed plugins, and the cluster view."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool

from a3s_core.api.deps import Admin, PlatformDep
from a3s_core.cluster import cluster_view
from a3s_core.platform import Platform

router = APIRouter(tags=["system"])
admin_router = APIRouter(prefix="/v1", dependencies=[Admin], tags=["system"])


@router.get("/healthz")
async def healthz(platform: PlatformDep) -> dict[str, Any]:
    return {"status": "ok", "runtime": platform.settings.runtime}


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


@admin_router.get("/cluster")
async def cluster(platform: PlatformDep) -> dict[str, Any]:
    return await cluster_view(platform)
