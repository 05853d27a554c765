"""The runtime with the real client against the fake API server: create, observe, delete, logs."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from a3s_k8s_test_helpers import fake_only, make_request
from a3s_runtime_kubernetes import KubernetesRuntime
from a3s_runtime_kubernetes import runtime as runtime_module
from a3s_runtime_kubernetes.testing import FakeKubeApi

from a3s_core.errors import Conflict, NotFound, RuntimeUnavailable
from a3s_core.types import LogLine

POD = "qwen-72b-0a1b2c3d4e5f"
NS = "team-ai"
T0 = "2026-11-25T08:00:00Z"

pytest_plugins = ["a3s_k8s_fixtures"]  # the `kube` and `runtime` fixtures


async def test_create_makes_namespace_service_and_pinned_pod(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    obs = await runtime.create_replica(make_request())
    assert obs.state == "starting"
    assert obs.replica_id == POD and obs.deployment_id == "dep-5e6f7a8b9c0d"
    assert obs.node == "gpu-a100-0" and obs.gpu_indices == [2, 3]
    assert obs.url is None  # no pod IP yet

    ns = kube.get("namespaces", "", NS)
    assert ns is not None and ns["metadata"]["labels"]["a3s.io/managed-by"] == "a3s"
    pod = kube.get("pods", NS, POD)
    assert pod is not None  # the fake validated it against the 1.30 schema on create
    c = pod["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["spec"]["affinity"]["nodeAffinity"]
    svc = kube.get("services", NS, "a3s-qwen-72b")
    assert svc is not None and svc["spec"]["selector"]["a3s.io/deployment"] == "dep-5e6f7a8b9c0d"


async def test_create_is_idempotent_and_shares_one_service(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    await runtime.create_replica(make_request())
    again = await runtime.create_replica(make_request())  # a retried create adopts the pod
    assert again.replica_id == POD
    await runtime.create_replica(make_request(replica_id="qwen-72b-111111111111"))
    assert len(kube.objects("pods", NS)) == 2
    assert len(kube.objects("services", NS)) == 1


async def test_a_foreign_service_of_the_same_name_is_a_conflict(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    kube.add_namespace(NS)
    kube.put("services", {"metadata": {"name": "a3s-qwen-72b", "namespace": NS},
                          "spec": {"ports": [{"port": 80}]}})
    with pytest.raises(Conflict, match="not managed by this A3S"):
        await runtime.create_replica(make_request())
    assert kube.objects("pods", NS) == []


async def test_service_of_an_earlier_deployment_is_repointed(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    await runtime.create_replica(make_request(deployment_id="dep-old"))
    await runtime.delete_replica(POD)  # Service goes with the last pod…
    kube.put("services", {  # …but say a crash left it behind
        "metadata": {"name": "a3s-qwen-72b", "namespace": NS, "labels": {
            "a3s.io/managed-by": "a3s", "a3s.io/instance": "default",
            "a3s.io/deployment": "dep-old"}},
        "spec": {"selector": {"a3s.io/deployment": "dep-old"}, "ports": [{"port": 8000}],
                 "clusterIP": "10.96.0.42"},
    })
    await runtime.create_replica(make_request())
    svc = kube.get("services", NS, "a3s-qwen-72b")
    assert svc is not None
    assert svc["spec"]["selector"]["a3s.io/deployment"] == "dep-5e6f7a8b9c0d"
    assert svc["metadata"]["labels"]["a3s.io/deployment"] == "dep-5e6f7a8b9c0d"
    assert svc["spec"]["clusterIP"] == "10.96.0.42"


async def test_a_pod_still_terminating_is_waited_for_not_adopted(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    """A real API server keeps a deleted pod (terminating) until its kubelet confirms; a
    replica created again under that name waits for it to go instead of adopting it."""
    if not kube.real:
        kube.graceful_pod_deletion = True
    await runtime.create_replica(make_request(deployment_id="dep-old"))
    await runtime.delete_replica(POD)
    if not kube.real:  # the real cluster's stand-in kubelet confirms by itself
        asyncio.get_running_loop().call_later(0.5, kube.confirm_deletion, NS, POD)
    obs = await runtime.create_replica(make_request())
    assert obs.deployment_id == "dep-5e6f7a8b9c0d" and obs.state == "starting"
    pod = kube.get("pods", NS, POD)
    assert pod is not None
    assert pod["metadata"]["labels"]["a3s.io/deployment"] == "dep-5e6f7a8b9c0d"


async def test_a_pod_that_stays_terminating_fails_the_create_saying_so(
    kube: FakeKubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_only(kube, "a kubelet that never confirms a deletion")
    kube.graceful_pod_deletion = True
    monkeypatch.setattr(runtime_module, "TERMINATING_WAIT_S", 0.5)
    rt = KubernetesRuntime({**kube.options, "watch_pods": False})
    await rt.start()
    try:
        await rt.create_replica(make_request(deployment_id="dep-old"))
        await rt.delete_replica(POD)
        with pytest.raises(RuntimeUnavailable, match="still terminating"):
            await rt.create_replica(make_request())
    finally:
        await rt.close()
    pod = kube.store[("pods", NS, POD)]
    assert pod["metadata"]["labels"]["a3s.io/deployment"] == "dep-old"  # left as it was


async def test_a_service_left_without_pods_is_collected(kube: FakeKubeApi) -> None:
    """A deletion interrupted after the pod went but before its Service: the controller's
    retry finds no pod, so observe() collects the Service; one with a live pod stays."""
    rt = KubernetesRuntime({**kube.options, "watch_pods": False, "service_gc_interval_s": 0})
    await rt.start()
    try:
        await rt.create_replica(make_request())
        await rt.observe()
        assert kube.get("services", NS, "a3s-qwen-72b") is not None  # its pod is live
        if kube.real:
            kube.call("DELETE", kube.path("pods", NS, POD) + "?gracePeriodSeconds=0")
        else:
            kube.confirm_deletion(NS, POD)
        await rt.delete_replica(POD)  # the retry: no pod left to find
        assert kube.get("services", NS, "a3s-qwen-72b") is not None
        assert await rt.observe() == []
        assert kube.get("services", NS, "a3s-qwen-72b") is None
    finally:
        await rt.close()


async def test_missing_namespace_without_permission_to_create(kube: FakeKubeApi) -> None:
    rt = KubernetesRuntime({**kube.options, "create_namespaces": False,
                            "namespace_map": {"team-ai": "llm-prod"}})
    await rt.start()
    try:
        with pytest.raises(RuntimeUnavailable, match="'llm-prod' does not exist"):
            await rt.create_replica(make_request())
        kube.add_namespace("llm-prod")
        await rt.create_replica(make_request())
    finally:
        await rt.close()
    assert kube.get("pods", "llm-prod", POD) is not None


async def test_hf_token_is_written_to_the_secret_the_pod_references(kube: FakeKubeApi) -> None:
    kube.add_namespace(NS)
    kube.put("secrets", {"metadata": {"name": "hf", "namespace": NS},
                         "stringData": {"HF_TOKEN": "stale"}})
    rt = KubernetesRuntime({**kube.options, "hf_token": "hf_new", "hf_token_secret": "hf"})
    await rt.start()
    try:
        await rt.create_replica(make_request())
    finally:
        await rt.close()
    secret = kube.get("secrets", NS, "hf")
    # stringData is write-only: the API server folds it into data (base64)
    assert secret is not None and "stringData" not in secret
    assert base64.b64decode(secret["data"]["HF_TOKEN"]) == b"hf_new"
    pod = kube.get("pods", NS, POD)
    assert pod is not None
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf"


def engine_status(state: dict[str, Any], ready: bool = False, restarts: int = 0,
                  last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "engine", "image": "vllm/vllm-openai:v0.6.3", "imageID": "",
            "ready": ready, "restartCount": restarts, "state": state,
            "lastState": {"terminated": last} if last else {}}


STATUSES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unschedulable", {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 1 Insufficient nvidia.com/gpu."}]},
     "starting", "Insufficient nvidia.com/gpu"),
    ("creating", {"phase": "Pending", "containerStatuses": [
        engine_status({"waiting": {"reason": "ContainerCreating"}})]},
     "starting", "ContainerCreating"),
    ("loading", {"phase": "Running", "podIP": "10.1.2.3", "containerStatuses": [
        engine_status({"running": {"startedAt": T0}})]},
     "starting", "loading the model"),
    ("ready", {"phase": "Running", "podIP": "10.1.2.3", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T08:05:00Z"}],
        "containerStatuses": [engine_status({"running": {"startedAt": T0}}, ready=True)]},
     "ready", ""),
    ("crashloop-oom", {"phase": "Running", "podIP": "10.1.2.3", "containerStatuses": [
        engine_status({"waiting": {"reason": "CrashLoopBackOff",
                                   "message": "back-off 40s restarting failed container"}},
                      restarts=3,
                      last={"exitCode": 137, "reason": "OOMKilled", "finishedAt": T0,
                            "startedAt": T0})]},
     "failed", "CrashLoopBackOff: back-off 40s restarting failed container; last termination: "
     "OOMKilled (exit code 137)"),
    ("image-pull", {"phase": "Pending", "containerStatuses": [
        engine_status({"waiting": {"reason": "ImagePullBackOff",
                                   "message": 'Back-off pulling image "vllm"'}})]},
     "failed", "ImagePullBackOff: Back-off pulling image"),
    ("crashed-now", {"phase": "Running", "containerStatuses": [
        engine_status({"terminated": {"exitCode": 1, "reason": "Error", "message":
                                      "ValueError: max_model_len 131072 > 32768"}})]},
     "failed", "engine Error (exit code 1): ValueError: max_model_len"),
    ("evicted", {"phase": "Failed", "reason": "Evicted",
                 "message": "The node was low on resource: memory."},
     "failed", "pod failed: Evicted: The node was low on resource: memory."),
    ("admission", {"phase": "Failed", "reason": "UnexpectedAdmissionError",
                   "message": "Allocate failed due to requested number of devices unavailable"},
     "failed", "UnexpectedAdmissionError"),
    ("node-lost", {"phase": "Unknown"}, "unknown", "node stopped reporting"),
    ("unready-after-start", {"phase": "Running", "podIP": "10.1.2.3", "containerStatuses": [
        {**engine_status({"running": {"startedAt": T0}}), "started": True}]},
     "unknown", "failing its readiness probe"),
]


@pytest.mark.parametrize(("status", "state", "text"), [s[1:] for s in STATUSES],
                         ids=[s[0] for s in STATUSES])
async def test_observe_maps_pod_status(
    kube: FakeKubeApi, runtime: KubernetesRuntime, status: dict[str, Any], state: str, text: str
) -> None:
    await runtime.create_replica(make_request())
    kube.set_pod_status(NS, POD, status)
    (obs,) = await runtime.observe()
    assert obs.state == state
    assert text in obs.message
    if state == "ready":
        assert obs.url == "http://10.1.2.3:8000"
        assert obs.since == datetime(2026, 11, 25, 8, 5, tzinfo=UTC)
    if state == "failed":
        assert obs.url is None  # the gateway must not send to it
    if "restarts" in str(status) and "crashloop" in text.lower():
        assert obs.restarts == 3


async def test_observe_restart_count_and_ipv6_url(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    await runtime.create_replica(make_request())
    kube.set_pod_status(NS, POD, {"phase": "Running", "podIP": "fd00::17", "containerStatuses": [
        engine_status({"running": {"startedAt": T0}}, ready=True, restarts=2,
                      last={"exitCode": 137, "reason": "OOMKilled"})]})
    (obs,) = await runtime.observe()
    assert (obs.state, obs.restarts, obs.url) == ("ready", 2, "http://[fd00::17]:8000")


async def test_observe_adds_the_latest_warning_event(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    await runtime.create_replica(make_request())
    pod = kube.get("pods", NS, POD)
    assert pod is not None
    uid = pod["metadata"]["uid"]
    for when, reason, msg in [("2026-11-25T08:00:01Z", "FailedScheduling", "old news"),
                              ("2026-11-25T08:00:09Z", "FailedMount",
                               'persistentvolumeclaim "hf-cache" not found')]:
        kube.put("events", {"metadata": {"name": f"{POD}.{reason}", "namespace": NS},
                            "involvedObject": {"kind": "Pod", "name": POD, "namespace": NS,
                                               "uid": uid},
                            "reason": reason, "message": msg, "type": "Warning",
                            "lastTimestamp": when})
    kube.put("events", {"metadata": {"name": "other", "namespace": NS},
                        "involvedObject": {"kind": "Pod", "name": "x", "uid": "nope"},
                        "reason": "BackOff", "message": "not ours", "type": "Warning",
                        "lastTimestamp": "2026-11-25T09:00:00Z"})
    (obs,) = await runtime.observe()
    assert obs.state == "starting"
    assert obs.message.endswith('FailedMount: persistentvolumeclaim "hf-cache" not found')


async def test_observe_sees_only_this_installations_pods(kube: FakeKubeApi) -> None:
    mine = KubernetesRuntime(kube.options)
    theirs = KubernetesRuntime({**kube.options, "instance": "staging"})
    await mine.start()
    await theirs.start()
    try:
        await mine.create_replica(make_request())
        await theirs.create_replica(make_request(namespace="staging-ai",
                                                 replica_id="qwen-72b-222222222222"))
        kube.put("pods", {"metadata": {"name": "web", "namespace": NS},
                          "spec": {"containers": [{"name": "w", "image": "nginx"}]}})
        assert [o.replica_id for o in await mine.observe()] == [POD]
        assert [o.replica_id for o in await theirs.observe()] == ["qwen-72b-222222222222"]
        # the other installation's pod is external capacity use, not a slot of ours
        a100 = next(n for n in await mine.list_nodes() if n.name == "gpu-a100-0")
        assert a100.external_gpus == 2
    finally:
        await mine.close()
        await theirs.close()


async def test_delete_is_idempotent_and_removes_the_service_last(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    await runtime.create_replica(make_request())
    await runtime.create_replica(make_request(replica_id="qwen-72b-111111111111"))
    await runtime.delete_replica(POD)
    assert kube.get("pods", NS, POD) is None
    assert kube.get("services", NS, "a3s-qwen-72b") is not None  # one replica left
    await runtime.delete_replica(POD)  # again: nothing to do, no error
    await runtime.delete_replica("never-existed")
    await runtime.delete_replica("not a label value!")
    await runtime.delete_replica("qwen-72b-111111111111")
    assert kube.objects("pods", NS) == []
    assert kube.get("services", NS, "a3s-qwen-72b") is None
    # a deleted pod is terminating until its node confirms (on the fake: gone at once)
    assert {o.state for o in await runtime.observe()} <= {"stopped"}


async def test_delete_deployment_removes_every_pod_and_the_service(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    for i in range(3):
        await runtime.create_replica(make_request(replica_id=f"qwen-72b-00000000000{i}"))
    await runtime.delete_deployment("dep-5e6f7a8b9c0d")
    await runtime.delete_deployment("dep-5e6f7a8b9c0d")
    assert kube.objects("pods", NS) == [] and kube.objects("services", NS) == []


async def test_delete_deployment_with_services_readable_per_namespace_only(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    """contrib/kubernetes/rbac.yaml: services are granted in the target namespaces only."""
    fake_only(kube, "injects a 403 (tests/kube runs the real RBAC)")
    kube.denied.add(("list", "services", ""))
    await runtime.create_replica(make_request())
    await runtime.delete_deployment("dep-5e6f7a8b9c0d")
    assert kube.objects("pods", NS) == [] and kube.objects("services", NS) == []


async def test_logs_tail_with_timestamps(kube: FakeKubeApi, runtime: KubernetesRuntime) -> None:
    fake_only(kube, "serves container logs; kwok runs no kubelet to read them from")
    await runtime.create_replica(make_request())
    for i in range(5):
        kube.append_log(NS, POD, f"INFO line {i}", ts=f"2026-11-25T08:00:0{i}.123456789Z")
    lines = [line async for line in runtime.logs(POD, tail=2)]
    assert [ln.line for ln in lines] == ["INFO line 3", "INFO line 4"]
    assert lines[0].ts == datetime(2026, 11, 25, 8, 0, 3, 123456, tzinfo=UTC)
    assert all(ln.replica_id == POD for ln in lines)


async def test_logs_of_a_crash_looping_replica_come_from_the_previous_run(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    fake_only(kube, "serves container logs; kwok runs no kubelet to read them from")
    await runtime.create_replica(make_request())
    kube.append_log(NS, POD, "torch.OutOfMemoryError: CUDA out of memory", previous=True)
    kube.set_pod_status(NS, POD, {"phase": "Running", "containerStatuses": [
        engine_status({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=1)]})
    lines = [line.line async for line in runtime.logs(POD, tail=20)]
    assert lines == ["torch.OutOfMemoryError: CUDA out of memory"]


async def test_logs_follow_streams_new_lines_and_stops_when_closed(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    fake_only(kube, "serves container logs; kwok runs no kubelet to read them from")
    await runtime.create_replica(make_request())
    kube.append_log(NS, POD, "loading weights")
    stream = cast(AsyncGenerator[LogLine, None], runtime.logs(POD, tail=10, follow=True))
    first = await asyncio.wait_for(anext(stream), 10)
    assert first.line == "loading weights"
    kube.append_log(NS, POD, "Uvicorn running on http://0.0.0.0:8000")
    second = await asyncio.wait_for(anext(stream), 10)
    assert second.line == "Uvicorn running on http://0.0.0.0:8000"
    await asyncio.wait_for(stream.aclose(), 10)


async def test_logs_follow_ends_when_the_pod_goes(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    fake_only(kube, "serves container logs; kwok runs no kubelet to read them from")
    await runtime.create_replica(make_request())
    kube.append_log(NS, POD, "only line")

    async def collect() -> list[str]:
        return [line.line async for line in runtime.logs(POD, follow=True)]

    task = asyncio.create_task(collect())
    await asyncio.sleep(0.3)
    await runtime.delete_replica(POD)
    assert await asyncio.wait_for(task, 10) == ["only line"]


async def test_logs_of_an_unknown_replica(runtime: KubernetesRuntime) -> None:
    with pytest.raises(NotFound, match="no pod"):
        [line async for line in runtime.logs("qwen-72b-999999999999")]


async def test_forbidden_says_which_call_and_points_at_rbac(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    fake_only(kube, "injects a 403 (tests/kube runs the real RBAC)")
    kube.denied.add(("create", "pods"))
    with pytest.raises(RuntimeUnavailable) as err:
        await runtime.create_replica(make_request())
    assert f"create pod {NS}/{POD}" in err.value.message
    assert "HTTP 403" in err.value.message and "contrib/kubernetes/rbac.yaml" in err.value.message


async def test_unreachable_api_server_fails_start_clearly() -> None:
    rt = KubernetesRuntime({"host": "http://127.0.0.1:9", "request_timeout_s": 2})
    with pytest.raises(RuntimeUnavailable, match="unreachable while trying to read the server"):
        await rt.start()


async def test_missing_kubeconfig_is_a_clear_error(tmp_path: Any) -> None:
    rt = KubernetesRuntime({"kubeconfig": str(tmp_path / "nope"), "in_cluster": False})
    with pytest.raises(RuntimeUnavailable, match=r"runtime_options\.kubeconfig"):
        await rt.start()


async def test_logs_of_a_container_that_never_ran_are_empty(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    fake_only(kube, "serves container logs; kwok runs no kubelet to read them from")
    await runtime.create_replica(make_request())
    kube.set_pod_status(NS, POD, {"phase": "Pending", "containerStatuses": [
        engine_status({"waiting": {"reason": "ContainerCreating"}})]})
    assert [line async for line in runtime.logs(POD)] == []
    assert [line async for line in runtime.logs(POD, follow=True)] == []


async def test_a_wrong_field_selector_would_be_refused_like_the_real_server(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    with pytest.raises(Exception, match="field label not supported"):
        await asyncio.to_thread(runtime.core.list_pod_for_all_namespaces,
                                field_selector="status.ready=true")


async def test_a_namespace_deleted_behind_our_back_is_recreated(
    kube: FakeKubeApi, runtime: KubernetesRuntime
) -> None:
    await runtime.create_replica(make_request())
    kube.delete_namespace(NS)
    await runtime.create_replica(make_request(replica_id="qwen-72b-111111111111"))
    assert kube.get("namespaces", "", NS) is not None
    assert kube.get("pods", NS, "qwen-72b-111111111111") is not None
    assert kube.get("services", NS, "a3s-qwen-72b") is not None
