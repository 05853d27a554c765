"""Two platform processes on PostgreSQL, one running the controllers: a WebSocket on the
other sees the deployment's every step as it happens (LISTEN/NOTIFY), not on a poll."""

from __future__ import annotations

from typing import Any

from events_testkit import read_until

SMALL = {"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
# No test waits out a poll this long: what arrives in time was notified.
NO_POLL = {"events_poll_interval_s": 3600.0}


def test_a_follower_streams_the_leaders_events_as_they_happen(
    make_app: Any, pg_url: str
) -> None:
    leader = make_app(database_url=pg_url, **NO_POLL)
    follower = make_app(database_url=pg_url, controllers=False, **NO_POLL)
    start = follower.get("/v1/system").json()
    assert start["controllers"]["leading"] is False
    with follower.websocket_connect("/v1/events?heartbeat=0.2") as ws:  # live only
        dep = follower.post("/v1/deployments", json=SMALL).json()["deployments"][0]
        events = read_until(ws, "deployment.running", timeout=20)
    mine = [e for e in events if e["deploymentId"] == dep["id"]]
    types = [e["type"] for e in mine]
    assert types[0] == "deployment.accepted" and types[-1] == "deployment.running"
    assert "replica.ready" in types, types
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Everything after "accepted" was written by the leader's controller loops.
    assert leader.get(f"/v1/deployments/{dep['id']}").json()["status"] == "running"
