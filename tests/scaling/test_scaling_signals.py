"""Signals: the gateway's figures first, the runtime's GPU view and the gateway's in-flight
count where the engines say nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from a3s_core.scaling.signals import collect, node_gpu_utilization
from a3s_core.store import DeploymentRow, ReplicaRow
from a3s_core.types import GpuDevice, Node, ScalingSignals


def replica(rid: str, node: str, gpus: list[int], state: str = "ready") -> ReplicaRow:
    return ReplicaRow(id=rid, deployment_id="dep-1", node=node, gpu_indices=gpus, state=state)


NODES = [
    Node(
        name="n0",
        gpu_count=4,
        gpus=[
            GpuDevice(index=0, utilization=90.0),
            GpuDevice(index=1, utilization=70.0),
            GpuDevice(index=2, utilization=None),
            GpuDevice(index=3, utilization=5.0),
        ],
    ),
    Node(name="n1", gpu_count=1, gpus=[GpuDevice(index=0, utilization=30.0)]),
]


def test_node_utilisation_averages_only_the_replicas_own_gpus() -> None:
    reps = [replica("a", "n0", [0, 1]), replica("b", "n1", [0])]
    assert node_gpu_utilization(reps, NODES) == (90 + 70 + 30) / 3
    assert node_gpu_utilization([replica("c", "n0", [2])], NODES) is None  # no gauge
    assert node_gpu_utilization([replica("d", "gone", [0])], NODES) is None


class FakeGateway:
    def __init__(self, sig: ScalingSignals, in_flight: int = 0) -> None:
        self.sig, self.in_flight = sig, in_flight

    def signals(self, deployment_id: str, since_s: float | None = None) -> ScalingSignals:
        return self.sig

    def stats(self, deployment_id: str) -> dict[str, Any]:
        return {"inFlight": self.in_flight}


def platform(gateway: FakeGateway | None) -> Any:
    return SimpleNamespace(gateway=gateway, observer=gateway, fleet=None)


DEP = DeploymentRow(
    id="dep-1",
    name="q",
    namespace="ns",
    model="m",
    engine="vllm",
    spec={},
    span_id=None,
    failures=0,
)


async def nodes() -> list[Node]:
    return NODES


async def test_gateway_figures_win_and_ready_count_comes_from_the_store() -> None:
    sig = ScalingSignals(replicas=5, gpu_utilization=55.0, queue_depth=3.0, p99_latency_s=1.5)
    reps = [replica("a", "n0", [0]), replica("b", "n0", [1], state="starting")]
    out = await collect(platform(FakeGateway(sig)), DEP, reps, nodes)
    assert (out.replicas, out.gpu_utilization, out.queue_depth, out.p99_latency_s) == (
        1,
        55.0,
        3.0,
        1.5,
    )


async def test_fallbacks_node_gpu_view_and_idle_queue() -> None:
    sig = ScalingSignals(replicas=1, requests_in_window=0)
    reps = [replica("a", "n0", [0, 1])]
    out = await collect(platform(FakeGateway(sig, in_flight=0)), DEP, reps, nodes)
    assert out.gpu_utilization == 80.0 and out.queue_depth == 0.0
    busy = await collect(platform(FakeGateway(sig, in_flight=3)), DEP, reps, nodes)
    assert busy.queue_depth is None  # requests in flight and no engine figure: unknown


async def test_no_gateway_in_this_process() -> None:
    out = await collect(platform(None), DEP, [replica("a", "n1", [0])], nodes)
    assert (out.replicas, out.gpu_utilization, out.queue_depth) == (1, 30.0, 0.0)


# ---------------------------------------------------------------- persisted state


def test_save_keeps_other_keys_and_loses_to_a_concurrent_manual_scale(tmp_path: Any) -> None:
    from a3s_core.scaling import ScalingState, persist
    from a3s_core.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'a3s.db'}")
    try:
        row = DeploymentRow(
            **{**DEP.model_dump(), "autoscaling_state": {"unschedulable": "no GPU"}}
        )
        store.create_deployments([row])
        assert store.get_deployment(DEP.id).autoscaling_state == {"unschedulable": "no GPU"}
        state = ScalingState(last_up_at=100.0, seen_desired=2)
        # The API set 3 meanwhile: the autoscaler's 1 → 2 is not written.
        store.update_deployment(DEP.id, desired_replicas=3)
        assert not persist.save(store, DEP.id, state, expect_desired=1, desired=2)
        fresh = store.get_deployment(DEP.id)
        assert fresh.desired_replicas == 3 and "autoscaler" not in fresh.autoscaling_state
        assert persist.save(store, DEP.id, state, expect_desired=3, desired=4)
        fresh = store.get_deployment(DEP.id)
        assert fresh.desired_replicas == 4
        assert fresh.autoscaling_state["unschedulable"] == "no GPU"
        assert persist.read_state(fresh) == state
        assert persist.save(store, DEP.id, state, expect_desired=4, clear_unschedulable=True)
        assert persist.unschedulable_of(store.get_deployment(DEP.id)) is None
        store.update_deployment(DEP.id, status="deleting")
        assert not persist.save(store, DEP.id, state, expect_desired=4)
        # A state written by another version never breaks the autoscaler.
        store.update_deployment(DEP.id, autoscaling_state={"autoscaler": {"last_up_at": "x"}})
        assert persist.read_state(store.get_deployment(DEP.id)) == ScalingState()
    finally:
        store.close()
