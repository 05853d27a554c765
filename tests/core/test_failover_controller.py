"""Issue 18 on the FakeRuntime: a replica the runtime stops reporting is lost, not failed
(replaced, never counted toward max_restarts); a failed deployment is retried with a
back-off it announces; the runtime is told when its process leads or follows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from a3s_core import hookimpl
from a3s_core.plugins import Plugins
from a3s_core.testing import FakeRuntime

Q7 = {"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}


def wait_for(client: Any, dep_id: str, check: Callable[[dict[str, Any]], bool],
             what: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    d: dict[str, Any] = {}
    while time.monotonic() < deadline:
        d = client.get(f"/v1/deployments/{dep_id}").json()
        if check(d):
            return d
        time.sleep(0.05)
    raise AssertionError(f"{what}: {d.get('status')} {d.get('reason')} {d.get('replicas')}")


def running(d: dict[str, Any]) -> bool:
    return d["status"] == "running" and d["readyReplicas"] == 1 and len(d["replicas"]) == 1


def events(client: Any, dep_id: str) -> list[Any]:
    return list(client.app.state.platform.store.events_since(0, deployment_id=dep_id))


def test_a_vanished_replica_is_lost_and_replaced_never_counted_as_a_failure(
    make_app: Any,
) -> None:
    client = make_app(max_restarts=2, replica_lost_grace_s=0.3)
    runtime: FakeRuntime = client.app.state.platform.runtime
    dep = client.post("/v1/deployments", json=Q7).json()["deployments"][0]
    d = wait_for(client, dep["id"], running, "running")
    for _ in range(3):  # more losses than max_restarts allows failures
        gone = d["replicas"][0]["id"]
        del runtime.replicas[gone]  # a failover or restart that lost sight of it
        d = wait_for(client, dep["id"],
                     lambda v, gone=gone: running(v) and v["replicas"][0]["id"] != gone,
                     "the lost replica is replaced")
    row = client.app.state.platform.store.get_deployment(dep["id"])
    assert row.status == "running" and row.failures == 0
    types = [e.type for e in events(client, dep["id"])]
    assert types.count("replica.lost") == 3
    assert "replica.failed" not in types and "deployment.failed" not in types
    lost = next(e for e in events(client, dep["id"]) if e.type == "replica.lost")
    assert "not counted as an engine failure" in lost.message and lost.level == "warning"


def test_a_replica_the_runtime_reports_lost_is_replaced_at_once_saying_why(
    make_app: Any,
) -> None:
    """`lost` (its node NotReady past the runtime's grace, say): deleted, replaced without
    waiting for replica_lost_grace_s, not a failure, and the event carries the reason."""
    client = make_app(max_restarts=1, replica_lost_grace_s=3600)
    runtime: FakeRuntime = client.app.state.platform.runtime
    dep = client.post("/v1/deployments", json=Q7).json()["deployments"][0]
    d = wait_for(client, dep["id"], running, "running")
    rid, node = d["replicas"][0]["id"], d["replicas"][0]["node"]
    why = f"node {node} is NotReady (Ready=Unknown, NodeStatusUnknown) for 61s"
    runtime.replicas[rid] = runtime.replicas[rid].model_copy(
        update={"state": "lost", "message": why})
    d = wait_for(client, dep["id"], lambda v: running(v) and v["replicas"][0]["id"] != rid,
                 "the lost replica replaced")
    assert rid not in runtime.replicas  # deleted, so it cannot come back beside its successor
    (lost,) = [e for e in events(client, dep["id"]) if e.type == "replica.lost"]
    assert why in lost.message and lost.data == {"replica": rid, "node": node, "reason": why}
    row = client.app.state.platform.store.get_deployment(dep["id"])
    assert row.failures == 0


def test_a_failed_deployment_is_retried_with_a_back_off_it_announces(make_app: Any) -> None:
    client = make_app(max_restarts=1, failed_retry_s=0.6)
    runtime: FakeRuntime = client.app.state.platform.runtime
    dep = client.post("/v1/deployments", json=Q7).json()["deployments"][0]
    d = wait_for(client, dep["id"], running, "running")
    runtime.fail(d["replicas"][0]["id"], "CUDA error: an illegal memory access")
    d = wait_for(client, dep["id"], lambda v: v["status"] == "failed", "failed")
    assert d["retryAt"] is not None and "illegal memory access" in d["reason"]
    failed = [e for e in events(client, dep["id"]) if e.type == "deployment.failed"]
    assert failed[-1].data["retryInSeconds"] == 0.6 and failed[-1].data["retryAt"]
    assert "trying again at" in failed[-1].message

    # Its time comes: it starts over, says so, and runs again.
    d = wait_for(client, dep["id"], running, "running again after the retry")
    assert d["retryAt"] is None
    retrying = [e for e in events(client, dep["id"]) if e.type == "deployment.retrying"]
    assert len(retrying) == 1 and "illegal memory access" in retrying[0].data["lastReason"]

    # Failing again at once (before it ran stably) waits twice as long.
    runtime.fail(d["replicas"][0]["id"], "CUDA error: an illegal memory access")
    wait_for(client, dep["id"], lambda v: v["status"] == "failed", "failed again")
    failed = [e for e in events(client, dep["id"]) if e.type == "deployment.failed"]
    assert failed[-1].data["retryInSeconds"] == 1.2


def test_failed_is_final_when_retries_are_off(make_app: Any) -> None:
    client = make_app(max_restarts=1, failed_retry_s=None)
    runtime: FakeRuntime = client.app.state.platform.runtime
    dep = client.post("/v1/deployments", json=Q7).json()["deployments"][0]
    d = wait_for(client, dep["id"], running, "running")
    runtime.fail(d["replicas"][0]["id"])
    d = wait_for(client, dep["id"], lambda v: v["status"] == "failed", "failed")
    assert d["retryAt"] is None
    failed = [e for e in events(client, dep["id"]) if e.type == "deployment.failed"]
    assert failed[-1].data["retryAt"] is None and "trying again" not in failed[-1].message


class TellingRuntime(FakeRuntime):
    """Records what the platform tells it about leadership."""

    name = "telling"
    calls: list[tuple[str, bool]] = []

    async def on_leadership(self, leading: bool) -> None:
        TellingRuntime.calls.append((str(self.options.get("tag")), leading))


class TellingPlugin:
    @hookimpl
    def a3s_register_runtimes(self, registry: Any) -> None:
        registry.register(TellingRuntime)


def test_the_runtime_is_told_when_its_process_leads_or_follows(make_app: Any) -> None:
    plugins = Plugins()
    plugins.register(TellingPlugin(), name="telling-runtime")
    TellingRuntime.calls.clear()
    lease = {"lease_duration_s": 3.0, "lease_renew_interval_s": 0.25}
    a = make_app(plugins=plugins, runtime="telling", runtime_options={"tag": "a"}, **lease)
    make_app(plugins=plugins, runtime="telling", runtime_options={"tag": "b"}, **lease)
    assert TellingRuntime.calls == [("a", True), ("b", False)]
    a.__exit__(None, None, None)  # shutting down: not told (its close() decides)
    deadline = time.monotonic() + 20
    while ("b", True) not in TellingRuntime.calls:
        assert time.monotonic() < deadline, TellingRuntime.calls
        time.sleep(0.02)
    assert TellingRuntime.calls == [("a", True), ("b", False), ("b", True)]
