"""A deployment's scaling signals: the gateway's figures, with fallbacks for what it lacks.

- GPU utilisation: the gateway's mean over fresh replica metrics (the sim runtime's gauge,
  or an engine that exports one); else the runtime's node view of the replicas' own GPUs
  (NVML in `local`, DCGM in Kubernetes), averaged over the GPUs that report a figure.
- Queue depth: the engines' waiting requests, summed; when no engine reports it (no
  metrics endpoint, or stale) and the gateway has nothing in flight, the queue is 0.
- P99 latency and requests in the window: the gateway's latency window; the recent P99
  and its request count only over requests answered since the last scaling change.
- In flight: the gateway's own count, or the engines' running requests when larger.

The gateway's figures are this process's (`Platform.observer`: its gateway, or in a
`--role control` process one that only scrapes); every other gateway process's requests,
latency and in-flight counts are added from the store (fleet.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from a3s_core.scaling.fleet import FleetTraffic, merge_signals
from a3s_core.store import DeploymentRow, ReplicaRow
from a3s_core.types import Node, ScalingSignals

if TYPE_CHECKING:
    from a3s_core.platform import Platform

NodesFn = Callable[[], Awaitable[list[Node]]]


async def collect(
    platform: Platform,
    dep: DeploymentRow,
    replicas: Sequence[ReplicaRow],
    nodes: NodesFn,
    since_change_s: float | None = None,
) -> ScalingSignals:
    """`since_change_s`: seconds since the last scaling change (None: none known), so that
    the recent latency figures leave out requests answered before it."""
    ready = [r for r in replicas if r.state == "ready"]
    observer = platform.observer
    if observer is not None:
        sig = observer.signals(dep.id, since_change_s)
    else:
        sig = ScalingSignals(replicas=len(ready))
    fleet = platform.fleet
    if fleet is not None:
        def read() -> FleetTraffic:
            fleet.prune_if_due()
            return fleet.read(dep.id, since_change_s)

        traffic = await run_in_threadpool(read)
        sig = merge_signals(sig, traffic, platform.gateway, dep.id,
                            [r.id for r in replicas], since_change_s)
    updates: dict[str, object] = {"replicas": len(ready)}  # the store is the authority
    if sig.gpu_utilization is None and any(r.gpu_indices for r in ready):
        updates["gpu_utilization"] = node_gpu_utilization(ready, await nodes())
    if sig.queue_depth is None and not sig.in_flight and _nothing_in_flight(platform, dep.id):
        updates["queue_depth"] = 0.0
    return sig.model_copy(update=updates)


def node_gpu_utilization(replicas: Sequence[ReplicaRow], nodes: Sequence[Node]) -> float | None:
    """Mean utilisation of the GPUs these replicas hold, from the runtime's node view."""
    by_name = {n.name: n for n in nodes}
    values: list[float] = []
    for r in replicas:
        node = by_name.get(r.node or "")
        if node is None:
            continue
        held = set(r.gpu_indices)
        values += [
            g.utilization for g in node.gpus if g.index in held and g.utilization is not None
        ]
    return sum(values) / len(values) if values else None


def _nothing_in_flight(platform: Platform, deployment_id: str) -> bool:
    gateway = platform.observer
    if gateway is None:
        return True  # no data plane in this process: nothing can be waiting on it
    return int(gateway.stats(deployment_id).get("inFlight") or 0) == 0
