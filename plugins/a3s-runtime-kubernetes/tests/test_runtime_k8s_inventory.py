"""Inventory from node labels and allocatable, minus what other pods hold; GPU utilisation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from a3s_k8s_test_helpers import A100, fake_only, foreign_pod, make_request
from a3s_runtime_kubernetes import KubernetesRuntime
from a3s_runtime_kubernetes.dcgm import parse_dcgm
from a3s_runtime_kubernetes.testing import FakeKubeApi

from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.types import Placement

# dcgm-exporter's own text format (labels as it writes them), shortened to two GPUs
GPU0 = 'gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB"'
GPU1 = 'gpu="1",UUID="GPU-b",device="nvidia1",modelName="NVIDIA A100-SXM4-80GB"'
HOST = 'Hostname="gpu-a100-0"'
DCGM_TEXT = f"""\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{{{GPU0},{HOST}}} 87
DCGM_FI_DEV_GPU_UTIL{{{GPU1},{HOST}}} 3
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{{{GPU0},{HOST}}} 71234
# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{{{GPU0},{HOST}}} 1410
"""

pytest_plugins = ["a3s_k8s_fixtures"]  # the `kube` and `runtime` fixtures


@pytest.fixture
def dcgm_url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = DCGM_TEXT.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


async def test_gpu_nodes_from_labels_and_allocatable(runtime: KubernetesRuntime) -> None:
    nodes = {n.name: n for n in await runtime.list_nodes()}
    assert set(nodes) == {"gpu-a100-0", "gpu-l40s-0"}  # cpu-0 has no GPU
    a100 = nodes["gpu-a100-0"]
    assert a100.gpu_product == "A100-80GB"
    assert a100.gpu_product_label == "NVIDIA-A100-SXM4-80GB"
    assert a100.gpu_memory_mib == 81920
    assert a100.gpu_count == 8 and [g.index for g in a100.gpus] == list(range(8))
    assert a100.external_gpus == 0 and a100.schedulable
    assert a100.cpu_cores == 63 and a100.labels["nvidia.com/gpu.count"] == "8"
    assert nodes["gpu-l40s-0"].gpu_product == "L40S-48GB"
    assert nodes["gpu-l40s-0"].gpu_count == 4


async def test_foreign_pods_take_gpus_and_a3s_pods_hold_their_indices(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    kube.put("pods", foreign_pod("trainer-0", "gpu-a100-0", 3))
    kube.put("pods", foreign_pod("trainer-done", "gpu-a100-0", 4, phase="Succeeded"))
    # no node matches: stays unbound (a real kube-scheduler would bind it otherwise)
    kube.put("pods", foreign_pod("trainer-pending", None, 2, phase="Pending",
                                 nodeSelector={"pool": "nowhere"}))
    kube.put("pods", foreign_pod(
        "with-init", "gpu-l40s-0", 1,
        initContainers=[{"name": "warm", "image": "busybox",
                         "resources": {"limits": {"nvidia.com/gpu": "2"}}}],
    ))
    await runtime.create_replica(make_request())  # indices 2,3 on gpu-a100-0, not yet bound

    nodes = {n.name: n for n in await runtime.list_nodes()}
    a100 = nodes["gpu-a100-0"]
    assert a100.external_gpus == 3  # the finished and the unbound foreign pods hold nothing
    assert {g.index: g.allocated_to for g in a100.gpus if g.allocated_to} == {
        2: "qwen-72b-0a1b2c3d4e5f", 3: "qwen-72b-0a1b2c3d4e5f"
    }
    assert a100.free_indices() == [0, 1, 4]  # 8 − 2 ours − 3 external
    assert nodes["gpu-l40s-0"].external_gpus == 2  # an init container's peak counts


async def test_a3s_pod_without_index_annotation_is_counted_not_lost(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    req = make_request(placement=Placement(node="gpu-a100-0", gpu="A100-80GB",
                                           tensor_parallel_size=2))
    await runtime.create_replica(req)  # no indices given → annotation empty
    a100 = next(n for n in await runtime.list_nodes() if n.name == "gpu-a100-0")
    assert a100.external_gpus == 2
    assert all(g.allocated_to is None for g in a100.gpus)


async def test_cordoned_not_ready_and_tainted_nodes_are_unschedulable() -> None:
    with FakeKubeApi() as api:
        api.add_node("cordoned", A100, gpus=8, unschedulable=True)
        api.add_node("not-ready", A100, gpus=8, ready=False)
        api.add_node("gpu-taint", A100, gpus=8,
                     taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
        api.add_node("other-taint", A100, gpus=8,
                     taints=[{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}])
        api.add_node("tolerated", A100, gpus=8,
                     taints=[{"key": "dedicated", "value": "llm", "effect": "NoSchedule"}])
        api.add_node("soft-taint", A100, gpus=8,
                     taints=[{"key": "x", "value": "y", "effect": "PreferNoSchedule"}])
        rt = KubernetesRuntime({"host": api.url, "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}]})
        await rt.start()
        nodes = {n.name: n.schedulable for n in await rt.list_nodes()}
        await rt.close()
    assert nodes == {"cordoned": False, "not-ready": False, "gpu-taint": True,
                     "other-taint": False, "tolerated": True, "soft-taint": True}


async def test_unknown_product_and_label_only_counts() -> None:
    with FakeKubeApi() as api:
        api.add_node("new-gpu", {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB-NEW",
                                 "nvidia.com/gpu.memory": "81920", "nvidia.com/gpu.count": "4"})
        api.add_node("mystery", {"nvidia.com/gpu.product": "NVIDIA-X9000",
                                 "nvidia.com/gpu.memory": "99999"}, gpus=2)
        rt = KubernetesRuntime({"host": api.url, "node_selector": "nvidia.com/gpu.product"})
        await rt.start()
        nodes = {n.name: n for n in await rt.list_nodes()}
        await rt.close()
    # no allocatable (device plugin not up): the GFD count is used; family+memory match
    assert nodes["new-gpu"].gpu_count == 4 and nodes["new-gpu"].gpu_product == "A100-80GB"
    assert nodes["mystery"].gpu_product is None
    assert nodes["mystery"].gpu_product_label == "NVIDIA-X9000"
    assert nodes["mystery"].gpu_memory_mib == 99999


async def test_gpu_utilisation_from_dcgm_exporter(kube: FakeKubeApi, dcgm_url: str) -> None:
    rt = KubernetesRuntime({**kube.options,
                            "dcgm_exporter_urls": [dcgm_url, "http://127.0.0.1:9/metrics"]})
    await rt.start()
    try:
        a100 = next(n for n in await rt.list_nodes() if n.name == "gpu-a100-0")
    finally:
        await rt.close()
    assert a100.gpus[0].utilization == 87.0
    assert a100.gpus[0].memory_used_bytes == 71234 * 2**20
    assert a100.gpus[1].utilization == 3.0 and a100.gpus[1].memory_used_bytes is None
    assert a100.gpus[2].utilization is None  # not reported: unknown, not zero


async def test_dcgm_exporter_pods_are_discovered_and_keyed_by_their_node(
    kube: FakeKubeApi, dcgm_url: str
) -> None:
    port = int(dcgm_url.split(":")[2].split("/")[0])
    kube.add_namespace("gpu-operator")
    kube.put("pods", {
        "metadata": {"name": "nvidia-dcgm-exporter-x7k2p", "namespace": "gpu-operator",
                     "labels": {"app": "nvidia-dcgm-exporter"}},
        "spec": {"nodeName": "gpu-l40s-0",
                 "containers": [{"name": "nvidia-dcgm-exporter", "image": "dcgm-exporter"}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    })
    rt = KubernetesRuntime({**kube.options, "dcgm_exporter_selector": "app=nvidia-dcgm-exporter",
                            "dcgm_exporter_namespace": "gpu-operator", "dcgm_exporter_port": port})
    await rt.start()
    try:
        nodes = {n.name: n for n in await rt.list_nodes()}
    finally:
        await rt.close()
    # the exporter pod runs on gpu-l40s-0: that beats the Hostname label in its text
    assert nodes["gpu-l40s-0"].gpus[0].utilization == 87.0
    assert nodes["gpu-a100-0"].gpus[0].utilization is None


async def test_kubeconfig_and_context_are_honoured(kube: FakeKubeApi, tmp_path: Path) -> None:
    fake_only(kube, "takes any token over plain HTTP (the real one is reached by kubeconfig)")
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "prod",
        "clusters": [{"name": "prod", "cluster": {"server": "https://127.0.0.1:9"}},
                     {"name": "lab", "cluster": {"server": kube.url}}],
        "users": [{"name": "me", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me"}},
                     {"name": "lab", "context": {"cluster": "lab", "user": "me"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    rt = KubernetesRuntime({"kubeconfig": str(path), "context": "lab", "in_cluster": False})
    await rt.start()
    try:
        assert {n.name for n in await rt.list_nodes()} == {"gpu-a100-0", "gpu-l40s-0"}
    finally:
        await rt.close()
    assert path.read_text() == yaml.safe_dump(config)  # never rewritten


def test_dcgm_parser_keys_by_node_and_gpu() -> None:
    stats = parse_dcgm(DCGM_TEXT)
    assert set(stats) == {("gpu-a100-0", 0), ("gpu-a100-0", 1)}


async def test_without_cluster_wide_pod_read_own_pods_still_count(
    kube: FakeKubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    kube.put("pods", foreign_pod("trainer-0", "gpu-a100-0", 3))
    fake_only(kube, "injects a 403 (tests/kube runs the real RBAC)")
    kube.denied.add(("list", "pods", ""))  # namespaced RBAC only
    rt = KubernetesRuntime({**kube.options, "watch_namespaces": ["team-ai"]})
    await rt.start()
    try:
        await rt.create_replica(make_request())
        a100 = next(n for n in await rt.list_nodes() if n.name == "gpu-a100-0")
    finally:
        await rt.close()
    assert [g.index for g in a100.gpus if g.allocated_to] == [2, 3]
    assert a100.external_gpus == 0  # the trainer is invisible, and the log says so
    assert "other workloads are not seen" in caplog.text


def test_entry_point_registers_the_runtime() -> None:
    plugins = Plugins(build_plugin_manager())
    assert plugins.runtimes.get("kubernetes") is KubernetesRuntime
    assert plugins.runtimes.owner("kubernetes") == "runtime-kubernetes"
