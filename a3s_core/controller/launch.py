"""Turn a placement into a ReplicaRequest: the engine renders its command from the plan."""

from __future__ import annotations

import os

from a3s_core.contracts import Engine, LaunchContext
from a3s_core.platform import Platform
from a3s_core.store import DeploymentRow
from a3s_core.types import Placement, ReplicaRequest, SizingPlan


def make_engine(platform: Platform, name: str) -> Engine:
    return platform.plugins.engines.get(name)(image=platform.settings.engine_images.get(name))


async def build_request(
    platform: Platform, dep: DeploymentRow, plan: SizingPlan, placement: Placement, replica_id: str
) -> ReplicaRequest:
    engine = make_engine(platform, dep.engine)
    cand = plan.candidate_for(placement.gpu) if placement.gpu else None
    tp = cand.tensor_parallel_size if cand else 1
    max_len = cand.max_model_len if cand else plan.max_model_len
    port = await platform.runtime.reserve_port() or engine.port
    ctx = LaunchContext(
        served_model_name=dep.name,
        model=plan.checkpoint,
        kind=plan.kind,
        quantization=plan.engine_quantization,
        tensor_parallel_size=tp,
        max_model_len=max_len,
        dtype=cand.dtype if cand else "auto",
        gpu_memory_utilization=plan.gpu_memory_utilization,
        port=port,
        extra_args=dict(dep.spec.get("extra_args") or {}),
        gpu_indices=list(placement.gpu_indices),
        cpu_threads=None if placement.gpu else max(1, (os.cpu_count() or 2) - 1),
        in_container=type(platform.runtime).runs_images,
        concurrent_sequences=max(1, int(cand.concurrent_sequences)) if cand else None,
    )
    gpu_type = platform.catalog.get(placement.gpu) if placement.gpu else None
    return ReplicaRequest(
        replica_id=replica_id,
        deployment_id=dep.id,
        deployment_name=dep.name,
        namespace=dep.namespace,
        engine=dep.engine,
        image=engine.image_for(ctx),
        command=engine.command(ctx),
        keep_entrypoint=bool(ctx.in_container) and engine.keeps_entrypoint(ctx),
        env=engine.env(ctx),
        port=port,
        health_path=engine.health_path_for(ctx),
        ready_path=engine.ready_path_for(ctx),
        placement=placement,
        model=engine.model_for(ctx),
        served_model_name=dep.name,
        max_model_len=max_len,
        tensor_parallel_size=tp,
        gpu=placement.gpu,
        labels={"a3s.io/namespace": dep.namespace},
        cpu_request=host_cpu(plan, tp),
        memory_request_bytes=host_memory_bytes(plan),
        sim={
            "engine": dep.engine,
            "gpu": placement.gpu,
            "bandwidth_gbs": gpu_type.bandwidth_gbs if gpu_type else 50.0,
            "bf16_tflops": gpu_type.bf16_tflops if gpu_type else 1.0,
            "tensor_parallel_size": tp,
            "parameters": plan.parameters,
            "weight_bytes": plan.weight_bytes,
            "kv_bytes_per_token": plan.kv_bytes_per_token,
            "max_model_len": max_len,
            "kind": plan.kind,
            "max_num_seqs": ctx.extra_args.get("max_num_seqs"),
        },
    )


GIB = 1 << 30


def host_cpu(plan: SizingPlan, tensor_parallel_size: int) -> float:
    """Cores a replica should be granted: a CPU engine computes on them (4); a GPU engine
    keeps one busy per GPU worker plus its API server and tokenizer (2 per GPU)."""
    return 4.0 if plan.cpu_only else 2.0 * max(1, tensor_parallel_size)


def host_memory_bytes(plan: SizingPlan) -> int:
    """Host memory a replica needs. A CPU engine holds everything in it (the plan's total);
    a GPU engine stages the checkpoint through it while loading (safetensors are mapped
    whole) on top of ~4 GiB for the process, CUDA context and tokenizer."""
    if plan.cpu_only:
        return max(plan.memory_bytes, plan.weight_bytes)
    return plan.weight_bytes + 4 * GIB
