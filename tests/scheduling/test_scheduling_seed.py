"""Each seed example (§3.2 table) lands on the expected GPU type and count."""

from __future__ import annotations

import pytest
from scheduling_testkit import demand, hand_plan, mixed_cluster, schedulers, snapshot

from a3s_core.scheduling import Scheduler

# model, weights GB, KV GB for an 8k context, heads, quantization → expected placement
SEED = [
    ("Qwen/Qwen2.5-72B-Instruct", 145.4, 2.7, 64, "none", "A100-80GB", 2),
    ("Qwen/Qwen2.5-72B-Instruct", 41.0, 2.7, 64, "awq", "A100-80GB", 1),
    ("Qwen/Qwen2.5-32B-Instruct", 65.5, 2.1, 40, "none", "A100-80GB", 1),
    ("Qwen/Qwen2.5-32B-Instruct", 19.0, 2.1, 40, "awq", "L40S-48GB", 1),
    ("Qwen/Qwen2.5-7B-Instruct", 15.2, 0.5, 28, "none", "L40S-48GB", 1),
    ("Qwen/Qwen2.5-7B-Instruct", 5.5, 0.5, 28, "awq", "T4-16GB", 1),
    ("meta-llama/Llama-3.1-70B-Instruct", 141.1, 2.7, 64, "none", "A100-80GB", 2),
    ("meta-llama/Llama-3.1-70B-Instruct", 39.5, 2.7, 64, "awq", "A100-80GB", 1),
    ("meta-llama/Llama-3.1-8B-Instruct", 16.1, 1.1, 32, "none", "L40S-48GB", 1),
    ("meta-llama/Llama-3.1-8B-Instruct", 5.7, 1.1, 32, "awq", "T4-16GB", 1),
    ("deepseek-ai/DeepSeek-V3", 400.0, 100.0, 128, "none", "A100-80GB", 8),
    ("deepseek-ai/DeepSeek-V3", 120.0, 100.0, 128, "awq", "A100-80GB", 4),
    ("BAAI/bge-large-zh-v1.5", 0.7, 0.1, 16, "none", "T4-16GB", 1),
]


@pytest.fixture(scope="module")
def binpack() -> Scheduler:
    return Scheduler(schedulers().get("binpack")())


@pytest.mark.parametrize(("model", "weights", "kv", "heads", "quant", "gpu", "count"), SEED)
def test_seed_example_lands_on_expected_gpu(
    binpack: Scheduler,
    model: str,
    weights: float,
    kv: float,
    heads: int,
    quant: str,
    gpu: str,
    count: int,
) -> None:
    plan = hand_plan(model, weights, kv_gb=kv, heads=heads, quantization=quant)
    p = binpack.place(snapshot(mixed_cluster()), demand(plan))
    assert (p.gpu, len(p.gpu_indices), p.tensor_parallel_size) == (gpu, count, count)
    assert p.node.startswith("gpu-" + gpu.split("-")[0].lower())
    # a TP group gets neighbouring GPUs, aligned to its size
    assert p.gpu_indices == list(range(p.gpu_indices[0], p.gpu_indices[0] + count))
    assert p.gpu_indices[0] % count == 0


def test_replicas_of_one_deployment_may_land_on_different_gpu_types(binpack: Scheduler) -> None:
    """Each replica is placed on its own: when the best type is full, the next one."""
    snap = snapshot(mixed_cluster())
    d = demand(hand_plan("Qwen/Qwen2.5-7B-Instruct", 15.2, kv_gb=0.5, heads=28))
    gpus = []
    for _ in range(10):
        p = binpack.place(snap, d)
        snap.apply(p)
        gpus.append(p.gpu)
    assert gpus[:8] == ["L40S-48GB"] * 8  # both 4-GPU L40S nodes filled first
    assert set(gpus[8:]) <= {"A100-80GB", "H100-80GB"}
