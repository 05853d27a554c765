"""A3S runtime plugin `kubernetes`: replicas as GPU-pinned pods in a Kubernetes cluster."""

from __future__ import annotations

from a3s_core import hookimpl
from a3s_core.registry import RuntimeRegistry
from a3s_runtime_kubernetes.options import KubernetesOptions
from a3s_runtime_kubernetes.runtime import KubernetesRuntime

__all__ = ["KubernetesOptions", "KubernetesRuntime"]


@hookimpl
def a3s_register_runtimes(registry: RuntimeRegistry) -> None:
    registry.register(KubernetesRuntime)
