"""The autoscaler on the platform (FakeRuntime, real store, controller and scheduler), with
a fake clock and injected figures: decisions become desired counts, replicas placed by the
scheduler, events with their figures; unschedulable scale-ups, manual scale, restarts,
opting out, the API view, and rules added or replaced by plugins."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from a3s_core import hookimpl
from a3s_core.api import autoscaling as autoscaling_api
from a3s_core.contracts import ScalingRule
from a3s_core.plugins import Plugins
from a3s_core.scaling import FakeClock
from a3s_core.scaling.autoscaler import Autoscaler
from a3s_core.store import DeploymentRow, ReplicaRow
from a3s_core.types import AutoscalingSpec, ScalingSignals, Vote

TWO_L40S = [("gpu-l40s-0", "L40S-48GB", 46068, 2)]  # room for two 7B replicas
QUIET = {"gpu_utilization": 5.0, "queue_depth": 0.0, "p99_latency_s": 0.1}
HOT = {"gpu_utilization": 95.0, "queue_depth": 0.0, "p99_latency_s": 0.1}


class Figures:
    """Injected signals: the figures a test sets, over the deployment's ready replicas."""

    def __init__(self) -> None:
        self.now: dict[str, Any] = dict(QUIET)

    async def __call__(self, dep: DeploymentRow, replicas: Sequence[ReplicaRow]) -> ScalingSignals:
        ready = sum(1 for r in replicas if r.state == "ready")
        return ScalingSignals(replicas=ready, requests_in_window=10, **self.now)


