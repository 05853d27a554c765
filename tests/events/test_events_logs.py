"""Replica logs over WebSocket: every replica of the deployment, merged, with replica id
and timestamp per line; `follow` streams new lines and picks up replicas started later."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from events_testkit import LogRuntimePlugin, TinySizing, deploy, refused, wait_status
from starlette.websockets import WebSocketDisconnect


@pytest.fixture
def plugins(a3s_plugins: Any, register_plugin: Any) -> Any:
    register_plugin(a3s_plugins, TinySizing(), "events-tiny-sizing")
    register_plugin(a3s_plugins, LogRuntimePlugin(), "events-log-runtime")
    return a3s_plugins


def read_lines(ws: Any, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        msg = ws.receive_json()
        if msg["type"] != "heartbeat":
            out.append(msg)
    return out


def test_tail_of_the_fake_runtime_then_close(make_app: Any, plugins: Any) -> None:
    app = make_app()
    dep = deploy(app, "chat", replicas=2)["deployments"][0]["id"]
    view = wait_status(app, dep, "running")
    while view["readyReplicas"] < 2:
        view = wait_status(app, dep, "running")
    replicas = {r["id"] for r in view["replicas"]}
    with app.websocket_connect(f"/v1/deployments/{dep}/logs?tail=10") as ws:
        lines = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                lines.append(ws.receive_json())
    assert closed.value.code == 1000
    assert {x["replica"] for x in lines} == replicas
    assert {(x["type"], x["line"]) for x in lines} == {("log", "fake engine log")}
    for x in lines:
        datetime.fromisoformat(x["ts"])


def test_follow_streams_new_lines_and_new_replicas(make_app: Any, plugins: Any) -> None:
    app = make_app(runtime="fake-logs")
    runtime = app.app.state.platform.runtime
    dep = deploy(app, "chat")["deployments"][0]["id"]
    first = wait_status(app, dep, "running")["replicas"][0]["id"]
    runtime.say(first, "loading weights")
    with app.websocket_connect(f"/v1/deployments/{dep}/logs?tail=10&follow=true") as ws:
        got = read_lines(ws, 2)
        assert [(x["replica"], x["line"]) for x in got] == [
            (first, f"starting {first}"),
            (first, "loading weights"),
        ]
        runtime.say(first, "ready to serve")
        assert read_lines(ws, 1)[0]["line"] == "ready to serve"
        app.post(f"/v1/deployments/{dep}/scale", json={"replicas": 2})
        deadline = time.monotonic() + 20
        while len(runtime.replicas) < 2:
            assert time.monotonic() < deadline, "the second replica never started"
            time.sleep(0.02)
        second = next(r for r in runtime.replicas if r != first)
        runtime.say(second, "second replica up")
        got = read_lines(ws, 2)  # its start line (from before it was seen) and the new one
        assert [(x["replica"], x["line"]) for x in got] == [
            (second, f"starting {second}"),
            (second, "second replica up"),
        ]


def test_tail_limits_the_history(make_app: Any, plugins: Any) -> None:
    app = make_app(runtime="fake-logs")
    runtime = app.app.state.platform.runtime
    dep = deploy(app, "chat")["deployments"][0]["id"]
    rid = wait_status(app, dep, "running")["replicas"][0]["id"]
    for i in range(5):
        runtime.say(rid, f"line {i}")
    with app.websocket_connect(f"/v1/deployments/{dep}/logs?tail=2") as ws:
        assert [x["line"] for x in read_lines(ws, 2)] == ["line 3", "line 4"]
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


def test_logs_of_unknown_deployment_or_bad_tail_are_refused(make_app: Any, plugins: Any) -> None:
    app = make_app()
    denied = refused(app, "/v1/deployments/dep-nope/logs")
    assert denied.status_code == 404
    dep = deploy(app, "chat")["deployments"][0]["id"]
    denied = refused(app, f"/v1/deployments/{dep}/logs?tail=-3")
    assert denied.status_code == 422
    assert denied.json()["error"]["details"][0] == {
        "field": "tail",
        "value": "-3",
        "message": "tail: must be an integer from 0 to 100000 (got '-3')",
    }
