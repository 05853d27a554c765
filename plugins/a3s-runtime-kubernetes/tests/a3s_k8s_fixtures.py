"""Fixtures for the kubernetes runtime tests (loaded with `pytest_plugins`): an API server
with two GPU nodes and a CPU node, and a started runtime connected to it.

`kube` is parametrised: `fake` is FakeKubeApi (in-process, always there); `real` is the
control plane of tests/kube (etcd, kube-apiserver, kube-scheduler, kwok; marked `kube`,
skipped, saying why, where it is not built). Both offer the same seeding and inspection
helpers; a test that needs what only the fake can do (inject a 403, serve logs, count
requests) calls `a3s_k8s_test_helpers.fake_only(kube, why)`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from a3s_k8s_test_helpers import A100, L40S
from a3s_runtime_kubernetes import KubernetesRuntime
from a3s_runtime_kubernetes.testing import FakeKubeApi

# tests/kube (the real control plane) lives at the repository's root.
_KUBE_TESTS = Path(__file__).resolve().parents[3] / "tests" / "kube"
if str(_KUBE_TESTS) not in sys.path:
    sys.path.insert(0, str(_KUBE_TESTS))

pytest_plugins = ["a3s_kube_cluster"]  # `kube_cluster`: one control plane per run


def seed(api: Any) -> None:
    api.add_node("gpu-a100-0", A100, gpus=8)
    api.add_node("gpu-l40s-0", L40S, gpus=4)
    api.add_node("cpu-0")  # no GPUs: not offered
    api.add_namespace("research")


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.kube)])
def kube(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        with FakeKubeApi() as api:
            seed(api)
            yield api
        return
    cluster = request.getfixturevalue("kube_cluster")
    cluster.reset()
    seed(cluster)
    yield cluster


@pytest.fixture
async def runtime(kube: Any) -> AsyncIterator[KubernetesRuntime]:
    # Listing, not watching: these tests change a pod and observe at once, which only a
    # list sees without delay (test_runtime_k8s_watch.py and tests/kube cover the watch).
    rt = KubernetesRuntime({**kube.options, "watch_pods": False})
    await rt.start()
    try:
        yield rt
    finally:
        await rt.close()
