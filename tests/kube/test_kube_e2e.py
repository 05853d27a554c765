"""The platform on a real control plane: `a3s serve --runtime kubernetes` with a kubeconfig,
pods validated by kube-apiserver, bound by kube-scheduler, run by kwok."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from a3s_kube_platform import NODES, Platform, add_gpu_nodes, eventually
from controlplane import KWOK_ANNOTATION

if TYPE_CHECKING:
    from a3s_kube_cluster import RealKube

pytest_plugins = ["a3s_kube_cluster"]
pytestmark = pytest.mark.kube

NS = "team-ai"
SEED = {"models": [{"name": "qwen-72b", "model": "Qwen/Qwen2.5-72B-Instruct"}],
        "namespace": NS}


@pytest.fixture(scope="module")
def cluster(kube_cluster: RealKube) -> RealKube:
    kube_cluster.reset()
    add_gpu_nodes(kube_cluster)
    return kube_cluster


@pytest.fixture
def platform(cluster: RealKube, tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path, cluster.options).start()
    try:
        yield p
    finally:
        p.stop()


def running(view: dict[str, Any], replicas: int = 1) -> bool:
    ready = [r for r in view["replicas"] if r["state"] == "ready"]
    return view["status"] == "running" and len(ready) == replicas == len(view["replicas"])


def live_pods(kube: RealKube, dep_id: str) -> list[dict[str, Any]]:
    return [p for p in kube.objects("pods", NS)
            if p["metadata"]["labels"].get("a3s.io/deployment") == dep_id]


def check_pods_match(kube: RealKube, view: dict[str, Any]) -> list[dict[str, Any]]:
    """Each replica is one pod, bound by kube-scheduler to the node A3S chose, holding as
    many nvidia.com/gpu as A3S gave it, Running and Ready (kwok)."""
    pods = {p["metadata"]["labels"]["a3s.io/replica"]: p for p in live_pods(kube, view["id"])}
    assert sorted(pods) == sorted(r["id"] for r in view["replicas"])
    for rep in view["replicas"]:
        pod = pods[rep["id"]]
        assert pod["spec"]["nodeName"] == rep["node"] == pod["metadata"]["annotations"][
            "a3s.io/node"]
        (c,) = pod["spec"]["containers"]
        assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == len(rep["gpuIndices"])
        assert pod["status"]["phase"] == "Running"
        ready = {x["type"]: x["status"] for x in pod["status"]["conditions"]}
        assert ready["Ready"] == "True" and ready["PodScheduled"] == "True"
        assert rep["url"] == f"http://{pod['status']['podIP']}:{c['ports'][0]['containerPort']}"
    return list(pods.values())


def post_running(platform: Platform) -> tuple[dict[str, Any], dict[str, Any]]:
    """POST the seed's request and wait for it to run: (the deployment as created, its view)."""
    r = platform.client.post("/v1/deployments", json=SEED)
    assert r.status_code == 202, r.text
    dep: dict[str, Any] = r.json()["deployments"][0]
    return dep, platform.wait(dep["id"], running, "the deployment running")


def test_seed_post_runs_scales_survives_kill_9_and_deletes(
    cluster: RealKube, platform: Platform
) -> None:
    dep, view = post_running(platform)
    (pod,) = check_pods_match(cluster, view)
    # the scheduler (binding) wrote the node; kube-apiserver defaulted and validated it
    assert pod["spec"]["schedulerName"] == "default-scheduler"
    assert pod["spec"]["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert cluster.get("services", NS, "a3s-qwen-72b") is not None

    # /v1/cluster is kwok's nodes as the API server has them
    nodes = {n["name"]: n for n in platform.client.get("/v1/cluster").json()["nodes"]}
    gpu_nodes = {name for name, (_, gpus, _) in NODES.items() if gpus}
    assert gpu_nodes <= set(nodes)
    assert {n: nodes[n]["gpu"] for n in gpu_nodes} == {
        "gpu-a100-0": "A100-80GB", "gpu-h100-0": "H100-80GB", "gpu-l40s-0": "L40S-48GB"}
    for name in gpu_nodes:
        assert nodes[name]["gpuCount"] == NODES[name][1]
        assert nodes[name]["gpuMemoryMiB"] == int(NODES[name][0]["nvidia.com/gpu.memory"])
    (rep,) = view["replicas"]
    assert nodes[rep["node"]]["allocated"] == len(rep["gpuIndices"])

    # scale up and down
    assert platform.client.post(f"/v1/deployments/{dep['id']}/scale",
                                json={"replicas": 2}).status_code in (200, 202)
    view = platform.wait(dep["id"], lambda v: running(v, 2), "two replicas running")
    check_pods_match(cluster, view)
    held = [(r["node"], i) for r in view["replicas"] for i in r["gpuIndices"]]
    assert len(held) == len(set(held))  # no GPU given twice
    assert platform.client.post(f"/v1/deployments/{dep['id']}/scale",
                                json={"replicas": 1}).status_code in (200, 202)
    view = platform.wait(dep["id"], lambda v: running(v, 1), "back to one replica")
    eventually(lambda: len(live_pods(cluster, dep["id"])) == 1, "the extra pod to go")

    # kill -9 and restart: the pod is adopted, not duplicated
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_pods(cluster, dep["id"])}
    platform.kill()
    platform.start()
    view = platform.wait(dep["id"], running, "running again after kill -9")
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_pods(cluster, dep["id"])}
    assert after == before
    check_pods_match(cluster, view)

    # DELETE: pods and Service gone
    assert platform.client.delete(f"/v1/deployments/{dep['id']}").status_code in (200, 202, 204)
    eventually(lambda: cluster.cp.request("GET", f"/api/v1/namespaces/{NS}/pods")[1]["items"]
               == [], "the pods to be gone (kwok confirms the deletion)")
    eventually(lambda: cluster.get("services", NS, "a3s-qwen-72b") is None, "the Service to go")


