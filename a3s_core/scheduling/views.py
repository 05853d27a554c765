"""Runtime `Node`s + the store's GPU bookings → the `NodeView`s the scheduler works on."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from a3s_core.catalog import GpuCatalog, load_catalog
from a3s_core.contracts import NodeView
from a3s_core.types import GpuDevice, GpuType, Node


@dataclass(frozen=True, slots=True)
class SchedulableNodeView(NodeView):
    """A NodeView that also says whether the node accepts new replicas (a cordoned
    Kubernetes node does not). Kept here until `NodeView` carries the field itself."""

    schedulable: bool = True


def is_schedulable(node: NodeView) -> bool:
    return bool(getattr(node, "schedulable", True))


def resolve_gpu(node: Node, catalog: GpuCatalog) -> tuple[str | None, GpuType | None]:
    """The catalog name and entry of the node's GPU. Runtimes normally set `gpu_product`
    to the catalog name; the raw product label (plus memory) is the fallback, so a node
    reported only by its `nvidia.com/gpu.product` label is still recognised."""
    if node.gpu_count <= 0:
        return None, None
    for name in (node.gpu_product, node.gpu_product_label):
        if not name:
            continue
        hit = catalog.get(name) or catalog.from_label(name, node.gpu_memory_mib or None)
        if hit is not None:
            return hit.name, hit
    # Unknown to the catalog: keep the runtime's name so the cluster view can show it;
    # no sizing candidate can name it, so nothing is ever placed there.
    return node.gpu_product or node.gpu_product_label, None


def node_view(
    node: Node,
    taken: Collection[int] = (),
    catalog: GpuCatalog | None = None,
) -> SchedulableNodeView:
    """One node as the scheduler sees it: GPUs booked in the store (`taken`), GPUs the
    runtime reports allocated, and GPUs held by foreign workloads are all not free."""
    catalog = catalog or load_catalog()
    gpu, gpu_type = resolve_gpu(node, catalog)
    if gpu is None:
        free: tuple[int, ...] = ()
        count = 0
    else:
        # A runtime that reports only a count (no per-device list) has devices 0..n-1.
        devices = node if node.gpus else node.model_copy(
            update={"gpus": [GpuDevice(index=i) for i in range(node.gpu_count)]}
        )
        free = tuple(sorted(devices.free_indices(set(taken))))
        count = node.gpu_count
    return SchedulableNodeView(
        name=node.name,
        gpu=gpu,
        gpu_type=gpu_type,
        gpu_count=count,
        free_indices=free,
        labels=dict(node.labels),
        utilization=_mean_utilization(node),
        schedulable=node.schedulable,
    )


def node_views(
    nodes: Iterable[Node],
    taken: Mapping[str, Collection[int]] | None = None,
    catalog: GpuCatalog | None = None,
) -> list[SchedulableNodeView]:
    """`taken` is node name → GPU indices booked in the store (the store's
    `allocations()` answer, node → {index → replica id}, fits as it is)."""
    catalog = catalog or load_catalog()
    taken = taken or {}
    return [node_view(n, taken.get(n.name, ()), catalog) for n in nodes]


def _mean_utilization(node: Node) -> float | None:
    known = [g.utilization for g in node.gpus if g.utilization is not None]
    return sum(known) / len(known) if known else None
