"""Kubernetes nodes and pods → the platform's Node inventory (pure functions, no I/O)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from kubernetes import client as k8s
from kubernetes.utils import parse_quantity

from a3s_core.catalog import GpuCatalog
from a3s_core.types import GpuDevice, Node
from a3s_runtime_kubernetes import naming as n
from a3s_runtime_kubernetes.dcgm import GpuKey, GpuStats
from a3s_runtime_kubernetes.objects import annotations_of, labels_of, name_of

PRODUCT = "nvidia.com/gpu.product"
MEMORY = "nvidia.com/gpu.memory"  # MiB per GPU (GPU feature discovery)
COUNT = "nvidia.com/gpu.count"
TERMINATED = ("Succeeded", "Failed")


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return None


def _container_gpus(container: Any) -> int:
    res = container.resources
    if res is None:
        return 0
    # Requests default to limits for extended resources, which may only be set as limits.
    for source in (res.requests, res.limits):
        if source and n.GPU_RESOURCE in source:
            return _int(source[n.GPU_RESOURCE]) or 0
    return 0


def pod_gpus(pod: k8s.V1Pod) -> int:
    """The pod's effective nvidia.com/gpu request, as kube-scheduler computes it: the larger
    of (app containers + sidecars) and each init container (plus sidecars started before)."""
    spec = pod.spec
    if spec is None:
        return 0
    sidecars = 0
    init_peak = 0
    for init in spec.init_containers or []:
        if init.restart_policy == "Always":  # a sidecar keeps running next to the app
            sidecars += _container_gpus(init)
        else:
            init_peak = max(init_peak, sidecars + _container_gpus(init))
    app = sum(_container_gpus(c) for c in spec.containers or [])
    return max(app + sidecars, init_peak)


def tolerates(tolerations: Iterable[k8s.V1Toleration], taint: k8s.V1Taint) -> bool:
    for t in tolerations:
        if t.effect and t.effect != taint.effect:
            continue
        if not t.key:
            if t.operator == "Exists":
                return True
            continue
        if t.key != taint.key:
            continue
        if t.operator == "Exists" or (t.value or "") == (taint.value or ""):
            return True
    return False


def _schedulable(node: k8s.V1Node, tolerations: list[k8s.V1Toleration]) -> bool:
    if node.spec is not None and node.spec.unschedulable:
        return False
    conditions = (node.status.conditions if node.status else None) or []
    ready = next((c.status for c in conditions if c.type == "Ready"), "True")
    if ready != "True":
        return False
    for taint in (node.spec.taints if node.spec else None) or []:
        if taint.effect in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return False
    return True


def _pod_node(pod: k8s.V1Pod) -> str | None:
    """The node a pod holds GPUs on; an A3S pod (of any installation) not yet bound
    already owns its target node, so it counts there from the moment it exists."""
    if pod.spec is not None and pod.spec.node_name:
        return str(pod.spec.node_name)
    if labels_of(pod).get(n.MANAGED_BY) == n.MANAGER:
        return annotations_of(pod).get(n.NODE)
    return None


def build_inventory(
    nodes: list[k8s.V1Node],
    pods: list[k8s.V1Pod],
    catalog: GpuCatalog,
    tolerations: list[k8s.V1Toleration],
    stats: dict[GpuKey, GpuStats] | None = None,
    instance: str = "default",
) -> list[Node]:
    """GPU nodes from GFD labels and allocatable nvidia.com/gpu. A3S pods hold the indices
    their annotation names; every other pod's GPUs (other installations' included) are
    `external_gpus` (counted only)."""
    stats = stats or {}
    owned: dict[str, dict[int, str]] = defaultdict(dict)
    external: dict[str, int] = defaultdict(int)
    for pod in pods:
        if pod.status is not None and pod.status.phase in TERMINATED:
            continue
        node_name = _pod_node(pod)
        gpus = pod_gpus(pod)
        if node_name is None or gpus == 0:
            continue
        labels = labels_of(pod)
        indices = n.parse_indices(annotations_of(pod).get(n.GPU_INDICES))
        replica = labels.get(n.REPLICA)
        if n.is_ours(labels, instance) and replica and len(indices) == gpus:
            for i in indices:
                owned[node_name][i] = replica
        else:
            external[node_name] += gpus
    out: list[Node] = []
    for node in nodes:
        name = name_of(node)
        labels = labels_of(node)
        allocatable = (node.status.allocatable if node.status else None) or {}
        count = _int(allocatable.get(n.GPU_RESOURCE))
        if count is None:
            count = _int(labels.get(COUNT)) or 0
        if count == 0:
            continue  # not a GPU node (or its device plugin is not up yet)
        product_label = labels.get(PRODUCT)
        memory = _int(labels.get(MEMORY))
        gpu_type = catalog.from_label(product_label, memory) if product_label else None
        held = owned.get(name, {})
        devices = []
        for i in range(count):
            s = stats.get((name, i), GpuStats())
            devices.append(
                GpuDevice(
                    index=i,
                    allocated_to=held.get(i),
                    utilization=s.utilization,
                    memory_used_bytes=s.memory_used_bytes,
                )
            )
        # A3S pods whose annotated slots fall outside the node count as external, so
        # capacity is never over-stated.
        stray = sum(1 for i in held if i >= count)
        out.append(
            Node(
                name=name,
                gpu_product=gpu_type.name if gpu_type else None,
                gpu_product_label=product_label,
                gpu_memory_mib=memory or (gpu_type.memory_mib if gpu_type else 0),
                gpu_count=count,
                gpus=devices,
                external_gpus=min(count, external.get(name, 0) + stray),
                cpu_cores=_int(allocatable.get("cpu")),
                memory_bytes=_int(allocatable.get("memory")),
                labels=labels,
                schedulable=_schedulable(node, tolerations),
            )
        )
    return sorted(out, key=lambda node: node.name)
