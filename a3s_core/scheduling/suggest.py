"""Suggestions for an unschedulable replica, each one checked against the cluster now.

Every alternative is sized again (through the `resize` callable the caller wires to the
sizing hooks) and placed again (with the same strategy, without booking anything); only
alternatives that would be placed at this moment are offered. An alternative that cannot
be sized (the sizer raises) is simply not offered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from a3s_core.contracts import Demand, NodeView
from a3s_core.errors import Unschedulable
from a3s_core.scheduling.framework import Scheduler
from a3s_core.scheduling.snapshot import ClusterSnapshot
from a3s_core.types import ModelSpec, Placement, SizingPlan

Resize = Callable[[ModelSpec], SizingPlan]

MIN_MAX_MODEL_LEN = 2048  # shorter contexts are rarely useful for a chat model


def suggest(
    spec: ModelSpec,
    plan: SizingPlan,
    nodes: Sequence[NodeView],
    scheduler: Scheduler,
    resize: Resize,
    demand: Demand | None = None,
    min_max_model_len: int = MIN_MAX_MODEL_LEN,
) -> list[dict[str, Any]]:
    """Alternatives that would fit now, as {"message", "patch", "placement"}: `patch` is
    the change to the model spec (field → value), `placement` where it would land.

    `demand` is the replica's demand that failed (its metadata is kept for strategies
    that use it, e.g. team affinity); when it was narrowed to some of the plan's GPU
    types, the plan's other GPU types are tried too."""
    snap = nodes if isinstance(nodes, ClusterSnapshot) else ClusterSnapshot(nodes)
    base = demand or Demand(spec.name, "", tuple(plan.candidates))
    # GPU types the plan offered but the demand left out stay out of every alternative
    # but the one that proposes them.
    excluded = {c.gpu for c in plan.candidates} - {c.gpu for c in base.candidates}
    out: list[dict[str, Any]] = []

    out.extend(_other_gpu_types(plan, snap, scheduler, base, excluded))
    for quant in _quantizations_to_try(spec, plan):
        alt = _try(
            spec.model_copy(update={"quantization": quant}), snap, scheduler, resize, base, excluded
        )
        if alt is not None:
            p, _ = alt
            out.append(
                _entry(f"use {quant.upper()} quantization", p, {"quantization": quant})
            )
    shorter = _shorter_context(
        spec, plan, snap, scheduler, resize, base, excluded, min_max_model_len
    )
    if shorter is not None:
        out.append(shorter)
    return out


def _quantizations_to_try(spec: ModelSpec, plan: SizingPlan) -> list[str]:
    """AWQ (4-bit) unless already 4-bit; FP8 only from an unquantized model."""
    current = spec.quantization if spec.quantization != "none" else plan.quantization
    tries = []
    if current not in ("awq", "gptq"):
        tries.append("awq")
    if current in ("none", "", None):
        tries.append("fp8")
    return tries


def _try(
    alt_spec: ModelSpec,
    snap: ClusterSnapshot,
    scheduler: Scheduler,
    resize: Resize,
    base: Demand,
    excluded: set[str],
) -> tuple[Placement, SizingPlan] | None:
    try:
        alt_plan = resize(alt_spec)
    except Exception:  # an alternative the sizer cannot size is not offered
        return None
    cands = tuple(
        c
        for c in alt_plan.candidates
        if c.gpu not in excluded and _supports(scheduler, c.gpu, alt_plan)
    )
    if not cands:
        return None
    demand = Demand(base.deployment, base.namespace, cands, dict(base.metadata))
    placement = scheduler.fits(snap, demand)
    return None if placement is None else (placement, alt_plan)


def _supports(scheduler: Scheduler, gpu: str, plan: SizingPlan) -> bool:
    """The GPU can run the plan's quantization, by the rule sizing applies
    (`GpuType.quantization_shortfall`: FP8 from 8.0, weight-only below 8.9). The sizer
    does not offer other GPUs; this guards a sizer (a plugin's) that does."""
    methods = {m for m in (plan.quantization, plan.engine_quantization) if m}
    if not methods - {"none"}:
        return True
    t = scheduler.catalog.get(gpu)
    return t is not None and not any(t.quantization_shortfall(m) for m in methods)


def _shorter_context(
    spec: ModelSpec,
    plan: SizingPlan,
    snap: ClusterSnapshot,
    scheduler: Scheduler,
    resize: Resize,
    base: Demand,
    excluded: set[str],
    floor: int,
) -> dict[str, Any] | None:
    """The longest halved max_model_len (down to `floor`) that fits now."""
    length = plan.max_model_len // 2
    while length >= floor:
        alt = _try(
            spec.model_copy(update={"max_model_len": length}), snap, scheduler, resize, base,
            excluded,
        )
        if alt is not None:
            p, alt_plan = alt
            got = alt_plan.max_model_len or length
            return _entry(f"lower max_model_len to {got}", p, {"max_model_len": got})
        length //= 2
    return None


def _other_gpu_types(
    plan: SizingPlan,
    snap: ClusterSnapshot,
    scheduler: Scheduler,
    base: Demand,
    excluded: set[str],
) -> list[dict[str, Any]]:
    """Plan candidates the demand left out (a narrowed demand), one suggestion each."""
    out = []
    for c in plan.candidates:
        if c.gpu not in excluded:
            continue
        demand = Demand(base.deployment, base.namespace, (c,), dict(base.metadata))
        p = scheduler.fits(snap, demand)
        if p is not None:
            out.append(_entry(f"use {c.gpu} instead", p, {"gpu": c.gpu}))
    return out


def _entry(what: str, p: Placement, patch: dict[str, Any]) -> dict[str, Any]:
    n = len(p.gpu_indices)
    return {
        "message": f"{what}: fits {n}× {p.gpu} on {p.node} now",
        "patch": patch,
        "placement": p.model_dump(),
    }


def place_or_suggest(
    scheduler: Scheduler,
    nodes: Sequence[NodeView],
    demand: Demand,
    spec: ModelSpec,
    plan: SizingPlan,
    resize: Resize,
) -> Placement:
    """`scheduler.place`, and on failure the same Unschedulable with computed suggestions:
    sentences in `.suggestions`, the structured entries in `.detail["alternatives"]`."""
    try:
        return scheduler.place(nodes, demand)
    except Unschedulable as exc:
        alts = suggest(spec, plan, nodes, scheduler, resize, demand)
        err = Unschedulable(exc.message, [a["message"] for a in alts])
        err.detail["alternatives"] = alts
        raise err from None
