"""The event stream over WebSocket: the whole pipeline in order, resume with `since`
(exactly once), persistence across a restart, filters, heartbeats, overflow."""

from __future__ import annotations

import time
from typing import Any

import pytest
from events_testkit import (
    REAL_MODEL,
    TO_RUNNING,
    TinySizing,
    deploy,
    read_until,
    refused,
    wait_status,
)
from starlette.websockets import WebSocketDisconnect


@pytest.fixture
def app(make_app: Any, a3s_plugins: Any, register_plugin: Any) -> Any:
    register_plugin(a3s_plugins, TinySizing(), "events-tiny-sizing")
    return make_app()


def test_watch_from_post_to_running_sees_every_step_in_order(app: Any) -> None:
    out = deploy(app, "chat", model=REAL_MODEL)  # the real sizing, not the test plugin
    dep = out["deployments"][0]
    assert dep["eventsUrl"].endswith(f"/v1/deployments/{dep['id']}/events")
    with app.websocket_connect(f"/v1/deployments/{dep['id']}/events?heartbeat=0.2") as ws:
        events = read_until(ws, "deployment.running")
    assert [e["type"] for e in events] == TO_RUNNING
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for e in events:
        assert e["deploymentId"] == dep["id"]
        assert (e["name"], e["namespace"]) == ("chat", "team-ai")
        assert e["traceId"] == out["traceId"]
        assert e["message"] and e["ts"]
    placed = events[TO_RUNNING.index("scheduling.completed")]
    assert placed["data"]["node"] == "gpu-a100-0"
    assert placed["data"]["gpu"] == "A100-80GB" and len(placed["data"]["gpuIndices"]) == 1
    assert "gpu-a100-0" in placed["message"]
    assert events[-1]["data"]["endpoint"].endswith("/d/team-ai/chat/v1")


def test_reconnect_with_since_gets_every_event_exactly_once(app: Any) -> None:
    first = deploy(app, "one")["deployments"][0]["id"]
    with app.websocket_connect("/v1/events?since=0&heartbeat=0.2") as ws:
        part1 = read_until(ws, "sizing.started")  # drop mid-way through the first deployment
    resume = part1[-1]["seq"]
    second = deploy(app, "two")["deployments"][0]["id"]
    wait_status(app, first, "running")
    wait_status(app, second, "running")
    with app.websocket_connect(f"/v1/events?since={resume}&heartbeat=0.2") as ws:
        part2 = read_until(ws, "deployment.running")
        if part2[-1]["deploymentId"] != second:
            part2 += read_until(ws, "deployment.running")
    seen = [e["seq"] for e in part1 + part2]
    assert len(seen) == len(set(seen)), "an event was delivered twice"
    assert seen == list(range(1, len(seen) + 1)), "an event was missed"
    for dep_id in (first, second):
        types = [e["type"] for e in part1 + part2 if e["deploymentId"] == dep_id]
        assert types == TO_RUNNING, [
            (e["seq"], e["type"], e["deploymentId"]) for e in part1 + part2
        ]


def test_live_only_without_since_and_backlog_only_without_follow(app: Any) -> None:
    dep = deploy(app, "chat")["deployments"][0]["id"]
    wait_status(app, dep, "running")
    store = app.app.state.platform.store
    last = store.last_seq()
    with app.websocket_connect("/v1/events?heartbeat=0.05") as ws:
        beat = ws.receive_json()  # nothing new: a heartbeat carrying the resume point
        assert beat["type"] == "heartbeat" and beat["seq"] == last
        app.post(f"/v1/deployments/{dep}/scale", json={"replicas": 2})
        nxt = ws.receive_json()
        while nxt["type"] == "heartbeat":
            nxt = ws.receive_json()
        assert nxt["type"] == "scaling.manual" and nxt["seq"] == last + 1
    with app.websocket_connect("/v1/events?since=0&follow=false") as ws:
        backlog = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                backlog.append(ws.receive_json())
    assert closed.value.code == 1000
    assert [e["seq"] for e in backlog] == list(range(1, len(backlog) + 1))
    assert len(backlog) >= last + 1


