"""Issue 18, part 2: after a burst ends, the latency rule alone never scales up from the
P99 the burst left in the window while the queue is empty and nothing is in flight; a high
P99 needs live traffic and enough requests answered since the last scaling change, and the
proportional count uses that recent figure."""

from __future__ import annotations

import time
from typing import Any

from a3s_core.gateway.latency import LatencyWindow
from a3s_core.scaling import FakeClock, ScalingState, Situation, decide
from a3s_core.scaling.autoscaler import Autoscaler
from a3s_core.scaling.default_rules import BUILT_IN_RULES
from a3s_core.types import AutoscalingSpec, ScalingSignals

RULES = [cls() for cls in BUILT_IN_RULES]
POLICY = AutoscalingSpec(max_replicas=4)  # the issue's deployment: seed defaults otherwise


def votes(d: Any) -> dict[str, tuple[str, str]]:
    return {v.rule: (v.direction, v.reason) for v in d.votes}


def test_the_issues_burst_no_scale_up_from_the_stale_p99_when_the_cooldown_ends() -> None:
    clock = FakeClock()
    t0 = clock.now()
    # A burst of 20 requests on one replica: the queue rule scales 1 → 2 at once.
    burst = ScalingSignals(replicas=1, gpu_utilization=None, queue_depth=19.0,
                           p99_latency_s=None, requests_in_window=20, in_flight=20)
    d = decide(burst, POLICY, ScalingState(), t0, RULES,
               Situation(desired=1, live=1, ceiling=4))
    assert (d.action, d.to_replicas) == ("up", 2)
    state = d.state
    # 61 s later the cool-down has ended; the last request ended at 16 s. The window still
    # holds the burst's P99 of 15.8 s, the queue is empty and nothing is in flight.
    for recent in (None, 14):  # a source that does not count recent answers, and one that does
        after = ScalingSignals(replicas=2, gpu_utilization=0.0, queue_depth=0.0,
                               p99_latency_s=15.8, requests_in_window=20, in_flight=0,
                               recent_p99_latency_s=None if recent is None else 15.8,
                               recent_requests=recent)
        late = decide(after, POLICY, state, t0 + 61, RULES,
                      Situation(desired=2, live=2, ceiling=4))
        assert (late.action, late.to_replicas) == ("hold", 2), late.reason
        direction, reason = votes(late)["latency-p99"]
        assert direction == "hold"
        assert "nothing in flight and the queue is empty" in reason


def test_a_high_p99_needs_enough_requests_answered_since_the_last_change() -> None:
    clock = FakeClock()
    live = {"replicas": 2, "gpu_utilization": 50.0, "queue_depth": 1.0, "p99_latency_s": 15.8,
            "requests_in_window": 40, "in_flight": 3}
    few = ScalingSignals(**live, recent_p99_latency_s=6.0, recent_requests=3)
    d = decide(few, POLICY, ScalingState(), clock.now(), RULES,
               Situation(desired=2, live=2, ceiling=4))
    assert d.action == "hold"
    assert "only 3 request(s) answered since the last scaling change (needs 10)" in (
        votes(d)["latency-p99"][1]
    )
    # Requests since the change are fast: the window's old P99 is not a reason to grow.
    calm = ScalingSignals(**live, recent_p99_latency_s=0.8, recent_requests=30)
    d = decide(calm, POLICY, ScalingState(), clock.now(), RULES,
               Situation(desired=2, live=2, ceiling=4))
    assert d.action == "hold" and "have P99 800 ms" in votes(d)["latency-p99"][1]
    # Enough recent answers, slow: proportional to the recent P99, not the window's.
    slow = ScalingSignals(**live, recent_p99_latency_s=3.0, recent_requests=12)
    d = decide(slow, AutoscalingSpec(max_replicas=16, max_step=8), ScalingState(),
               clock.now(), RULES, Situation(desired=2, live=2, ceiling=16))
    assert (d.action, d.to_replicas) == ("up", 3)  # ceil(2 × 3.0 / 2), not ceil(2 × 15.8 / 2)
    assert votes(d)["latency-p99"] == ("up", "P99 latency 3.00 s > 2.00 s over 12 request(s)")


def test_the_window_counts_only_samples_since_a_time() -> None:
    w = LatencyWindow(window_s=60)
    for i in range(10):
        w.add(float(i), now=100.0 + i)
    assert w.values(now=110.0, since=105.0) == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert len(w.values(now=110.0)) == 10
    assert w.values(now=170.0, since=105.0) == []  # the window ends before `since` counts


def test_autoscaler_on_the_gateways_figures_holds_after_a_burst(make_app: Any) -> None:
    """The real signal path: gateway windows, its in-flight count, the stored state."""
    client = make_app(autoscale_interval_s=3600)
    platform = client.app.state.platform
    body = {"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct",
                        "autoscaling": {"maxReplicas": 4}}]}
    dep_id = client.post("/v1/deployments", json=body).json()["deployments"][0]["id"]
    deadline = time.monotonic() + 20
    while client.get(f"/v1/deployments/{dep_id}").json()["status"] != "running":
        assert time.monotonic() < deadline, "the deployment never ran"
        time.sleep(0.05)
    clock = FakeClock(start=time.time())
    scaler = Autoscaler(platform, clock=clock)
    # The queue rule scaled up 61 s ago; the burst's answers came 60–45 s ago.
    scaler._states[dep_id] = ScalingState(last_up_at=clock.now() - 61, seen_desired=1)
    stats = platform.gateway.book.deployment(dep_id)
    mono = time.monotonic()
    for i in range(20):
        stats.arrivals.add(0.0, now=mono - 59 + i * 0.5)
    for i in range(20):
        stats.first_byte.add(0.5 + i * 0.8, now=mono - 58 + i * 0.7)
    d = client.portal.call(scaler.tick)[dep_id]
    assert d.signals.in_flight == 0 and d.signals.queue_depth == 0.0
    assert d.signals.p99_latency_s is not None and d.signals.p99_latency_s > 15
    assert (d.action, d.to_replicas) == ("hold", 1), d.reason
    assert platform.store.get_deployment(dep_id).desired_replicas == 1
    assert "nothing in flight" in votes(d)["latency-p99"][1]

    # Live traffic again, but every answer in the window predates the last change.
    scaler._states[dep_id] = scaler._states[dep_id].model_copy(
        update={"last_up_at": clock.now() - 30}
    )
    (replica,) = platform.store.replicas(dep_id)
    deadline = time.monotonic() + 10
    while replica.id not in platform.gateway.book.replicas:
        assert time.monotonic() < deadline, "the gateway never saw the replica"
        time.sleep(0.05)
    platform.gateway.book.replicas[replica.id].in_flight = 4
    try:
        d = client.portal.call(scaler.tick)[dep_id]
        assert d.signals.in_flight == 4 and d.signals.recent_requests == 0
        assert d.action == "hold" and "only 0 request(s) answered since" in (
            votes(d)["latency-p99"][1]
        )
    finally:
        platform.gateway.book.replicas[replica.id].in_flight = 0
