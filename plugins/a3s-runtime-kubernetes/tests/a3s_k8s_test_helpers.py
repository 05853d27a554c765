"""Shared by the kubernetes runtime tests: request builders, sample labels, schema checks."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client as k8s

from a3s_core.types import Placement, ReplicaRequest

K8S_VERSION = "1.30"
A100 = {
    "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    "nvidia.com/gpu.memory": "81920",
    "nvidia.com/gpu.count": "8",
}
L40S = {
    "nvidia.com/gpu.product": "NVIDIA-L40S",
    "nvidia.com/gpu.memory": "46068",
    "nvidia.com/gpu.count": "4",
}


def as_json(obj: Any) -> dict[str, Any]:
    """A client model → the JSON the API server receives (camelCase, no nulls)."""
    return k8s.ApiClient().sanitize_for_serialization(obj)  # type: ignore[no-any-return]


def validate(obj: Any) -> dict[str, Any]:
    body = as_json(obj) if not isinstance(obj, dict) else obj
    kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    return body


def make_request(**overrides: Any) -> ReplicaRequest:
    placement = overrides.pop(
        "placement",
        Placement(node="gpu-a100-0", gpu="A100-80GB", gpu_indices=[2, 3], tensor_parallel_size=2),
    )
    values: dict[str, Any] = dict(
        replica_id="qwen-72b-0a1b2c3d4e5f",
        deployment_id="dep-5e6f7a8b9c0d",
        deployment_name="qwen-72b",
        namespace="team-ai",
        engine="vllm",
        image="vllm/vllm-openai:v0.6.3",
        command=["vllm", "serve", "Qwen/Qwen2.5-72B-Instruct", "--tensor-parallel-size", "2",
                 "--port", "8000", "--served-model-name", "qwen-72b"],
        env={"VLLM_NO_USAGE_STATS": "1"},
        port=8000,
        health_path="/health",
        ready_path="/v1/models",
        placement=placement,
        model="Qwen/Qwen2.5-72B-Instruct",
        served_model_name="qwen-72b",
        max_model_len=32768,
        tensor_parallel_size=placement.tensor_parallel_size,
        gpu=placement.gpu,
        labels={"a3s.io/namespace": "team-ai"},
    )
    values.update(overrides)
    return ReplicaRequest(**values)


def foreign_pod(name: str, node: str | None, gpus: int, phase: str = "Running",
                namespace: str = "research", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "trainer"}},
        "spec": {
            **({"nodeName": node} if node else {}),
            "containers": [{"name": "main", "image": "pytorch/pytorch:2.4.0",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
            **spec,
        },
        "status": {"phase": phase},
    }


def fake_only(kube: Any, why: str) -> None:
    """Skip on the real API server: the test needs a fault or view only the fake has."""
    if kube.real:
        pytest.skip(f"fake API server only: {why}")
