"""Glue between the controller and the scheduler framework: views, placement, suggestions."""

from __future__ import annotations

from typing import Any

from a3s_core.contracts import Demand
from a3s_core.errors import A3SError, Unschedulable
from a3s_core.platform import Platform
from a3s_core.scheduling.framework import Scheduler
from a3s_core.scheduling.suggest import suggest
from a3s_core.scheduling.views import node_views
from a3s_core.store import DeploymentRow
from a3s_core.types import ModelSpec, Node, Placement, SizingPlan


def strategy_name(platform: Platform, spec: dict[str, Any]) -> str:
    return spec.get("scheduler") or platform.settings.scheduler


def scheduler_for(platform: Platform, name: str) -> Scheduler:
    return Scheduler(platform.plugins.schedulers.get(name)(), platform.catalog)


def demand_for(dep: DeploymentRow, plan: SizingPlan) -> Demand:
    return Demand(
        deployment=dep.id,
        namespace=dep.namespace,
        candidates=tuple(plan.candidates),
        metadata=dict(dep.metadata_ or {}),
    )


def place_cpu(nodes: list[Node], plan: SizingPlan) -> Placement:
    """Engines that run on CPU need memory, not GPUs; CPU nodes are not booked."""
    fits = [
        n
        for n in nodes
        if n.schedulable and (n.memory_bytes is None or n.memory_bytes >= plan.memory_bytes)
    ]
    if not fits:
        have = ", ".join(f"{n.name} ({(n.memory_bytes or 0) / 2**30:.1f} GiB)" for n in nodes)
        raise Unschedulable(
            f"needs {plan.memory_bytes / 2**30:.2f} GiB of memory on one node for a CPU "
            f"replica; nodes: {have or 'none'}"
        )
    fits.sort(key=lambda n: (n.gpu_count > 0, n.name))  # keep GPU nodes for GPU work
    return Placement(node=fits[0].name, gpu=None, gpu_indices=[], max_model_len=plan.max_model_len)


def place(
    platform: Platform,
    dep: DeploymentRow,
    plan: SizingPlan,
    nodes: list[Node],
    allocations: dict[str, dict[int, str]],
    with_suggestions: bool = True,
) -> Placement:
    """One replica's placement, or Unschedulable with reason and computed suggestions."""
    if plan.cpu_only:
        return place_cpu(nodes, plan)
    views = node_views(nodes, allocations, platform.catalog)
    scheduler = scheduler_for(platform, strategy_name(platform, dep.spec))
    try:
        return scheduler.place(views, demand_for(dep, plan))
    except Unschedulable as exc:
        if not with_suggestions:
            raise
        spec = ModelSpec.model_validate(dep.spec)
        tips = suggest(
            spec, plan, views, scheduler, lambda s: _resize(platform, s), demand_for(dep, plan)
        )
        raise Unschedulable(exc.message, [t["message"] for t in tips]) from exc


def _resize(platform: Platform, spec: ModelSpec) -> SizingPlan:
    from a3s_core.planning import resolve_plan

    return resolve_plan(platform, spec)[1]


async def preview(platform: Platform, dep: DeploymentRow, plan: SizingPlan) -> dict[str, Any]:
    nodes = await platform.runtime.list_nodes()
    allocations = platform.store.allocations()
    try:
        p = place(platform, dep, plan, nodes, allocations)
        return {"schedulable": True, "placement": p.model_dump(mode="json")}
    except A3SError as exc:
        return {
            "schedulable": False,
            "reason": exc.message,
            "suggestions": getattr(exc, "suggestions", []),
        }