def test_gpus_of_a_foreign_pod_count_against_capacity(
    cluster: RealKube, platform: Platform
) -> None:
    """A trainer scheduled by kube-scheduler onto the L40S node: /v1/cluster shows it."""
    cluster.add_namespace("research")
    cluster.put("pods", {
        "metadata": {"name": "trainer", "namespace": "research"},
        "spec": {"containers": [{"name": "main", "image": "pytorch/pytorch:2.4.0",
                                 "resources": {"limits": {"nvidia.com/gpu": "3"}}}],
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                 "nodeSelector": {"kubernetes.io/hostname": "gpu-l40s-0"}},
    })
    try:
        eventually(lambda: (cluster.get("pods", "research", "trainer") or {}).get(
            "status", {}).get("phase") == "Running", "the trainer Running (kwok)")

        def seen() -> bool:
            nodes = {n["name"]: n for n in platform.client.get("/v1/cluster").json()["nodes"]}
            return bool(nodes["gpu-l40s-0"]["external"] == 3 and nodes["gpu-l40s-0"]["free"] == 1)

        eventually(seen, "3 of the L40S node's GPUs taken by the trainer")
    finally:
        cluster.call("DELETE", cluster.path("pods", "research", "trainer")
                     + "?gracePeriodSeconds=0", ok=(200, 404))


def test_a_cordoned_node_gets_no_new_replica(cluster: RealKube, platform: Platform) -> None:
    """kubectl cordon: /v1/cluster shows the node unschedulable and a scale-up goes
    elsewhere; the replica already there keeps running (cordoning evicts nothing)."""
    dep, view = post_running(platform)
    (first,) = view["replicas"]
    node = first["node"]
    merge = "application/merge-patch+json"
    cluster.call("PATCH", f"/api/v1/nodes/{node}", {"spec": {"unschedulable": True}},
                 content_type=merge)
    try:
        def cordoned() -> bool:
            nodes = {n["name"]: n for n in platform.client.get("/v1/cluster").json()["nodes"]}
            return nodes[node]["schedulable"] is False

        eventually(cordoned, f"{node} unschedulable in /v1/cluster")
        platform.client.post(f"/v1/deployments/{dep['id']}/scale", json={"replicas": 2})
        view = platform.wait(dep["id"], lambda v: running(v, 2), "two replicas running")
        nodes = {r["id"]: r["node"] for r in view["replicas"]}
        assert nodes[first["id"]] == node  # still there
        assert [n for rid, n in nodes.items() if rid != first["id"]] != [node]
        check_pods_match(cluster, view)
    finally:
        cluster.call("PATCH", f"/api/v1/nodes/{node}", {"spec": {"unschedulable": False}},
                     content_type=merge)
        platform.client.delete(f"/v1/deployments/{dep['id']}")
        eventually(lambda: not cluster.objects("pods", NS), "the pods to go")


