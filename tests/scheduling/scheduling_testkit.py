"""Helpers for the scheduling tests: inventories and hand-built sizing plans.

The plans come from a deliberately small sizer (weights / TP + overhead + a KV floor
must fit GPU memory × 0.9, TP ∈ {1, 2, 4, 8} dividing the heads) with the seed's
figures, so these tests do not depend on the real sizing code.
"""

from __future__ import annotations

from collections.abc import Iterable

import a3s_scheduler_standard

from a3s_core.catalog import load_catalog
from a3s_core.contracts import Demand
from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.registry import SchedulerRegistry
from a3s_core.scheduling import ClusterSnapshot, node_views
from a3s_core.types import Candidate, GpuDevice, ModelSpec, Node, SizingPlan

GB = 1_000_000_000
UTIL = 0.9
OVERHEAD = 1.5 * GB


def schedulers() -> SchedulerRegistry:
    """The strategies registry with only the standard strategies plugin registered, the
    way the entry point registers it (other plugins in the environment stay out)."""
    plugins = Plugins(build_plugin_manager(load_entry_points=False))
    plugins.register(a3s_scheduler_standard, name="scheduler-standard")
    return plugins.schedulers


def node(name: str, gpu: str, count: int, used: Iterable[int] = (), **kw: object) -> Node:
    mem = load_catalog().get(gpu)
    assert mem is not None, gpu
    used = set(used)
    return Node(
        name=name,
        gpu_product=mem.name,
        gpu_memory_mib=mem.memory_mib,
        gpu_count=count,
        gpus=[
            GpuDevice(index=i, allocated_to=("other" if i in used else None))
            for i in range(count)
        ],
        **kw,  # type: ignore[arg-type]
    )


def snapshot(nodes: Iterable[Node]) -> ClusterSnapshot:
    return ClusterSnapshot(node_views(nodes))


def mixed_cluster() -> list[Node]:
    """A realistic small mixed cluster: A100-80GB, H100, L40S and T4 nodes."""
    return [
        node("gpu-a100-0", "A100-80GB", 8),
        node("gpu-a100-1", "A100-80GB", 8),
        node("gpu-h100-0", "H100-80GB", 8),
        node("gpu-l40s-0", "L40S-48GB", 4),
        node("gpu-l40s-1", "L40S-48GB", 4),
        node("gpu-t4-0", "T4-16GB", 4),
        node("gpu-t4-1", "T4-16GB", 4),
    ]


def hand_plan(
    model: str,
    weight_gb: float,
    *,
    kv_gb: float = 2.0,
    quantization: str = "none",
    max_model_len: int = 8192,
    heads: int = 64,
    gpus: Iterable[str] | None = None,
) -> SizingPlan:
    """A sizing plan: for each GPU type, the smallest TP group that holds the weights,
    the overhead and `kv_gb` of KV cache (split over the group)."""
    catalog = load_catalog()
    weight = int(weight_gb * GB)
    kv = int(kv_gb * GB)
    cands: list[Candidate] = []
    for g in catalog.gpus:
        if gpus is not None and g.name not in gpus:
            continue
        if g.quantization_shortfall(quantization):  # the sizer's capability rule
            continue
        usable = int(g.memory_bytes * UTIL)
        for tp in (1, 2, 4, 8):
            if heads % tp:
                continue
            per_gpu = weight // tp + int(OVERHEAD)
            if per_gpu + kv // tp <= usable:
                cands.append(
                    Candidate(
                        gpu=g.name,
                        gpu_count=tp,
                        tensor_parallel_size=tp,
                        dtype="bfloat16" if g.has_bf16 else "float16",
                        weights_per_gpu_bytes=weight // tp,
                        overhead_per_gpu_bytes=int(OVERHEAD),
                        usable_per_gpu_bytes=usable,
                        kv_budget_per_gpu_bytes=usable - per_gpu,
                        max_model_len=max_model_len,
                        concurrent_sequences=1.0,
                    )
                )
                break
    # Best first: fewest GPUs, then least memory (to the GiB), then the cheaper GPU.
    tflops = {g.name: g.bf16_tflops for g in catalog.gpus}
    cands.sort(
        key=lambda c: (c.gpu_count, round(c.usable_per_gpu_bytes / 2**30), tflops[c.gpu])
    )
    return SizingPlan(
        model=model,
        checkpoint=model,
        quantization=quantization,
        engine_quantization=None if quantization == "none" else quantization,
        parameters=0,
        bytes_per_parameter=2.0,
        weight_bytes=weight,
        kv_bytes_per_token=0,
        kv_bytes_per_sequence=0,
        overhead_bytes=int(OVERHEAD),
        gpu_memory_utilization=UTIL,
        max_model_len=max_model_len,
        max_model_len_source="request",
        candidates=cands,
    )


def demand(plan: SizingPlan, name: str = "d", **metadata: object) -> Demand:
    return Demand(
        deployment=name, namespace="team-ai", candidates=tuple(plan.candidates),
        metadata=dict(metadata),
    )


def spec(name: str, model: str, **kw: object) -> ModelSpec:
    return ModelSpec(name=name, model=model, **kw)  # type: ignore[arg-type]
