"""The host CPU and memory a replica asks for, from its sizing plan."""

from __future__ import annotations

from a3s_core.controller.launch import GIB, host_cpu, host_memory_bytes
from a3s_core.types import SizingPlan


def plan(**kw: object) -> SizingPlan:
    return SizingPlan.model_construct(**{"cpu_only": False, "weight_bytes": 0,
                                         "memory_bytes": 0, **kw})


def test_a_gpu_replica_stages_its_weights_through_host_memory() -> None:
    p = plan(weight_bytes=145 * GIB)
    assert host_memory_bytes(p) == 149 * GIB
    assert host_cpu(p, 2) == 4.0 and host_cpu(p, 8) == 16.0


def test_a_cpu_replica_holds_everything_in_host_memory() -> None:
    p = plan(cpu_only=True, weight_bytes=4 * GIB, memory_bytes=6 * GIB)
    assert host_memory_bytes(p) == 6 * GIB
    assert host_cpu(p, 1) == 4.0
