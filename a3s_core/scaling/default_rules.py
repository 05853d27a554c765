"""The seed's scaling table (§3.7) as three built-in rules, registered like any plugin's.

| signal          | up      | down                 |
| GPU utilisation | > 80 %  | < 20 %               |
| queue depth     | > 10    | = 0 for 5 minutes    |
| P99 latency     | > 2 s   | < 500 ms             |

Any 'up' vote scales up; 'down' needs every rule to vote 'down'. Thresholds come from the
deployment's `autoscaling` block. An 'up' vote carries the HPA-style proportional count
`ceil(replicas × figure / threshold)`; the autoscaler bounds it.

Unknown figures (documented in docs/autoscaling.md):
- GPU utilisation unknown (no gauge: CPU replicas, no DCGM exporter) never votes up and
  does not block a scale-down: the queue and latency rules already prove quiet.
- Queue depth unknown blocks a scale-down (the queue must be *seen* empty for 5 minutes).
- P99 unknown because nothing was requested in the window is quiet; unknown with traffic
  (every request failed) blocks a scale-down.

A high P99 votes up only with live traffic behind it (something in flight or waiting) and
when taken from at least `p99_min_requests` requests answered since the last scaling
change; the proportional count uses that recent P99, never the window's older figures.
"""

from __future__ import annotations

import math

from a3s_core import hookimpl
from a3s_core.contracts import ScalingRule
from a3s_core.registry import ScalingRuleRegistry
from a3s_core.types import AutoscalingSpec, ScalingSignals, Vote


def proportional(replicas: int, figure: float, target: float) -> int:
    """HPA's formula: the count that would bring `figure` back to `target` per replica."""
    base = max(replicas, 1)
    if target <= 0:
        return base + 1
    return max(base + 1, math.ceil(base * figure / target))


class GpuUtilizationRule(ScalingRule):
    name = "gpu-utilization"

    def vote(self, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
        util = signals.gpu_utilization
        if util is None:
            return Vote(
                rule=self.name,
                direction="down",
                reason="GPU utilisation unknown (no gauge); the queue and latency rules decide",
            )
        if util > policy.gpu_util_up:
            return Vote(
                rule=self.name,
                direction="up",
                reason=f"GPU utilisation {util:.0f}% > {policy.gpu_util_up:g}%",
                desired=proportional(signals.replicas, util, policy.gpu_util_up),
            )
        if util < policy.gpu_util_down:
            return Vote(
                rule=self.name,
                direction="down",
                reason=f"GPU utilisation {util:.0f}% < {policy.gpu_util_down:g}%",
            )
        return Vote(
            rule=self.name,
            direction="hold",
            reason=f"GPU utilisation {util:.0f}% is within "
            f"{policy.gpu_util_down:g}–{policy.gpu_util_up:g}%",
        )


class QueueDepthRule(ScalingRule):
    """Compares waiting requests *per ready replica* with the threshold, so that adding a
    replica lowers the figure (the summed queue of 4 replicas is not 4× as urgent)."""

    name = "queue-depth"

    def vote(self, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
        queue = signals.queue_depth
        if queue is None:
            return Vote(
                rule=self.name,
                direction="hold",
                reason="queue depth unknown (no fresh engine metrics)",
            )
        per_replica = queue / max(signals.replicas, 1)
        if per_replica > policy.queue_up:
            return Vote(
                rule=self.name,
                direction="up",
                reason=f"queue depth {per_replica:.1f} per replica > {policy.queue_up:g} "
                f"({queue:g} waiting on {signals.replicas} replica(s))",
                desired=proportional(signals.replicas, per_replica, policy.queue_up),
            )
        if queue > 0:
            return Vote(
                rule=self.name,
                direction="hold",
                reason=f"queue depth {queue:g} (not empty)",
            )
        if signals.queue_zero_for_s >= policy.queue_zero_for_s:
            return Vote(
                rule=self.name,
                direction="down",
                reason=f"queue empty for {signals.queue_zero_for_s:.0f}s "
                f"(≥ {policy.queue_zero_for_s:g}s)",
            )
        return Vote(
            rule=self.name,
            direction="hold",
            reason=f"queue empty for {signals.queue_zero_for_s:.0f}s of the "
            f"{policy.queue_zero_for_s:g}s needed",
        )


class LatencyP99Rule(ScalingRule):
    name = "latency-p99"

    def vote(self, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
        p99 = signals.p99_latency_s
        if p99 is None:
            if signals.requests_in_window == 0:
                return Vote(
                    rule=self.name,
                    direction="down",
                    reason="no requests in the latency window",
                )
            return Vote(
                rule=self.name,
                direction="hold",
                reason=f"P99 unknown although {signals.requests_in_window} request(s) arrived",
            )
        if p99 > policy.p99_up_s:
            return self._up(p99, signals, policy)
        if p99 < policy.p99_down_s:
            return Vote(
                rule=self.name,
                direction="down",
                reason=f"P99 latency {_ms(p99)} < {_ms(policy.p99_down_s)}",
            )
        return Vote(
            rule=self.name,
            direction="hold",
            reason=f"P99 latency {_ms(p99)} is within "
            f"{_ms(policy.p99_down_s)}–{_ms(policy.p99_up_s)}",
        )


    def _up(self, p99: float, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
        """A high P99 scales up only with live traffic behind it: the window outlives the
        burst that filled it, and a figure from requests answered before the last scaling
        change describes a deployment that no longer exists."""
        high = f"P99 latency {_ms(p99)} > {_ms(policy.p99_up_s)}"
        if signals.in_flight == 0 and signals.queue_depth == 0:
            return Vote(
                rule=self.name,
                direction="hold",
                reason=f"{high}, but from finished requests: nothing in flight and the "
                "queue is empty",
            )
        recent, count = signals.recent_p99_latency_s, signals.recent_requests
        if count is None:  # a source that does not count recent answers: the window stands
            recent, count = p99, signals.requests_in_window
        if count < policy.p99_min_requests:
            return Vote(
                rule=self.name,
                direction="hold",
                reason=f"{high}, but only {count} request(s) answered since the last "
                f"scaling change (needs {policy.p99_min_requests})",
            )
        if recent is None or recent <= policy.p99_up_s:
            return Vote(
                rule=self.name,
                direction="hold",
                reason=f"{high} over the window, but the {count} request(s) answered since "
                f"the last scaling change have P99 {_ms(recent or 0.0)}",
            )
        return Vote(
            rule=self.name,
            direction="up",
            reason=f"P99 latency {_ms(recent)} > {_ms(policy.p99_up_s)} "
            f"over {count} request(s)",
            desired=proportional(signals.replicas, recent, policy.p99_up_s),
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


BUILT_IN_RULES: tuple[type[ScalingRule], ...] = (GpuUtilizationRule, QueueDepthRule, LatencyP99Rule)


# tryfirst: the built-ins must be in the registry before any plugin's implementation runs,
# so that a plugin can `registry.replace` or `registry.remove` them.
@hookimpl(tryfirst=True)
def a3s_register_scaling_rules(registry: ScalingRuleRegistry) -> None:
    for rule in BUILT_IN_RULES:
        registry.register(rule)
