"""The cluster as the runtime reports it, with the store's GPU bookings laid over it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.concurrency import run_in_threadpool

from a3s_core.platform import Platform
from a3s_core.types import Node


def apply_allocations(nodes: list[Node], allocations: dict[str, dict[int, str]]) -> list[Node]:
    """Mark each GPU booked in the store as held by its replica."""
    out = []
    for node in nodes:
        held = allocations.get(node.name, {})
        gpus = [
            g.model_copy(update={"allocated_to": held.get(g.index, g.allocated_to)})
            for g in node.gpus
        ]
        out.append(node.model_copy(update={"gpus": gpus}))
    return out


async def cluster_view(platform: Platform) -> dict[str, Any]:
    nodes = await platform.runtime.list_nodes()
    allocations = await run_in_threadpool(platform.store.allocations)
    replicas = {r.id: r for r in await run_in_threadpool(platform.store.replicas)}
    names = {d.id: d for d in await run_in_threadpool(platform.store.list_deployments)}
    nodes = apply_allocations(nodes, allocations)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    rows = []
    for n in nodes:
        allocated = sum(1 for g in n.gpus if g.allocated_to) + n.external_gpus
        utils = [g.utilization for g in n.gpus if g.utilization is not None]
        gpus = []
        for g in n.gpus:
            rep = replicas.get(g.allocated_to or "")
            dep = names.get(rep.deployment_id) if rep else None
            gpus.append(
                {
                    "index": g.index,
                    "utilization": g.utilization,
                    "memoryUsedBytes": g.memory_used_bytes,
                    "replica": g.allocated_to,
                    "deployment": f"{dep.namespace}/{dep.name}" if dep else None,
                }
            )
        rows.append(
            {
                "name": n.name,
                "gpu": n.gpu_product,
                "gpuProductLabel": n.gpu_product_label,
                "gpuMemoryMiB": n.gpu_memory_mib,
                "gpuCount": n.gpu_count,
                "allocated": allocated,
                "external": n.external_gpus,
                "free": n.gpu_count - allocated,
                "utilization": round(sum(utils) / len(utils), 1) if utils else None,
                "schedulable": n.schedulable,
                "cpuCores": n.cpu_cores,
                "memoryBytes": n.memory_bytes,
                "labels": n.labels,
                "gpus": gpus,
            }
        )
        key = n.gpu_product or ("cpu" if n.gpu_count == 0 else "unknown")
        t = totals[key]
        t["nodes"] += 1
        t["gpus"] += n.gpu_count
        t["allocated"] += allocated
        t["free"] += n.gpu_count - allocated
    return {
        "runtime": platform.settings.runtime,
        "nodes": rows,
        "totals": {k: {kk: int(vv) for kk, vv in v.items()} for k, v in sorted(totals.items())},
    }
