"""Deployments end to end on the FakeRuntime: statuses, replicas, scale, delete, restart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from a3s_core.store import GpuAllocationRow

MINIMAL = {"models": [{"name": "qwen-72b", "model": "Qwen/Qwen2.5-72B-Instruct"}]}


def wait_for(
    client: Any,
    dep_id: str,
    *statuses: str,
    timeout: float = 20.0,
    ready: int | None = None,
    until: Any = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    d: dict[str, Any] = {}
    while time.monotonic() < deadline:
        d = client.get(f"/v1/deployments/{dep_id}").json()
        if (
            d["status"] in statuses
            and (ready is None or (d["readyReplicas"] == ready and len(d["replicas"]) == ready))
            and (until is None or until(d))
        ):
            return d
        time.sleep(0.05)
    raise AssertionError(
        f"{dep_id} did not reach {statuses} (ready={ready}): {d.get('status')} "
        f"{d.get('reason')} replicas={[r['state'] for r in d.get('replicas', [])]}"
    )


def test_a_name_where_an_id_belongs_is_a_404_that_names_the_id(make_app: Any) -> None:
    client = make_app()
    dep = client.post("/v1/deployments", json=MINIMAL).json()["deployments"][0]
    r = client.get("/v1/deployments/qwen-72b")
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert "addressed by id" in message and dep["id"] in message and "'default'" in message
    r = client.get("/v1/deployments/dep-nope")
    assert r.status_code == 404 and "addressed by id" not in r.json()["error"]["message"]


def test_seed_minimal_request_runs(make_app: Any) -> None:
    client = make_app()
    r = client.post("/v1/deployments", json=MINIMAL)
    assert r.status_code == 202
    body = r.json()
    assert body["namespace"] == "default" and len(body["traceId"]) == 32
    (dep,) = body["deployments"]
    assert dep["apiKey"].startswith("sk-a3s-") and len(dep["apiKey"]) >= 7 + 32
    assert dep["endpoint"] == "http://127.0.0.1:18080/d/default/qwen-72b/v1"
    assert dep["eventsUrl"].endswith(f"/v1/deployments/{dep['id']}/events")
    d = wait_for(client, dep["id"], "running", ready=1)
    (rep,) = d["replicas"]
    assert rep["gpu"] == "A100-80GB" and len(rep["gpuIndices"]) == 2  # FP16 72B: 2× A100-80GB
    a100 = next(c for c in d["plan"]["candidates"] if c["gpu"] == "A100-80GB")
    assert a100["gpu_count"] == 2
    types = [e["type"] for e in d["recentEvents"]]
    for t in (
        "deployment.accepted",
        "sizing.started",
        "sizing.completed",
        "scheduling.completed",
        "replica.starting",
        "replica.ready",
        "deployment.running",
    ):
        assert t in types, (t, types)
    assert (
        types.index("sizing.completed")
        < types.index("scheduling.completed")
        < types.index("replica.ready")
        < types.index("deployment.running")
    )
    # A key is stored only as a hash.
    store = client.app.state.platform.store
    assert store.verify_key(dep["apiKey"]) == dep["id"]
    assert all(dep["apiKey"] not in k.key_hash for k in store.keys_of(dep["id"]))


def test_seed_full_request_and_namespace_from_team(make_app: Any) -> None:
    client = make_app()
    full = {
        "models": [
            {
                "name": "qwen-72b",
                "model": "Qwen/Qwen2.5-72B-Instruct",
                "engine": "vllm",
                "quantization": "awq",
                "max_model_len": 32768,
                "replicas": 1,
                "extra_args": {},
            }
        ],
        "namespace": "team-ai",
        "metadata": {"userId": "user-001", "teamId": "team-001", "source": "cli"},
    }
    dep = client.post("/v1/deployments", json=full).json()["deployments"][0]
    assert dep["namespace"] == "team-ai"
    d = wait_for(client, dep["id"], "running", ready=1)
    assert d["plan"]["quantization"] == "awq" and d["plan"]["max_model_len"] == 32768
    assert len(d["replicas"][0]["gpuIndices"]) == 1
    # No namespace: derived from metadata.teamId, so a repeat meets its twin (409).
    body = {
        "models": [{"name": "small", "model": "Qwen/Qwen2.5-7B-Instruct"}],
        "metadata": {"teamId": "Team_001"},
    }
    first = client.post("/v1/deployments", json=body)
    assert first.json()["namespace"] == "team-001"
    assert client.post("/v1/deployments", json=body).status_code == 409


def test_scale_up_down_and_delete_frees_gpus(make_app: Any) -> None:
    client = make_app()
    dep = client.post(
        "/v1/deployments", json={"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
    ).json()["deployments"][0]
    wait_for(client, dep["id"], "running", ready=1)
    r = client.post(f"/v1/deployments/{dep['id']}/scale", json={"replicas": 3})
    assert r.status_code == 202 and r.json()["desiredReplicas"] == 3
    d = wait_for(client, dep["id"], "running", ready=3)
    held = [(x["node"], i) for x in d["replicas"] for i in x["gpuIndices"]]
    assert len(held) == len(set(held)) == 3  # three GPUs, none shared
    assert (
        client.post(f"/v1/deployments/{dep['id']}/scale", json={"replicas": 0}).status_code == 422
    )
    client.post(f"/v1/deployments/{dep['id']}/scale", json={"replicas": 1})
    wait_for(client, dep["id"], "running", ready=1)
    store = client.app.state.platform.store
    assert store.count(GpuAllocationRow) == 1

    r = client.delete(f"/v1/deployments/{dep['id']}")
    assert r.status_code == 202
    assert store.verify_key(dep["apiKey"]) is None  # refused at once
    wait_for(client, dep["id"], "deleted")
    assert store.count(GpuAllocationRow) == 0
    assert client.delete(f"/v1/deployments/{dep['id']}").status_code == 202  # idempotent
    assert client.get("/v1/deployments/dep-nope").status_code == 404
    assert client.delete("/v1/deployments/dep-nope").status_code == 404
    # The name is free again.
    again = client.post(
        "/v1/deployments", json={"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
    )
    assert again.status_code == 202


def test_restart_keeps_deployments_and_keys(make_app: Any) -> None:
    client = make_app(controllers=False)
    dep = client.post("/v1/deployments", json=MINIMAL).json()["deployments"][0]
    client.__exit__(None, None, None)
    again = make_app(controllers=False)
    d = again.get(f"/v1/deployments/{dep['id']}").json()
    assert d["name"] == "qwen-72b" and d["status"] == "pending"
    assert again.app.state.platform.store.verify_key(dep["apiKey"]) == dep["id"]


def test_failed_replica_is_replaced_then_deployment_fails(make_app: Any) -> None:
    client = make_app(max_restarts=2)
    platform = client.app.state.platform
    dep = client.post(
        "/v1/deployments", json={"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
    ).json()["deployments"][0]
    d = wait_for(client, dep["id"], "running", ready=1)
    first = d["replicas"][0]["id"]
    platform.runtime.fail(first, "CUDA error: out of memory")
    d = wait_for(
        client,
        dep["id"],
        "running",
        ready=1,
        timeout=30,
        until=lambda d: d["replicas"][0]["id"] != first,
    )
    types = [e["type"] for e in d["recentEvents"]]
    assert "replica.failed" in types and "replica.restarting" in types
    platform.runtime.fail(d["replicas"][0]["id"], "CUDA error: out of memory")
    d = wait_for(client, dep["id"], "failed", timeout=30)
    assert "out of memory" in d["reason"] and "2 times" in d["reason"]


@pytest.mark.parametrize("nodes", [[("gpu-l40s-0", "L40S-48GB", 46068, 1)]])
def test_unschedulable_waits_with_reason_then_places(make_app: Any, nodes: Any) -> None:
    client = make_app(runtime_options={"nodes": nodes})
    small = client.post(
        "/v1/deployments", json={"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
    ).json()["deployments"][0]
    wait_for(client, small["id"], "running", ready=1)
    second = client.post(
        "/v1/deployments", json={"models": [{"name": "q7b", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
    ).json()["deployments"][0]
    d = wait_for(client, second["id"], "unschedulable")
    assert "L40S-48GB" in d["reason"] and "gpu-l40s-0" in d["reason"]
    failed = [e for e in d["recentEvents"] if e["type"] == "scheduling.failed"]
    assert len(failed) == 1 and failed[0]["data"]["reason"] == d["reason"]
    client.delete(f"/v1/deployments/{small['id']}")
    wait_for(client, second["id"], "running", ready=1)


def test_platform_on_postgresql(make_app: Any, pg_url: str) -> None:
    """The production store: the same lifecycle, and a restart keeps everything."""
    client = make_app(database_url=pg_url)
    dep = client.post("/v1/deployments", json=MINIMAL).json()["deployments"][0]
    wait_for(client, dep["id"], "running", ready=1)
    client.__exit__(None, None, None)
    again = make_app(database_url=pg_url, controllers=False)
    d = again.get(f"/v1/deployments/{dep['id']}").json()
    assert d["status"] == "running" and d["plan"]["parameters"] > 7e10
    assert again.app.state.platform.store.verify_key(dep["apiKey"]) == dep["id"]
    assert d["recentEvents"][0]["type"] == "deployment.accepted"


def test_scaling_a_running_deployment_keeps_it_running(make_app: Any) -> None:
    """A new replica of a deployment already serving (scale-up, a replacement) is no new
    deployment: the status stays `running` and `deployment.running` — "the first replica
    is ready (again)" — is not said again. It flipped to `deploying` and back, and A3S OS
    got a second `deployment.running` saying "1 of 3 replica(s) ready"."""
    client = make_app()
    dep = client.post(
        "/v1/deployments", json={"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
    ).json()["deployments"][0]
    wait_for(client, dep["id"], "running", ready=1)
    store = client.app.state.platform.store
    seen: list[str] = []
    client.post(f"/v1/deployments/{dep['id']}/scale", json={"replicas": 3})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        d = client.get(f"/v1/deployments/{dep['id']}").json()
        seen.append(d["status"])
        if d["readyReplicas"] == 3:
            break
        time.sleep(0.01)
    assert set(seen) == {"running"}, seen
    kinds = [e.type for e in store.events_since(0, deployment_id=dep["id"])]
    assert kinds.count("deployment.running") == 1, kinds
