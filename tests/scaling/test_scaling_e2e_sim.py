"""End to end on the `sim` runtime: real simulator replicas behind the gateway, the real
autoscaling loop on the real clock. Concurrent requests build an engine queue until the
deployment scales up; when the load stops it scales back down to one replica, and the
event stream tells the story in between.

The simulator is time-scaled (every simulated delay × 0.05) and the deployment's
`autoscaling` block shortens the cool-downs and the empty-queue window to about a second.
The gateway's P99 window is 60 s of wall time, which time-scaling does not shorten, so the
latency thresholds are put out of reach here; the latency rule has its own unit tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from a3s_core.api import autoscaling as autoscaling_api
from a3s_core.plugins import Plugins

pytest.importorskip("a3s_runtime_sim")
pytest.importorskip("a3s_engine_sim")

AUTOSCALING = {
    "maxReplicas": 3,
    "queue_up": 2,  # waiting requests per replica
    "queue_zero_for_s": 1.0,
    "up_cooldown_s": 1.0,
    "down_cooldown_s": 1.5,
    "p99_up_s": 600.0,
    "p99_down_s": 500.0,
}


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def test_load_scales_up_and_quiet_scales_back_to_one(make_app: Any) -> None:
    client = make_app(
        plugins=Plugins(),  # the installed plugins: sim runtime, engines, balancers
        runtime="sim",
        runtime_options={"time_scale": 0.05, "max_num_seqs": 2, "stop_on_close": True},
        reconcile_interval_s=0.1,
        autoscale_interval_s=0.2,
        scrape_interval_s=0.2,
    )
    client.app.include_router(autoscaling_api.router)
    body = {
        "models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct", "autoscaling": AUTOSCALING}]
    }
    created = client.post("/v1/deployments", json=body)
    assert created.status_code == 202, created.text
    dep = created.json()["deployments"][0]
    dep_id, key = dep["id"], dep["apiKey"]

    def view() -> dict[str, Any]:
        return client.get(f"/v1/deployments/{dep_id}").json()  # type: ignore[no-any-return]

    def ready() -> int:
        d = view()
        return int(d["readyReplicas"]) if d["status"] == "running" else 0

    wait_until("the first replica", lambda: ready() == 1)

    stop = threading.Event()
    answered: list[int] = []

    def user() -> None:
        while not stop.is_set():
            r = client.post(
                "/d/default/q7/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "model": "q7",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 64,
                },
            )
            answered.append(r.status_code)

    users = [threading.Thread(target=user, daemon=True) for _ in range(24)]
    for u in users:
        u.start()
    try:
        wait_until("a scale-up to 3 ready replicas", lambda: ready() == 3, timeout=90)
        scaling = client.get(f"/v1/deployments/{dep_id}/autoscaling").json()
        assert scaling["replicas"]["desired"] == 3 and scaling["replicas"]["ceiling"] == 3
    finally:
        stop.set()
        for u in users:
            u.join(timeout=30)
    assert answered and set(answered) == {200}

    def back_to_one() -> bool:
        d = view()
        return d["desiredReplicas"] == 1 and [r["state"] for r in d["replicas"]] == ["ready"]

    wait_until("the scale-down to one replica", back_to_one, timeout=90)

    store = client.app.state.platform.store
    events = store.events_since(0, deployment_id=dep_id, limit=10_000)
    types = [e.type for e in events]
    ups = [e for e in events if e.type == "scaling.up"]
    downs = [e for e in events if e.type == "scaling.down"]
    assert ups and downs, types
    assert types.index("scaling.up") < types.index("replica.stopped") < len(types)
    assert max(e.data["to"] for e in ups) == 3
    assert [(e.data["from"], e.data["to"]) for e in downs] == [(3, 2), (2, 1)]
    for up in ups:  # each scale-up carries the figure that drove it, above its threshold
        sig, votes = up.data["signals"], [v for v in up.data["votes"] if v["direction"] == "up"]
        assert votes and up.data["reason"] == "; ".join(v["reason"] for v in votes)
        for v in votes:
            if v["rule"] == "queue-depth":
                assert sig["queueDepth"] > 2 * sig["replicas"]
            if v["rule"] == "gpu-utilization":
                assert sig["gpuUtilization"] > 80
    for down in downs:
        assert down.data["signals"]["queueDepth"] == 0
        assert down.data["signals"]["queueZeroForS"] >= 1.0
        assert {v["direction"] for v in down.data["votes"]} == {"down"}
    assert types.count("replica.stopped") == 2
    final = client.get(f"/v1/deployments/{dep_id}/autoscaling").json()
    assert final["lastDecision"]["action"] in ("down", "hold")
    assert final["replicas"]["desired"] == final["replicas"]["ready"] == 1