class Harness:
    def __init__(self, client: Any, scaler: Autoscaler, clock: FakeClock, figures: Figures):
        self.client, self.scaler, self.clock, self.figures = client, scaler, clock, figures
        self.platform = client.app.state.platform

    def deploy(self, name: str = "q7", **model: Any) -> str:
        body = {"models": [{"name": name, "model": "Qwen/Qwen2.5-7B-Instruct", **model}]}
        r = self.client.post("/v1/deployments", json=body)
        assert r.status_code == 202, r.text
        dep_id: str = r.json()["deployments"][0]["id"]
        self.wait(dep_id, ready=model.get("replicas", 1))
        return dep_id

    def tick(self, after: float = 0.0, **figures: Any) -> Any:
        self.clock.advance(after)
        if figures:
            self.figures.now = figures
        return self.client.portal.call(self.scaler.tick)

    def row(self, dep_id: str) -> DeploymentRow:
        return self.platform.store.get_deployment(dep_id)

    def events(self, dep_id: str, prefix: str = "scaling.") -> list[Any]:
        return [
            e
            for e in self.platform.store.events_since(0, deployment_id=dep_id)
            if e.type.startswith(prefix)
        ]

    def wait(self, dep_id: str, ready: int, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        d: dict[str, Any] = {}
        while time.monotonic() < deadline:
            d = self.client.get(f"/v1/deployments/{dep_id}").json()
            live = [r for r in d["replicas"] if r["state"] in ("starting", "ready")]
            if d["status"] == "running" and d["readyReplicas"] == ready == len(live):
                return d
            time.sleep(0.05)
        raise AssertionError(f"{dep_id}: wanted {ready} ready, got {d.get('readyReplicas')}")

    def wait_for_event(self, dep_id: str, type_: str, timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(dep_id, type_)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {type_} event for {dep_id}")


@pytest.fixture
def harness(make_app: Any, request: pytest.FixtureRequest) -> Harness:
    # The platform's own loop ticks once at start-up and then sleeps: this test drives a
    # second autoscaler on a fake clock, wired in as the platform's (for the API view).
    # SQLite unless a test asks for "postgres" (indirect parametrization).
    extra = ({"database_url": request.getfixturevalue("pg_url")}
             if getattr(request, "param", "sqlite") == "postgres" else {})
    client = make_app(autoscale_interval_s=3600, runtime_options={"nodes": TWO_L40S}, **extra)
    client.app.include_router(autoscaling_api.router)
    clock, figures = FakeClock(), Figures()
    scaler = Autoscaler(client.app.state.platform, clock=clock, signals=figures)
    client.app.state.platform.autoscaler = scaler
    return Harness(client, scaler, clock, figures)


def test_scale_up_places_through_the_scheduler_and_emits_the_figures(harness: Harness) -> None:
    h = harness
    dep = h.deploy()
    decisions = h.tick(**HOT)
    d = decisions[dep]
    assert (d.action, d.from_replicas, d.to_replicas) == ("up", 1, 2)
    assert h.row(dep).desired_replicas == 2
    (up,) = h.events(dep)
    assert up.type == "scaling.up" and "GPU utilisation 95% > 80%" in up.message
    assert up.data["from"] == 1 and up.data["to"] == 2
    assert up.data["signals"]["gpuUtilization"] == 95.0
    assert up.data["thresholds"]["gpu_util_up"] == 80.0
    assert {v["rule"] for v in up.data["votes"]} == {
        "gpu-utilization",
        "queue-depth",
        "latency-p99",
    }
    got = h.wait(dep, ready=2)
    assert len({(r["node"], tuple(r["gpuIndices"])) for r in got["replicas"]}) == 2
    scheduled = h.events(dep, "scheduling.completed")
    assert len(scheduled) == 2  # the first replica and the autoscaled one


def test_unschedulable_scale_up_is_said_once_then_cancelled_when_quiet(harness: Harness) -> None:
    h = harness
    dep = h.deploy(replicas=2)  # the cluster is now full
    assert h.tick(**HOT)[dep].to_replicas == 3
    failed = h.wait_for_event(dep, "scheduling.failed")
    assert "L40S-48GB" in failed[0].message
    held = h.tick(after=5, **HOT)[dep]
    assert (held.code, held.event, held.to_replicas) == ("unschedulable", "scaling.held", 3)
    for _ in range(12):  # a minute of hot ticks: nothing more is asked or said
        assert h.tick(after=5, **HOT)[dep].event is None
    assert h.row(dep).desired_replicas == 3
    assert [e.type for e in h.events(dep)] == ["scaling.up", "scaling.held"]
    warning = h.events(dep)[1]
    assert warning.level == "warning" and "replica 3 cannot be placed" in warning.message
    assert len(h.events(dep, "scheduling.failed")) == 1
    # Load falls: the replica that never found a place is cancelled, the note cleared.
    d = h.tick(after=5, gpu_utilization=50.0, queue_depth=1.0, p99_latency_s=1.0)[dep]
    assert (d.code, d.to_replicas) == ("cancel-unplaceable", 2)
    row = h.row(dep)
    assert row.desired_replicas == 2 and "unschedulable" not in row.autoscaling_state


def test_scale_down_after_five_quiet_minutes(harness: Harness) -> None:
    h = harness
    dep = h.deploy(replicas=2)
    decision = h.tick(**QUIET)[dep]
    assert decision.code == "steady"  # the queue has only just been seen empty
    for _ in range(29):
        h.tick(after=10, **QUIET)
    assert h.row(dep).desired_replicas == 2
    d = h.tick(after=10, **QUIET)[dep]
    assert (d.action, d.to_replicas) == ("down", 1)
    assert h.row(dep).desired_replicas == 1
    (down,) = h.events(dep)
    assert down.type == "scaling.down" and down.data["signals"]["queueZeroForS"] == 300


def test_stale_unschedulable_note_is_cleared_and_other_keys_kept(harness: Harness) -> None:
    h = harness
    dep = h.deploy()
    h.platform.store.update_deployment(
        dep, autoscaling_state={"unschedulable": "old", "someone-else": {"x": 1}}
    )
    h.tick(gpu_utilization=50.0, queue_depth=1.0, p99_latency_s=1.0)
    state = h.row(dep).autoscaling_state
    assert "unschedulable" not in state and state["someone-else"] == {"x": 1}
    assert state["autoscaler"]["seen_desired"] == 1


@pytest.mark.parametrize("harness", ["sqlite", "postgres"], indirect=True)
def test_manual_scale_and_autoscaler_agree(harness: Harness) -> None:
    h = harness
    dep = h.deploy()
    h.tick(**QUIET)
    r = h.client.post(f"/v1/deployments/{dep}/scale", json={"replicas": 2})
    assert r.status_code == 202
    h.wait(dep, ready=2)
    d = h.tick(after=10, **QUIET)[dep]
    assert d.state.manual_at == h.clock.now() and d.from_replicas == 2
    # Quiet for five minutes after the manual change: held by the restarted cool-down,
    # without a 'held' event on top of the user's own scaling.manual…
    for _ in range(29):
        d = h.tick(after=10, **QUIET)[dep]
    assert d.code == "cooldown-down" and "after the manual scale to 2" in d.reason
    assert h.row(dep).desired_replicas == 2
    assert [e.type for e in h.events(dep)] == ["scaling.manual"]
    # …then the autoscaler continues from the manual count.
    d = h.tick(after=10, **QUIET)[dep]
    assert (d.action, d.from_replicas, d.to_replicas) == ("down", 2, 1)


def test_timers_survive_a_restart(harness: Harness) -> None:
    h = harness
    dep = h.deploy()
    h.tick(**HOT)
    h.wait(dep, ready=2)
    fresh = Autoscaler(h.platform, clock=h.clock, signals=h.figures)  # a new process
    h.clock.advance(30)
    d = h.client.portal.call(fresh.tick)[dep]
    assert (d.code, d.up_cooldown_remaining_s) == ("cooldown-up", 30)


def test_a_deployment_that_is_not_running_is_left_alone(make_app: Any) -> None:
    client = make_app(autoscale_interval_s=3600, runtime_options={"stay_starting": True})
    figures = Figures()
    figures.now = dict(HOT)
    scaler = Autoscaler(client.app.state.platform, clock=FakeClock(), signals=figures)
    body = {"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
    dep = client.post("/v1/deployments", json=body).json()["deployments"][0]["id"]
    deadline = time.monotonic() + 20
    while client.get(f"/v1/deployments/{dep}").json()["status"] != "deploying":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert dep not in client.portal.call(scaler.tick)
    assert client.app.state.platform.store.get_deployment(dep).desired_replicas == 1


def test_autoscaling_enabled_false_opts_out(harness: Harness) -> None:
    h = harness
    dep = h.deploy(autoscaling={"enabled": False})
    on = h.deploy(name="q7-on")
    decisions = h.tick(**HOT)
    assert dep not in decisions and decisions[on].action == "up"
    assert h.row(dep).desired_replicas == 1 and h.events(dep) == []
    v = h.client.get(f"/v1/deployments/{dep}/autoscaling").json()
    assert (v["enabled"], v["active"]) == (False, False)


def test_api_view(harness: Harness) -> None:
    h = harness
    dep = h.deploy(autoscaling={"maxReplicas": 3, "gpu_util_up": 70, "up_cooldown_s": 120})
    h.tick(gpu_utilization=75.0, queue_depth=0.0, p99_latency_s=0.1)
    h.wait(dep, ready=2)
    h.clock.advance(20)
    r = h.client.get(f"/v1/deployments/{dep}/autoscaling")
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["enabled"] and v["active"] and v["thresholds"]["gpu_util_up"] == 70
    assert v["thresholds"]["maxReplicas"] == 3
    assert v["replicas"] == {"desired": 2, "live": 2, "ready": 2, "floor": 1, "ceiling": 3}
    assert v["signals"]["gpuUtilization"] == 75.0 and v["signals"]["readyReplicas"] == 2
    assert v["cooldowns"]["upRemainingS"] == 100 and v["cooldowns"]["downRemainingS"] == 280
    assert v["evaluation"]["code"] == "cooldown-up"
    assert {x["rule"] for x in v["evaluation"]["votes"]} >= {"gpu-utilization"}
    assert v["lastDecision"]["action"] == "up" and v["lastDecision"]["toReplicas"] == 2
    assert v["unschedulable"] is None
    # The view changed nothing.
    assert h.row(dep).desired_replicas == 2 and len(h.events(dep)) == 1
    assert h.client.get("/v1/deployments/dep-nope/autoscaling").status_code == 404
    anonymous = h.client.get(f"/v1/deployments/{dep}/autoscaling", headers={"Authorization": ""})
    assert anonymous.status_code == 401


# ---------------------------------------------------------------- rules from plugins


class KvCacheRule(ScalingRule):
    """A platform team's extra rule: scale up when the KV cache is nearly full."""

    name = "kv-cache"
    full = False

    def vote(self, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
        if KvCacheRule.full:
            return Vote(rule=self.name, direction="up", reason="KV cache 97% > 90%")
        return Vote(rule=self.name, direction="down", reason="KV cache 3%")


class LenientLatency(ScalingRule):
    """Replaces the built-in P99 rule: never blocks a scale-down."""

    name = "latency-p99"

    def vote(self, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
        return Vote(rule=self.name, direction="down", reason="latency ignored by policy")


class TeamRules:
    @hookimpl
    def a3s_register_scaling_rules(self, registry: Any) -> None:
        registry.register(KvCacheRule)
        registry.replace(LenientLatency)
        registry.remove("gpu-utilization")


def test_a_plugin_adds_replaces_and_removes_rules(
    make_app: Any, a3s_plugins: Plugins, register_plugin: Any
) -> None:
    register_plugin(a3s_plugins, TeamRules(), "team-rules")
    assert a3s_plugins.scaling_rules.names() == ["kv-cache", "latency-p99", "queue-depth"]
    assert a3s_plugins.scaling_rules.owner("latency-p99") == "team-rules"
    client = make_app(plugins=a3s_plugins, autoscale_interval_s=3600)
    figures = Figures()
    clock = FakeClock()
    scaler = Autoscaler(client.app.state.platform, clock=clock, signals=figures)
    h = Harness(client, scaler, clock, figures)
    dep = h.deploy()
    KvCacheRule.full = True
    try:
        d = h.tick(gpu_utilization=99.0, queue_depth=0.0, p99_latency_s=30.0)[dep]
    finally:
        KvCacheRule.full = False
    assert (d.action, d.to_replicas) == ("up", 2) and d.reason.startswith("KV cache 97%")
    assert {v.rule for v in d.votes} == {"kv-cache", "latency-p99", "queue-depth"}
    assert "latency ignored by policy" in [v.reason for v in d.votes]
