"""Replicas on a node whose Ready condition is not True: out of traffic at once, lost
(replaced by the controller) after `node_lost_grace_s`, deleted by force."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from a3s_k8s_test_helpers import make_request
from a3s_runtime_kubernetes import KubernetesRuntime

pytest_plugins = ["a3s_k8s_fixtures"]  # the `kube` fixture

POD = "qwen-72b-0a1b2c3d4e5f"
NS = "team-ai"
READY = {"phase": "Running", "podIP": "10.1.2.3",
         "conditions": [{"type": "Ready", "status": "True"}],
         "containerStatuses": [{"name": "engine", "image": "vllm/vllm-openai:v0.6.3",
                                "imageID": "", "ready": True, "restartCount": 0,
                                "state": {"running": {"startedAt": "2026-11-25T08:00:00Z"}}}]}


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def rt(kube: Any) -> AsyncIterator[KubernetesRuntime]:
    runtime = KubernetesRuntime({**kube.options, "watch_pods": False,
                                 "node_lost_grace_s": 30, "node_check_interval_s": 0})
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.close()


async def test_a_replica_on_a_not_ready_node_leaves_traffic_then_is_lost(
    kube: Any, rt: KubernetesRuntime
) -> None:
    await rt.create_replica(make_request())
    kube.set_pod_status(NS, POD, READY)
    (obs,) = await rt.observe()
    assert obs.state == "ready"

    kube.set_node_ready("gpu-a100-0", "False", "KubeletNotReady",
                        "container runtime network not ready", since=ago(5))
    (obs,) = await rt.observe()
    assert obs.state == "unknown"  # no traffic at once, not replaced yet
    assert obs.message.startswith(
        "node gpu-a100-0 is NotReady (Ready=False, KubeletNotReady: container runtime "
        "network not ready); out of traffic")
    a100 = next(n for n in await rt.list_nodes() if n.name == "gpu-a100-0")
    assert a100.schedulable is False  # its GPUs are not offered to the replacement

    kube.set_node_ready("gpu-a100-0", "Unknown", "NodeStatusUnknown",
                        "Kubelet stopped posting node status.", since=ago(31))
    (obs,) = await rt.observe()
    assert obs.state == "lost"
    assert "node gpu-a100-0 is NotReady (Ready=Unknown, NodeStatusUnknown: Kubelet stopped " \
           "posting node status.) for 3" in obs.message
    assert (obs.replica_id, obs.node) == (POD, "gpu-a100-0")

    # The controller deletes a lost replica: by force, as no kubelet will confirm it.
    await rt.delete_replica(POD)
    assert kube.get("pods", NS, POD) is None
    assert await rt.observe() == []


async def test_a_node_ready_again_within_the_grace_gives_the_replica_back(
    kube: Any, rt: KubernetesRuntime
) -> None:
    await rt.create_replica(make_request())
    kube.set_pod_status(NS, POD, READY)
    kube.set_node_ready("gpu-a100-0", "False", "KubeletNotReady", "PLEG is not healthy")
    (obs,) = await rt.observe()
    assert obs.state == "unknown"
    kube.set_node_ready("gpu-a100-0", "True", "KubeletReady", "kubelet is posting ready status")
    (obs,) = await rt.observe()
    assert (obs.state, obs.message) == ("ready", "")


async def test_node_readiness_is_read_at_most_every_interval(kube: Any) -> None:
    """One node listing per `node_check_interval_s`, not one per reconcile pass."""
    rt = KubernetesRuntime({**kube.options, "watch_pods": False,
                            "node_check_interval_s": 3600})
    await rt.start()
    try:
        await rt.create_replica(make_request())
        kube.set_pod_status(NS, POD, READY)
        assert (await rt.observe())[0].state == "ready"
        kube.set_node_ready("gpu-a100-0", "False", "KubeletNotReady", "down")
        assert (await rt.observe())[0].state == "ready"  # not re-read yet
    finally:
        await rt.close()


def test_the_grace_counts_from_first_sight_when_the_condition_has_no_usable_time() -> None:
    """A lastTransitionTime ahead of this clock (skew) or missing does not shorten or
    lengthen the grace: it counts from when this process first saw the node NotReady."""
    from a3s_runtime_kubernetes.nodehealth import troubles

    def node(stamp: str | None) -> dict[str, Any]:
        cond = {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
        if stamp:
            cond["lastTransitionTime"] = stamp
        return {"metadata": {"name": "n"}, "status": {"conditions": [cond]}}

    first = troubles([node("2999-01-01T00:00:00Z")], {}, now=1000.0)
    assert first["n"].since == 1000.0
    later = troubles([node(None)], first, now=1050.0)
    assert later["n"].since == 1000.0  # still the first sighting
    assert troubles([node("1970-01-01T00:10:00Z")], later, now=1050.0)["n"].since == 600.0
    ready = {"metadata": {"name": "n"}, "status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}
    assert troubles([ready, {"metadata": {"name": "new"}}], later, now=1060.0) == {}
