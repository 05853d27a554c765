"""Two platform instances on one store and one simulated cluster, the second a follower
(no controllers): it shows the cluster as the leader does, per-GPU utilisation included,
and a log stream followed on it gets every line up to the deployment's deletion, then
ends cleanly."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from a3s_core.plugins import Plugins, build_plugin_manager

BODY = {"models": [{"name": "qwen", "model": "Qwen/Qwen2.5-7B-Instruct", "engine": "vllm"}]}
CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}


@pytest.fixture(params=["sqlite", "postgres"])
def pair(
    request: pytest.FixtureRequest, make_app: Callable[..., Any], tmp_path: Path
) -> tuple[Any, Any]:
    """(leader, follower) on one store and one state dir: SQLite with the controllers off
    in the second, or PostgreSQL with both campaigning (the second loses the election)."""
    store: dict[str, Any] = {}
    if request.param == "postgres":
        store["database_url"] = request.getfixturevalue("pg_url")  # skips without one

    def start(n: int, **extra: Any) -> Any:
        return make_app(
            plugins=Plugins(build_plugin_manager()), runtime="sim",
            data_dir=tmp_path / f"a3s-{n}", **store, **extra,
            runtime_options={"time_scale": 0.05, "state_dir": str(tmp_path / "sim"),
                             "stop_timeout_s": 3, "utilization_ttl_s": 0},
        )

    if request.param == "sqlite":
        store["database_url"] = f"sqlite:///{tmp_path / 'a3s.db'}"
        leader, follower = start(0), start(1, controllers=False)
    else:
        leader, follower = start(0), start(1)
    assert leader.get("/v1/system").json()["controllers"]["leading"] is True
    assert follower.get("/v1/system").json()["controllers"]["leading"] is False
    return leader, follower


def running(client: Any, dep_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/v1/deployments/{dep_id}").json()
        if view["status"] == "running" and view["readyReplicas"] == 1:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.05)


def busy_gpus(cluster: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(n["name"], g["index"]): g for n in cluster["nodes"] for g in n["gpus"]
            if g["replica"]}


def test_a_follower_shows_the_leaders_gpu_figures(pair: tuple[Any, Any]) -> None:
    leader, follower = pair
    dep = leader.post("/v1/deployments", json=BODY).json()["deployments"][0]
    replica = running(leader, dep["id"])["replicas"][0]["id"]
    key = {"Authorization": f"Bearer {dep['apiKey']}"}
    assert leader.post("/d/default/qwen/v1/chat/completions", headers=key,
                       json=CHAT).status_code == 200  # the engine's GPU has worked
    views = [c.get("/v1/cluster").json() for c in (leader, follower)]
    mine = [busy_gpus(v) for v in views]
    assert mine[0] and mine[0].keys() == mine[1].keys()
    for where, gpu in mine[1].items():
        assert gpu["replica"] == replica, where
        # the simulator's framebuffer gauge: weights and KV cache, never 0 while it runs
        assert gpu["memoryUsedBytes"] > 0, (where, gpu)
        assert gpu["memoryUsedBytes"] == mine[0][where]["memoryUsedBytes"], where
        assert gpu["utilization"] is not None
    for v in views:
        busy = [n for n in v["nodes"] if any(g["replica"] for g in n["gpus"])]
        assert busy and all(n["utilization"] is not None for n in busy)
    # The shared cluster outlives the platform (as a real one does): stop its engine here,
    # or it runs on until its orphan timeout.
    assert leader.delete(f"/v1/deployments/{dep['id']}").status_code == 202
    deadline = time.monotonic() + 30
    while leader.get(f"/v1/deployments/{dep['id']}").json()["status"] != "deleted":
        assert time.monotonic() < deadline, "the deployment was not deleted"
        time.sleep(0.05)


def test_following_logs_on_a_follower_gets_the_last_lines_then_ends(
    pair: tuple[Any, Any],
) -> None:
    leader, follower = pair
    dep = leader.post("/v1/deployments", json=BODY).json()["deployments"][0]
    running(leader, dep["id"])
    seen: list[dict[str, Any]] = []
    with follower.websocket_connect(
        f"/v1/deployments/{dep['id']}/logs?tail=5&follow=true&heartbeat=0.2"
    ) as ws:
        while not seen:  # the history arrived: the stream is under way
            msg = ws.receive_json()
            if msg["type"] == "log":
                seen.append(msg)
        assert leader.delete(f"/v1/deployments/{dep['id']}").status_code == 202
        deadline = time.monotonic() + 30
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                assert time.monotonic() < deadline, f"the stream never ended: {seen[-3:]}"
                seen.append(ws.receive_json())
    assert closed.value.code == 1000
    lines = [m["line"] for m in seen if m["type"] == "log"]
    assert lines[-1].endswith("shutting down"), lines[-3:]  # said on SIGTERM, at the delete
    assert seen[-1]["type"] == "log.end" and seen[-1]["reason"] == "deployment deleted"
    assert leader.get(f"/v1/deployments/{dep['id']}").json()["status"] == "deleted"