def test_a_not_ready_node_loses_its_replica_to_another_node(
    cluster: RealKube, tmp_path: Path
) -> None:
    """The node's Ready condition goes False: the replica leaves traffic at once and, after
    node_lost_grace_s, is deleted and placed on another node; the event names the node and
    its condition; no GPU is booked twice, and the NotReady node's are not offered."""
    if not cluster.local:
        pytest.skip("needs the local control plane of tests/kube: takes a node from kwok")
    options = {**cluster.options, "node_lost_grace_s": 6, "node_check_interval_s": 0.2}
    platform = Platform(tmp_path, options).start()
    dep, view = post_running(platform)
    (first,) = view["replicas"]
    node = first["node"]
    (old_pod,) = live_pods(cluster, dep["id"])
    merge = "application/merge-patch+json"
    # kwok would report the node Ready again at once: take it from kwok first, as if its
    # kubelet had died.
    cluster.call("PATCH", f"/api/v1/nodes/{node}",
                 {"metadata": {"annotations": {KWOK_ANNOTATION: None}}}, content_type=merge)
    try:
        cluster.set_node_ready(node, "False", "KubeletNotReady",
                               "container runtime network not ready: NetworkReady=false")

        def out_of_traffic(v: dict[str, Any]) -> bool:
            reps = [x for x in v["replicas"] if x["id"] == first["id"]]
            return bool(reps) and reps[0]["state"] != "ready" and "NotReady" in str(
                reps[0].get("message"))

        platform.wait(dep["id"], out_of_traffic, "the replica out of traffic", timeout=20)

        def moved(v: dict[str, Any]) -> bool:
            return running(v) and v["replicas"][0]["id"] != first["id"]

        view = platform.wait(dep["id"], moved, "the replica replaced")
        (second,) = view["replicas"]
        assert second["node"] != node
        check_pods_match(cluster, view)
        # The old pod was deleted by force (no kubelet would confirm a graceful deletion),
        # so it cannot come back beside its successor when the node returns.
        code, _ = cluster.cp.request(
            "GET", cluster.path("pods", NS, old_pod["metadata"]["name"]))
        assert code == 404

        (lost,) = [e for e in platform.events(dep["id"]) if e["type"] == "replica.lost"]
        assert lost["data"]["node"] == node and lost["data"]["replica"] == first["id"]
        assert (f"node {node} is NotReady (Ready=False, KubeletNotReady: container runtime "
                "network not ready: NetworkReady=false)") in lost["message"]

        nodes = {n["name"]: n for n in platform.client.get("/v1/cluster").json()["nodes"]}
        assert nodes[node]["schedulable"] is False
        assert all(g["replica"] is None for g in nodes[node]["gpus"])
        booked = [(n["name"], g["index"]) for n in nodes.values() for g in n["gpus"]
                  if g["replica"]]
        assert sorted(booked) == sorted((second["node"], i) for i in second["gpuIndices"])
        for name, n in nodes.items():  # kube-scheduler's accounting agrees
            held = sum(int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
                       for p in cluster.objects("pods") if p["spec"].get("nodeName") == name
                       for c in p["spec"]["containers"])
            assert held <= n["gpuCount"]
    finally:
        cluster.set_node_ready(node, "True", "KubeletReady", "kubelet is posting ready status")
        cluster.call("PATCH", f"/api/v1/nodes/{node}",
                     {"metadata": {"annotations": {KWOK_ANNOTATION: "fake"}}},
                     content_type=merge)
        platform.client.delete(f"/v1/deployments/{dep['id']}")
        eventually(lambda: not cluster.objects("pods", NS), "the pods to go")
        platform.stop()


def test_a_chat_completion_reaches_the_kwok_pods_address(
    cluster: RealKube, platform: Platform, tmp_path: Path
) -> None:
    """The data path: the gateway proxies to the pod IP kwok gave the replica (in
    127.1.0.0/16), where an engine simulator stands in for the container."""
    dep, view = post_running(platform)
    (rep,) = view["replicas"]
    host, port = rep["url"].removeprefix("http://").rsplit(":", 1)
    assert host.startswith("127.1."), rep["url"]  # kwok's pod CIDR: stays on this machine
    log = open(tmp_path / "engine.log", "wb")  # noqa: SIM115 - the process owns it
    engine = subprocess.Popen(
        [sys.executable, "-m", "a3s_engine_sim", "--host", host, "--port", port,
         "--served-model-name", "qwen-72b", "--dialect", "vllm", "--time-scale", "0.01"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: _answers(f"http://{host}:{port}/health"), "the simulator up")
        headers = {"Authorization": f"Bearer {dep['apiKey']}"}
        body = {"model": "qwen-72b", "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 5}

        def answered() -> dict[str, Any] | None:
            out = httpx.post(f"{dep['endpoint']}/chat/completions", json=body,
                             headers=headers, timeout=30)
            return out.json() if out.status_code == 200 else None

        answer = eventually(answered, "a chat completion through the gateway", timeout=60)
        assert answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] == 5
    finally:
        engine.terminate()
        engine.wait(10)
        platform.client.delete(f"/v1/deployments/{dep['id']}")
        eventually(lambda: not cluster.objects("pods", NS), "the pods to go")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
