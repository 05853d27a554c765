"""Bin-packing keeps whole nodes free for an 8-GPU model; spreading does not."""

from __future__ import annotations

import pytest
from scheduling_testkit import demand, hand_plan, node, schedulers, snapshot

from a3s_core.errors import Unschedulable
from a3s_core.scheduling import Scheduler


def _fill_then_big(strategy: str) -> tuple[list[str], Scheduler, object]:
    registry = schedulers()
    sched = Scheduler(registry.get(strategy)())
    snap = snapshot([node(f"gpu-a100-{i}", "A100-80GB", 8) for i in range(4)])
    small = demand(hand_plan("Qwen/Qwen2.5-7B-Instruct", 15.2, heads=28, gpus=["A100-80GB"]))
    nodes = []
    for _ in range(8):
        p = sched.place(snap, small)
        snap.apply(p)
        nodes.append(p.node)
    return nodes, sched, snap


def test_binpack_keeps_whole_nodes_for_an_8_gpu_model() -> None:
    nodes, sched, snap = _fill_then_big("binpack")
    assert set(nodes) == {"gpu-a100-0"}  # eight 1-GPU replicas fill one node
    big = demand(hand_plan("deepseek-ai/DeepSeek-V3", 400, kv_gb=100, heads=128))
    p = sched.place(snap, big)  # type: ignore[arg-type]
    assert (p.gpu, p.gpu_indices) == ("A100-80GB", list(range(8)))
    assert p.node != "gpu-a100-0"


def test_spread_fragments_and_the_8_gpu_model_does_not_fit() -> None:
    nodes, sched, snap = _fill_then_big("spread")
    assert sorted(nodes.count(f"gpu-a100-{i}") for i in range(4)) == [2, 2, 2, 2]
    big = demand(hand_plan("deepseek-ai/DeepSeek-V3", 400, kv_gb=100, heads=128))
    with pytest.raises(Unschedulable) as exc:
        sched.place(snap, big)  # type: ignore[arg-type]
    assert exc.value.message.startswith(
        "needs 8× A100-80GB, 4× H200-141GB, 4× B200 or 8× H100-80GB on one node; A100-80GB nodes: "
    )
    assert exc.value.message.endswith("the cluster has no H200-141GB, B200 or H100-80GB nodes")
    assert "gpu-a100-0 has 6 of 8 free" in exc.value.message
    assert "24 free in all, but a replica's GPUs must be on one node" in exc.value.message
