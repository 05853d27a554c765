"""Runtime nodes + store bookings → NodeViews."""

from __future__ import annotations

from a3s_core.scheduling import is_schedulable, node_view, node_views
from a3s_core.types import GpuDevice, Node


def test_bookings_runtime_allocations_and_foreign_gpus_are_not_free() -> None:
    n = Node(
        name="gpu-a100-0",
        gpu_product="A100-80GB",
        gpu_count=8,
        gpus=[
            GpuDevice(index=i, utilization=u, allocated_to="r1" if i == 1 else None)
            for i, u in enumerate([10, 20, 30, 40, None, None, None, None])
        ],
        external_gpus=2,  # another workload holds two (counted, not indexed)
    )
    (v,) = node_views([n], {"gpu-a100-0": {0: "r0", 3: "r3"}})
    assert v.gpu == "A100-80GB" and v.gpu_type is not None
    assert v.free_indices == (2, 4, 5)  # 0, 3 booked; 1 allocated; 6, 7 foreign
    assert (v.free, v.used) == (3, 5)
    assert v.utilization == 25.0
    assert is_schedulable(v)


def test_product_label_resolves_through_the_catalog() -> None:
    n = Node(name="n", gpu_product_label="NVIDIA-H100-80GB-HBM3", gpu_count=2,
             gpu_memory_mib=81559, labels={"a3s.io/team": "t1"})
    v = node_view(n)
    assert v.gpu == "H100-80GB" and v.free_indices == (0, 1)  # no device list: 0..n-1
    assert v.labels == {"a3s.io/team": "t1"}
    # a new variant of a known family, recognised by family and memory
    v = node_view(Node(name="n", gpu_product_label="NVIDIA-A100-SXM4-80GB-NEW",
                       gpu_memory_mib=81920, gpu_count=1))
    assert v.gpu == "A100-80GB"


def test_unknown_gpu_cpu_only_and_cordoned_nodes() -> None:
    unknown = node_view(Node(name="x", gpu_product="MI300X", gpu_count=8))
    assert unknown.gpu == "MI300X" and unknown.gpu_type is None and unknown.free == 8
    cpu = node_view(Node(name="cpu", gpu_count=0))
    assert cpu.gpu is None and cpu.free_indices == () and cpu.gpu_count == 0
    cordoned = node_view(Node(name="c", gpu_product="T4-16GB", gpu_count=4, schedulable=False))
    assert not is_schedulable(cordoned)
