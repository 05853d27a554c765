"""The runtime against what only a real control plane does: kube-scheduler's refusals,
RBAC from contrib/kubernetes, watches expired by etcd compaction, manifests the API server
accepts."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from a3s_kube_cluster import needs_local
from a3s_kube_platform import A100, Platform, add_gpu_nodes, eventually
from a3s_runtime_kubernetes import KubernetesRuntime
from controlplane import kubeconfig_text
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import utils as k8s_utils

from a3s_core.errors import RuntimeUnavailable
from a3s_core.types import Placement, ReplicaRequest

if TYPE_CHECKING:
    from a3s_kube_cluster import RealKube

pytest_plugins = ["a3s_kube_cluster"]
pytestmark = pytest.mark.kube

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "kubernetes"
NS = "team-ai"
TRAINING_TAINT = [{"key": "dedicated", "value": "training", "effect": "NoSchedule"}]


@pytest.fixture(scope="module")
def cluster(kube_cluster: RealKube) -> RealKube:
    kube_cluster.reset()
    add_gpu_nodes(kube_cluster)
    # a GPU node kept for training: A3S pods do not tolerate its taint
    kube_cluster.add_node("gpu-a100-train", A100, gpus=8, taints=TRAINING_TAINT, kwok=True)
    kube_cluster.add_namespace(NS)
    return kube_cluster


@pytest.fixture
async def runtime(cluster: RealKube) -> AsyncIterator[KubernetesRuntime]:
    rt = KubernetesRuntime(cluster.options)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.close()


def request(replica: str, node: str, gpu: str, gpus: int, name: str = "qwen-7b") -> ReplicaRequest:
    placement = Placement(node=node, gpu=gpu, gpu_indices=list(range(gpus)),
                          tensor_parallel_size=gpus)
    return ReplicaRequest(
        replica_id=replica, deployment_id=f"dep-{name}", deployment_name=name, namespace=NS,
        engine="vllm", image="vllm/vllm-openai:v0.6.3", command=["vllm", "serve", "m"],
        port=8000, health_path="/health", ready_path="/v1/models", placement=placement,
        model="m", served_model_name=name, max_model_len=4096, tensor_parallel_size=gpus,
        gpu=gpu, labels={"a3s.io/namespace": NS}, cpu_request=2.0,
        memory_request_bytes=8 * 2**30,
    )


async def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def test_kube_scheduler_refusals_are_reported_with_its_reason(
    cluster: RealKube, runtime: KubernetesRuntime
) -> None:
    await runtime.create_replica(request("tainted-0a1b2c3d4e5f", "gpu-a100-train",
                                         "A100-80GB", 2, name="tainted"))
    await runtime.create_replica(request("toomany-0a1b2c3d4e5f", "gpu-l40s-0",
                                         "L40S-48GB", 8, name="toomany"))

    async def reasons() -> dict[str, str] | None:
        seen = {o.replica_id: o.message for o in await runtime.observe()}
        done = all("FailedScheduling" in m for m in seen.values()) and len(seen) == 2
        return seen if done else None

    try:
        seen = await until(reasons, "kube-scheduler's FailedScheduling events")
        assert "untolerated taint" in seen["tainted-0a1b2c3d4e5f"]
        assert "Insufficient nvidia.com/gpu" in seen["toomany-0a1b2c3d4e5f"]
        states = {o.replica_id: o.state for o in await runtime.observe()}
        assert set(states.values()) == {"starting"}  # pending, not failed: it may yet fit
    finally:
        await runtime.delete_deployment("dep-tainted")
        await runtime.delete_deployment("dep-toomany")


async def test_the_pod_cache_relists_after_a_real_410_gone(cluster: RealKube) -> None:
    """The watch resumes from a revision etcd has compacted away: kube-apiserver answers
    410 Gone, the cache lists again, and changes keep arriving by the watch."""
    needs_local(cluster, "compacts etcd and starts a second kube-apiserver")
    uncached = cluster.cp.uncached_apiserver()
    rt = KubernetesRuntime({"kubeconfig": str(uncached), "watch_pods": True,
                            "watch_timeout_s": 2})
    await rt.start()
    try:
        cache = rt.pod_cache
        assert cache is not None
        await until(lambda: _const(cache.synced), "the first list")

        async def state() -> str:
            return ",".join(o.state for o in await rt.observe())

        await rt.create_replica(request("watched-0a1b2c3d4e5f", "gpu-a100-0", "A100-80GB", 1,
                                        name="watched"))
        await until(lambda: _is(state, "ready"), "kwok's Ready by the watch")
        lists = cache.lists
        # history moves on elsewhere, then etcd compacts it: the watch's next revision is gone
        for i in range(3):
            cluster.put("secrets", {"metadata": {"name": f"bump-{i}", "namespace": NS},
                                    "stringData": {"x": "1"}})
        cluster.cp.compact()
        await until(lambda: _const(cache.expired >= 1), "410 Gone on the resumed watch")
        await until(lambda: _const(cache.lists > lists and cache.synced), "the list again")
        await rt.delete_deployment("dep-watched")
        await until(lambda: _is(state, ""), "the deletion by the watch")
    finally:
        await rt.close()


async def _const(value: Any) -> Any:
    return value


async def _is(fn: Callable[[], Any], want: str) -> bool:
    return bool(await fn() == want)


# -- RBAC ----------------------------------------------------------------------------------


def admin_client(cluster: RealKube) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(cluster.cp.kubeconfig))


def apply(cluster: RealKube, docs: list[dict[str, Any]]) -> None:
    """Create what is missing (`kubectl create`, tolerating what exists)."""
    api = admin_client(cluster)
    try:
        for doc in docs:
            try:
                k8s_utils.create_from_dict(api, doc)
            except k8s_utils.FailToCreateError as exc:
                if any(e.status != 409 for e in exc.api_exceptions):
                    raise
    finally:
        api.close()


def manifests(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CONTRIB / name).read_text()) if d]


def service_account_kubeconfig(cluster: RealKube, path: Path) -> Path:
    """A token for ServiceAccount a3s-system/a3s from the API server's TokenRequest."""
    out = cluster.call("POST", "/api/v1/namespaces/a3s-system/serviceaccounts/a3s/token",
                       {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 3600}})
    token = out["status"]["token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == "system:serviceaccount:a3s-system:a3s"
    path.write_text(kubeconfig_text(cluster.cp.server, cluster.cp.dir / "pki" / "ca.crt",
                                    {"token": token}))
    return path


@pytest.fixture
def rbac(cluster: RealKube, tmp_path: Path) -> Iterator[Path]:
    """contrib/kubernetes/rbac.yaml applied; a kubeconfig holding its ServiceAccount's token."""
    needs_local(cluster, "writes a kubeconfig with the local CA")
    apply(cluster, manifests("rbac.yaml"))
    yield service_account_kubeconfig(cluster, tmp_path / "sa.kubeconfig")


def test_the_platform_runs_with_the_rbac_of_contrib_not_as_admin(
    cluster: RealKube, rbac: Path, tmp_path: Path
) -> None:
    options = {"kubeconfig": str(rbac), "create_namespaces": False}
    platform = Platform(tmp_path, options).start()
    try:
        body = {"models": [{"name": "qwen-7b", "model": "Qwen/Qwen2.5-7B-Instruct"}],
                "namespace": NS}
        r = platform.client.post("/v1/deployments", json=body)
        assert r.status_code == 202, r.text
        dep = r.json()["deployments"][0]
        platform.wait(dep["id"], lambda v: v["status"] == "running", "running as the SA")
        nodes = platform.client.get("/v1/cluster").json()["nodes"]
        assert {"gpu-a100-0", "gpu-h100-0", "gpu-l40s-0"} <= {n["name"] for n in nodes}
        logs = platform.client.get(f"/v1/deployments/{dep['id']}/logs")
        assert logs.status_code in (200, 404, 503), logs.text  # kwok runs no kubelet logs
        assert platform.client.delete(f"/v1/deployments/{dep['id']}").status_code in (
            200, 202, 204)
        eventually(lambda: not cluster.objects("pods", NS), "the pods to go")
        eventually(lambda: cluster.get("services", NS, "a3s-qwen-7b") is None,
                   "the Service to go")
        assert "forbidden" not in platform.log_tail(400).lower(), platform.log_tail(40)
    finally:
        platform.stop()


async def test_a_verb_the_role_lacks_is_a_clear_error_naming_it(
    cluster: RealKube, rbac: Path
) -> None:
    role = cluster.call("GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/"
                               "a3s-workloads")
    for rule in role["rules"]:
        if rule["resources"] == ["services"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    cluster.call("PUT", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/"
                        "a3s-workloads", role)
    rt = KubernetesRuntime({"kubeconfig": str(rbac), "create_namespaces": False,
                            "request_timeout_s": 10})
    await rt.start()
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeUnavailable) as err:
            await rt.create_replica(request("denied-0a1b2c3d4e5f", "gpu-a100-0",
                                            "A100-80GB", 1, name="denied"))
        assert time.monotonic() - started < 10  # refused at once, never a hang
    finally:
        await rt.close()
        cluster.call("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/"
                               "a3s-workloads", ok=(200,))
        apply(cluster, manifests("rbac.yaml"))  # the Role as shipped again
    message = err.value.message
    assert 'cannot create resource "services"' in message, message
    assert "system:serviceaccount:a3s-system:a3s" in message
    assert "contrib/kubernetes/rbac.yaml" in message


def resource_path(cluster: RealKube, doc: dict[str, Any]) -> str:
    """The object's URL, from the API server's discovery (kubectl's way)."""
    group_version = doc["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    found = [r for r in cluster.call("GET", base)["resources"]
             if r["kind"] == doc["kind"] and "/" not in r["name"]]
    assert found, f"the API server serves no {doc['kind']} in {group_version}"
    ns = doc["metadata"].get("namespace")
    scope = f"/namespaces/{ns}" if found[0]["namespaced"] else ""
    return f"{base}{scope}/{found[0]['name']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("name", sorted(p.name for p in CONTRIB.glob("*.yaml")))
def test_every_contrib_manifest_passes_server_side_dry_run(cluster: RealKube, name: str) -> None:
    """`kubectl apply --server-side --dry-run=server`: validated, defaulted and admitted by
    the API server, nothing stored."""
    docs = manifests(name)
    for ns in {d["metadata"].get("namespace") for d in docs} - {None}:
        cluster.add_namespace(ns)  # a dry run into a missing namespace is refused
    for doc in docs:
        path = resource_path(cluster, doc)
        out = cluster.call("PATCH", f"{path}?dryRun=All&fieldManager=a3s-tests&force=true",
                           json.dumps(doc).encode(), content_type="application/apply-patch+yaml")
        assert out["metadata"]["name"] == doc["metadata"]["name"]