def test_batch_mode_sends_arrays_of_envelopes_in_order(app: Any) -> None:
    dep = deploy(app, "chat")["deployments"][0]["id"]
    wait_status(app, dep, "running")
    total = app.app.state.platform.store.last_seq()
    with app.websocket_connect("/v1/events?since=0&follow=false&batch=true") as ws:
        frames = []
        with pytest.raises(WebSocketDisconnect):
            while True:
                frames.append(ws.receive_json())
    assert frames and all(isinstance(f, list) for f in frames)
    assert [e["seq"] for f in frames for e in f] == list(range(1, total + 1))
    with app.websocket_connect(f"/v1/deployments/{dep}/events?batch=true&heartbeat=0.2") as ws:
        first = ws.receive_json()
    assert isinstance(first, list) and first[0]["type"] == "deployment.accepted"


def test_filters_by_namespace_and_deployment(app: Any) -> None:
    a = deploy(app, "a", namespace="team-a")["deployments"][0]["id"]
    b = deploy(app, "b", namespace="team-b")["deployments"][0]["id"]
    wait_status(app, a, "running")
    wait_status(app, b, "running")
    with app.websocket_connect("/v1/events?since=0&namespace=team-b&heartbeat=0.2") as ws:
        got = read_until(ws, "deployment.running")
    assert {e["namespace"] for e in got} == {"team-b"}
    with app.websocket_connect(f"/v1/events?since=0&deployment={a}&heartbeat=0.2") as ws:
        got = read_until(ws, "deployment.running")
    assert {e["deploymentId"] for e in got} == {a}
    assert [e["type"] for e in got] == TO_RUNNING


def test_events_survive_a_platform_restart(
    make_app: Any, a3s_plugins: Any, register_plugin: Any
) -> None:
    register_plugin(a3s_plugins, TinySizing(), "events-tiny-sizing")
    before = make_app()
    dep = deploy(before, "chat")["deployments"][0]["id"]
    wait_status(before, dep, "running")
    with before.websocket_connect(f"/v1/deployments/{dep}/events?heartbeat=0.2") as ws:
        old = read_until(ws, "deployment.running")
    before.__exit__(None, None, None)  # stop the platform; same data dir below
    after = make_app()
    with after.websocket_connect(f"/v1/deployments/{dep}/events?heartbeat=0.2") as ws:
        again = read_until(ws, "deployment.running")
    assert again == old
    after.post(f"/v1/deployments/{dep}/scale", json={"replicas": 2})
    with after.websocket_connect(f"/v1/events?since={old[-1]['seq']}") as ws:
        new = ws.receive_json()
    assert new["seq"] > old[-1]["seq"], "seq must continue after a restart, not restart"


def test_unknown_deployment_and_bad_parameters_are_refused_before_upgrade(app: Any) -> None:
    denied = refused(app, "/v1/deployments/dep-nope/events")
    assert denied.status_code == 404
    assert "dep-nope" in denied.json()["error"]["message"]
    for query, field in [
        ("since=-1", "since"),
        ("since=abc", "since"),
        ("follow=maybe", "follow"),
        ("heartbeat=0", "heartbeat"),
    ]:
        denied = refused(app, f"/v1/events?{query}")
        assert denied.status_code == 422
        err = denied.json()["error"]
        assert err["details"][0]["field"] == field
        assert query.split("=")[1] in err["message"]


def test_a_slow_client_is_told_where_to_resume(app: Any) -> None:
    platform = app.app.state.platform
    bus = platform.bus
    bus.queue_size = 5

    def burst() -> None:  # on the app's loop: no delivery can run until all are queued
        for i in range(20):
            bus.emit("test.burst", f"burst {i}", namespace="team-ai")

    start = platform.store.last_seq()
    with app.websocket_connect("/v1/events?namespace=team-ai") as ws:
        while bus.live_subscriber_count < 1:  # past its (empty) backlog, reading live
            time.sleep(0.01)
        app.portal.call(burst)
        got: list[dict[str, Any]] = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                got.append(ws.receive_json())
    assert closed.value.code == 1013
    overflow = got[-1]
    assert overflow["type"] == "stream.overflow"
    resume = overflow["resumeFrom"]
    assert f"since={resume}" in overflow["message"] and f"since={resume}" in closed.value.reason
    delivered = [e["seq"] for e in got[:-1]]
    assert resume == (delivered[-1] if delivered else start)
    bus.queue_size = 1000
    with app.websocket_connect(f"/v1/events?namespace=team-ai&since={resume}") as ws:
        rest = [ws.receive_json() for _ in range(20 - len(delivered))]
    assert [e["message"] for e in got[:-1] + rest] == [f"burst {i}" for i in range(20)]
