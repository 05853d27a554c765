"""Fixtures for the kubernetes runtime tests (loaded with `pytest_plugins`): a fake API
server with two GPU nodes and a CPU node, and a started runtime connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from a3s_k8s_test_helpers import A100, L40S
from a3s_runtime_kubernetes import KubernetesRuntime
from a3s_runtime_kubernetes.testing import FakeKubeApi


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as api:
        api.add_node("gpu-a100-0", A100, gpus=8)
        api.add_node("gpu-l40s-0", L40S, gpus=4)
        api.add_node("cpu-0")  # no GPUs: not offered
        api.add_namespace("research")
        yield api


@pytest.fixture
async def runtime(kube: FakeKubeApi) -> AsyncIterator[KubernetesRuntime]:
    rt = KubernetesRuntime({"host": kube.url})
    await rt.start()
    try:
        yield rt
    finally:
        await rt.close()
