"""The pure decision with a fake clock: every seed rule, both cool-downs, the 5-minute
empty queue, floor and ceiling, the proportional step, unknown figures, unplaceable
replicas and manual scaling."""

from __future__ import annotations

from typing import Any

import pytest

from a3s_core.contracts import ScalingRule
from a3s_core.scaling import Decision, FakeClock, ScalingState, Situation, decide
from a3s_core.scaling.default_rules import BUILT_IN_RULES
from a3s_core.types import AutoscalingSpec, ScalingSignals, Vote

RULES = [cls() for cls in BUILT_IN_RULES]
QUIET: dict[str, Any] = {"gpu": 10.0, "queue": 0.0, "p99": 0.2}
BUSY: dict[str, Any] = {"gpu": 50.0, "queue": 2.0, "p99": 1.0}  # between the thresholds


def signals(
    replicas: int = 1,
    gpu: float | None = 50.0,
    queue: float | None = 2.0,
    p99: float | None = 1.0,
    requests: int = 100,
) -> ScalingSignals:
    return ScalingSignals(
        replicas=replicas,
        gpu_utilization=gpu,
        queue_depth=queue,
        p99_latency_s=p99,
        requests_in_window=requests,
    )


class Scaler:
    """Feeds decisions back into the state, as the autoscaler does, on a fake clock."""

    def __init__(self, replicas: int = 1, policy: AutoscalingSpec | None = None, **kw: Any):
        self.clock = FakeClock()
        self.policy = policy or AutoscalingSpec(**kw)
        self.state = ScalingState()
        self.desired = replicas
        self.live: int | None = None  # None: all desired replicas are placed
        self.ready: int | None = None  # None: all placed replicas are ready
        self.unschedulable: str | None = None
        self.ceiling = self.policy.max_replicas
        self.rules: list[ScalingRule] = list(RULES)

    def step(self, after: float = 0.0, **sig: Any) -> Decision:
        self.clock.advance(after)
        live = self.desired if self.live is None else self.live
        ready = live if self.ready is None else self.ready
        d = decide(
            signals(replicas=ready, **sig),
            self.policy,
            self.state,
            self.clock.now(),
            self.rules,
            Situation(
                desired=self.desired,
                live=live,
                floor=max(1, self.policy.min_replicas),
                ceiling=self.ceiling,
                unschedulable=self.unschedulable,
            ),
        )
        self.state = d.state
        self.desired = d.to_replicas
        return d

    def quiet_for(self, seconds: float) -> Decision:
        """Quiet figures every 10 s for `seconds`; returns the last decision."""
        d = self.step(**QUIET)
        for _ in range(int(seconds // 10)):
            d = self.step(after=10, **QUIET)
        return d


# ---------------------------------------------------------------- scale-up conditions


@pytest.mark.parametrize(
    ("figures", "rule"),
    [
        ({"gpu": 85.0}, "gpu-utilization"),
        ({"queue": 11.0}, "queue-depth"),
        ({"p99": 2.5}, "latency-p99"),
    ],
    ids=["gpu>80", "queue>10", "p99>2s"],
)
def test_each_seed_up_condition_scales_up(figures: dict[str, Any], rule: str) -> None:
    s = Scaler()
    d = s.step(**{**BUSY, **figures})
    assert (d.action, d.event, d.from_replicas, d.to_replicas) == ("up", "scaling.up", 1, 2)
    (up,) = [v for v in d.votes if v.direction == "up"]
    assert up.rule == rule and up.reason in d.reason


@pytest.mark.parametrize(
    "figures", [{"gpu": 80.0}, {"queue": 10.0}, {"p99": 2.0}], ids=["gpu=80", "queue=10", "p99=2s"]
)
def test_thresholds_are_strict(figures: dict[str, Any]) -> None:
    d = Scaler().step(**{**BUSY, **figures})
    assert d.action == "hold" and d.event is None


def test_queue_threshold_is_per_ready_replica() -> None:
    s = Scaler(replicas=3)
    assert s.step(**{**BUSY, "queue": 30.0}).action == "hold"  # 10 per replica
    d = s.step(**{**BUSY, "queue": 33.0})
    assert d.action == "up" and "11.0 per replica" in d.reason


# ---------------------------------------------------------------- scale-down conditions


def test_scales_down_only_when_every_signal_is_quiet_for_the_queue_window() -> None:
    s = Scaler(replicas=3)
    d = s.quiet_for(290)
    assert d.action == "hold" and "queue empty for 290s of the 300s" in d.reason
    d = s.step(after=10, **QUIET)
    assert (d.action, d.event, d.to_replicas) == ("down", "scaling.down", 2)
    assert {v.direction for v in d.votes} == {"down"}
    assert "queue empty for 300s" in d.reason and "GPU utilisation 10% < 20%" in d.reason


@pytest.mark.parametrize(
    "noisy", [{"gpu": 25.0}, {"p99": 0.6}, {"queue": 1.0}], ids=["gpu", "p99", "queue"]
)
def test_one_busy_signal_blocks_the_scale_down(noisy: dict[str, Any]) -> None:
    s = Scaler(replicas=2)
    s.quiet_for(200)
    d = s.step(after=200, **{**QUIET, **noisy})
    assert d.action == "hold" and d.code == "steady" and d.event is None
    blocking = [v for v in d.votes if v.direction != "down"]
    assert len(blocking) == 1 and blocking[0].reason == d.reason


def test_queue_must_be_empty_five_minutes_without_a_break() -> None:
    s = Scaler(replicas=2)
    s.quiet_for(250)
    s.step(after=10, **{**QUIET, "queue": 1.0})  # one waiting request restarts the streak
    d = s.quiet_for(290)
    assert d.action == "hold" and d.signals.queue_zero_for_s == 290
    assert s.step(after=10, **QUIET).action == "down"


def test_unknown_queue_breaks_the_empty_streak() -> None:
    s = Scaler(replicas=2)
    s.quiet_for(250)
    d = s.step(after=10, **{**QUIET, "queue": None})
    assert d.action == "hold" and "queue depth unknown" in d.reason
    assert s.step(after=60, **QUIET).signals.queue_zero_for_s == 0


def test_queue_zero_window_is_configurable() -> None:
    s = Scaler(replicas=2, queue_zero_for_s=30, down_cooldown_s=0)
    assert s.quiet_for(20).action == "hold"
    assert s.step(after=10, **QUIET).action == "down"


# ---------------------------------------------------------------- unknown figures


def test_no_traffic_counts_as_quiet_latency_and_unknown_gpu_does_not_block() -> None:
    s = Scaler(replicas=2)
    s.quiet_for(290)
    d = s.step(after=10, gpu=None, queue=0.0, p99=None, requests=0)
    assert d.action == "down"
    reasons = {v.rule: v.reason for v in d.votes}
    assert reasons["latency-p99"] == "no requests in the latency window"
    assert "GPU utilisation unknown" in reasons["gpu-utilization"]


def test_unknown_figures_never_scale_up_and_unknown_p99_with_traffic_holds() -> None:
    d = Scaler(replicas=2).step(gpu=None, queue=None, p99=None, requests=50)
    assert d.action == "hold"
    assert {v.rule: v.direction for v in d.votes} == {
        "gpu-utilization": "down",
        "queue-depth": "hold",
        "latency-p99": "hold",
    }


# ---------------------------------------------------------------- cool-downs


def test_scale_up_cooldown_holds_then_allows_and_announces_once() -> None:
    s = Scaler()
    assert s.step(gpu=95.0).to_replicas == 2
    held = s.step(after=30, gpu=95.0)
    assert (held.action, held.code, held.event) == ("hold", "cooldown-up", "scaling.held")
    assert held.up_cooldown_remaining_s == 30 and "30s left" in held.reason
    again = s.step(after=10, gpu=95.0)
    assert again.code == "cooldown-up" and again.event is None  # same reason: no new event
    assert s.step(after=19.5, gpu=95.0).code == "cooldown-up"
    d = s.step(after=0.5, gpu=95.0)
    assert (d.action, d.from_replicas, d.to_replicas) == ("up", 2, 3)


def test_scale_down_cooldown_counts_from_a_scale_up() -> None:
    s = Scaler(queue_zero_for_s=30)  # the queue rule is satisfied early; the cool-down holds
    s.step(gpu=95.0)  # up to 2 at t=0
    d = s.quiet_for(30)  # the queue has been empty 30 s: only the cool-down holds now
    assert (d.action, d.code, d.event) == ("hold", "cooldown-down", "scaling.held")
    assert d.down_cooldown_remaining_s == 270
    d = s.step(after=269, **QUIET)
    assert (d.code, d.event) == ("cooldown-down", None)
    d = s.step(after=1, **QUIET)
    assert (d.action, d.to_replicas) == ("down", 1)


def test_scale_down_cooldown_holds_a_second_step_down() -> None:
    s = Scaler(replicas=3)
    first = s.quiet_for(300)
    assert (first.action, first.to_replicas) == ("down", 2)
    held = s.step(after=60, **QUIET)
    assert (held.code, held.event) == ("cooldown-down", "scaling.held")
    assert held.down_cooldown_remaining_s == 240
    assert s.step(after=230, **QUIET).event is None  # still the same reason
    d = s.step(after=10, **QUIET)
    assert (d.action, d.to_replicas) == ("down", 1)


def test_up_after_a_scale_down_is_not_delayed() -> None:
    s = Scaler(replicas=2)
    assert s.quiet_for(300).action == "down"
    d = s.step(after=1, gpu=95.0)
    assert (d.action, d.to_replicas) == ("up", 2)


# ---------------------------------------------------------------- floor and ceiling


def test_floor_of_one_replica() -> None:
    s = Scaler(replicas=1)
    d = s.quiet_for(3600)
    assert (d.action, d.code, d.event, d.to_replicas) == ("hold", "floor", None, 1)


def test_floor_is_min_replicas_and_a_lower_count_is_raised() -> None:
    s = Scaler(replicas=1, min_replicas=2, max_replicas=4)
    d = s.step(**QUIET)
    assert (d.action, d.code, d.to_replicas) == ("up", "below-floor", 2)
    d = s.quiet_for(3600)
    assert (d.code, d.to_replicas) == ("floor", 2)


def test_ceiling_holds_and_says_so_once() -> None:
    s = Scaler(replicas=4, max_replicas=4)
    d = s.step(gpu=99.0)
    assert (d.action, d.code, d.event) == ("hold", "ceiling", "scaling.held")
    assert "maximum (4)" in d.reason
    assert s.step(after=5, gpu=99.0).event is None


def test_platform_ceiling_below_the_policy_maximum() -> None:
    s = Scaler(replicas=2, max_replicas=8)
    s.ceiling = 3  # A3S_MAX_REPLICAS
    assert s.step(gpu=100.0, queue=90.0).to_replicas == 3


def test_count_above_the_ceiling_is_not_forced_down_but_drifts_down_when_quiet() -> None:
    s = Scaler(replicas=6, max_replicas=4)
    assert s.step(gpu=99.0).code == "ceiling"
    assert s.quiet_for(300).to_replicas == 5


# ---------------------------------------------------------------- proportional step


def test_proportional_step_follows_the_largest_up_vote() -> None:
    s = Scaler(replicas=2, max_replicas=16, max_step=8)
    d = s.step(gpu=100.0, queue=50.0, p99=1.0)  # gpu wants ceil(2×100/80)=3, queue 5
    assert d.to_replicas == 5
    assert {v.rule: v.desired for v in d.votes if v.direction == "up"} == {
        "gpu-utilization": 3,
        "queue-depth": 5,
    }


def test_proportional_step_is_bounded_by_max_step_and_ceiling() -> None:
    assert Scaler(replicas=1, max_replicas=16, max_step=2).step(queue=100.0).to_replicas == 3
    assert Scaler(replicas=1, max_replicas=3, max_step=8).step(queue=100.0).to_replicas == 3


def test_latency_step_is_proportional() -> None:
    d = Scaler(replicas=2, max_replicas=16, max_step=8).step(p99=5.0)
    assert d.to_replicas == 5  # ceil(2 × 5 / 2)


def test_scale_down_is_one_step() -> None:
    s = Scaler(replicas=4, max_step=4)
    assert s.quiet_for(300).to_replicas == 3


# ---------------------------------------------------------------- placement


def test_no_further_scale_up_while_a_replica_starts() -> None:
    s = Scaler(replicas=2)
    s.ready = 1
    d = s.step(after=120, gpu=95.0)
    assert (d.code, d.event) == ("starting", "scaling.held") and "1 of 2 ready" in d.reason


def test_unschedulable_scale_up_is_announced_once_and_not_retried() -> None:
    s = Scaler(replicas=1, up_cooldown_s=0)
    assert s.step(gpu=95.0).to_replicas == 2
    s.live, s.ready = 1, 1  # the controller could not place replica 2
    s.unschedulable = "needs 2× A100-80GB; the cluster has 0 free"
    d = s.step(after=5, gpu=95.0)
    assert (d.action, d.code, d.event, d.to_replicas) == (
        "hold",
        "unschedulable",
        "scaling.held",
        2,
    )
    assert "replica 2 cannot be placed: needs 2× A100-80GB" in d.reason
    for _ in range(10):  # hot for another 50 s: no new event, no larger count
        d = s.step(after=5, gpu=95.0)
        assert (d.code, d.event, d.to_replicas) == ("unschedulable", None, 2)
    s.unschedulable = "needs 2× A100-80GB; node gpu-0 is cordoned"  # the cluster changed
    assert s.step(after=5, gpu=95.0).event == "scaling.held"


def test_unplaceable_replica_is_cancelled_when_load_no_longer_calls_for_it() -> None:
    s = Scaler(replicas=1)
    s.step(gpu=95.0)
    s.live = s.ready = 1
    s.unschedulable = "no free GPU"
    d = s.step(after=30, **BUSY)
    assert (d.action, d.code, d.to_replicas, d.clear_unschedulable) == (
        "down",
        "cancel-unplaceable",
        1,
        True,
    )
    assert d.state.last_down_at is None  # nothing stopped: the down cool-down is untouched


def test_stale_unschedulable_note_is_cleared_once_all_are_placed() -> None:
    s = Scaler(replicas=2)
    s.unschedulable = "no free GPU"
    d = s.step(**BUSY)
    assert d.action == "hold" and d.clear_unschedulable


# ---------------------------------------------------------------- manual scale


def test_manual_scale_restarts_the_cooldowns_and_the_autoscaler_continues_from_it() -> None:
    s = Scaler(replicas=1, queue_zero_for_s=30)
    s.step(**BUSY)
    s.desired = 3  # POST /scale {"replicas": 3}
    d = s.step(after=10, **QUIET)
    assert d.state.manual_at == s.clock.now() and d.down_cooldown_remaining_s == 300
    d = s.quiet_for(290)
    assert (d.code, d.to_replicas) == ("cooldown-down", 3)
    d = s.step(after=10, **QUIET)
    assert (d.action, d.from_replicas, d.to_replicas) == ("down", 3, 2)


def test_manual_scale_delays_a_scale_up_by_the_up_cooldown() -> None:
    s = Scaler(replicas=2)
    s.step(**BUSY)
    s.desired = 1
    d = s.step(after=5, gpu=95.0)
    assert d.code == "cooldown-up" and d.up_cooldown_remaining_s == 60
    assert s.step(after=60, gpu=95.0).to_replicas == 2


def test_a_cooldown_started_by_hand_is_respected_without_a_held_event() -> None:
    """The user who just scaled sees scaling.manual, not a 'held' event after it; the
    decision (shown by the API) still says why, and the autoscaler's own cool-downs are
    still announced."""
    s = Scaler(replicas=1, queue_zero_for_s=30)
    s.step()
    s.desired = 2  # POST /scale {"replicas": 2}
    d = s.step(after=1, gpu=95.0)
    assert (d.action, d.code, d.event) == ("hold", "cooldown-up", None)
    assert "cool-down after the manual scale to 2 replica(s) has 60s left" in d.reason
    d = s.quiet_for(120)
    assert (d.action, d.code, d.event) == ("hold", "cooldown-down", None)
    assert "after the manual scale" in d.reason
    # Once the autoscaler moves, the cool-down is its own again: announced as before.
    d = s.step(after=200, gpu=95.0)
    assert (d.action, d.to_replicas) == ("up", 3)
    d = s.step(after=5, gpu=95.0)
    assert (d.code, d.event) == ("cooldown-up", "scaling.held")
    assert "manual" not in d.reason


# ---------------------------------------------------------------- rules from plugins


def test_a_broken_rule_holds_and_never_raises() -> None:
    class Broken(ScalingRule):
        name = "broken"

        def vote(self, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
            raise ZeroDivisionError("boom")

    s = Scaler(replicas=2)
    s.rules = [*RULES, Broken()]
    d = s.quiet_for(600)
    assert d.action == "hold" and "rule 'broken' failed: ZeroDivisionError: boom" in d.reason


def test_no_rules_hold() -> None:
    s = Scaler(replicas=2)
    s.rules = []
    assert s.step(gpu=99.0).code == "no-rules"


def test_decide_does_not_mutate_its_input_state() -> None:
    state = ScalingState()
    decide(
        signals(gpu=95.0),
        AutoscalingSpec(),
        state,
        1000.0,
        RULES,
        Situation(desired=1, live=1, ceiling=4),
    )
    assert state == ScalingState()
