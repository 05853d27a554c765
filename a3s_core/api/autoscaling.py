"""`GET /v1/deployments/{id}/autoscaling`: what the autoscaler sees and would do now.

Current signals, the thresholds in force, cool-down timers (seconds left), how long the
queue has been empty, the current evaluation (every rule's vote) and the last decision the
autoscaler took or announced.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from a3s_core.api.deps import Admin, PlatformDep
from a3s_core.api.schemas import Camel
from a3s_core.scaling import persist
from a3s_core.scaling.autoscaler import Autoscaler, policy_of
from a3s_core.scaling.decide import DecisionRecord, ScalingState, cooldowns
from a3s_core.types import AutoscalingSpec

router = APIRouter(prefix="/v1", dependencies=[Admin], tags=["autoscaling"])


class SignalsView(Camel):
    ready_replicas: int
    gpu_utilization: float | None = Field(description="mean percent over ready replicas")
    queue_depth: float | None = Field(description="waiting requests, summed over replicas")
    queue_depth_per_replica: float | None
    p99_latency_s: float | None
    requests_in_window: int
    in_flight: int | None = Field(description="requests being answered now")
    recent_p99_latency_s: float | None = Field(
        description="P99 of the requests answered since the last scaling change"
    )
    recent_requests: int | None = Field(description="requests behind recentP99LatencyS")
    queue_zero_for_s: float = Field(description="seconds the queue has been seen empty")


class ReplicaBounds(Camel):
    desired: int
    live: int = Field(description="placed replicas, starting or ready")
    ready: int
    floor: int
    ceiling: int = Field(description="min(autoscaling.maxReplicas, A3S_MAX_REPLICAS)")


class CooldownView(Camel):
    up_remaining_s: float
    down_remaining_s: float
    last_scale_up_at: datetime | None
    last_scale_down_at: datetime | None
    last_manual_scale_at: datetime | None


class VoteView(Camel):
    rule: str
    direction: str
    reason: str
    desired: int | None


class EvaluationView(Camel):
    action: str
    code: str
    to_replicas: int
    reason: str
    votes: list[VoteView]


class LastDecisionView(Camel):
    at: datetime
    action: str
    code: str
    event: str | None
    from_replicas: int
    to_replicas: int
    reason: str


class AutoscalingView(Camel):
    deployment_id: str
    name: str
    namespace: str
    status: str
    enabled: bool
    active: bool = Field(description="the autoscaler acts on it now (enabled and running)")
    thresholds: AutoscalingSpec
    replicas: ReplicaBounds
    signals: SignalsView | None
    cooldowns: CooldownView
    evaluation: EvaluationView | None = Field(description="what it would decide now")
    last_decision: LastDecisionView | None
    unschedulable: str | None = Field(description="why the last new replica could not be placed")


@router.get(
    "/deployments/{deployment_id}/autoscaling",
    response_model=AutoscalingView,
    response_model_by_alias=True,
    summary="The autoscaler's signals, thresholds, cool-downs and last decision",
)
async def get_autoscaling(platform: PlatformDep, deployment_id: str) -> AutoscalingView:
    dep = await run_in_threadpool(platform.store.get_deployment, deployment_id)
    replicas = await run_in_threadpool(platform.store.replicas, dep.id)
    scaler = platform.autoscaler or Autoscaler(platform)
    policy = policy_of(dep)
    state: ScalingState = scaler.state_of(dep)
    situation = scaler.situation(dep, replicas, policy)
    now = scaler.clock.now()
    live = dep.status not in ("deleting", "deleted", "failed")
    decision = await scaler.evaluate(dep, replicas, preview=True) if live else None
    up_left, down_left = cooldowns(state, policy, now)
    sig = decision.signals if decision is not None else None
    return AutoscalingView(
        deployment_id=dep.id,
        name=dep.name,
        namespace=dep.namespace,
        status=dep.status,
        enabled=policy.enabled,
        active=policy.enabled and dep.status == "running",
        thresholds=policy,
        replicas=ReplicaBounds(
            desired=dep.desired_replicas,
            live=situation.live,
            ready=sum(1 for r in replicas if r.state == "ready"),
            floor=situation.floor,
            ceiling=situation.ceiling,
        ),
        signals=None
        if sig is None
        else SignalsView(
            ready_replicas=sig.replicas,
            gpu_utilization=sig.gpu_utilization,
            queue_depth=sig.queue_depth,
            queue_depth_per_replica=None
            if sig.queue_depth is None
            else sig.queue_depth / max(sig.replicas, 1),
            p99_latency_s=sig.p99_latency_s,
            requests_in_window=sig.requests_in_window,
            in_flight=sig.in_flight,
            recent_p99_latency_s=sig.recent_p99_latency_s,
            recent_requests=sig.recent_requests,
            queue_zero_for_s=round(sig.queue_zero_for_s, 3),
        ),
        cooldowns=CooldownView(
            up_remaining_s=round(up_left, 3),
            down_remaining_s=round(down_left, 3),
            last_scale_up_at=_ts(state.last_up_at),
            last_scale_down_at=_ts(state.last_down_at),
            last_manual_scale_at=_ts(state.manual_at),
        ),
        evaluation=None
        if decision is None
        else EvaluationView(
            action=decision.action,
            code=decision.code,
            to_replicas=decision.to_replicas,
            reason=decision.reason,
            votes=[VoteView.model_validate(v.model_dump()) for v in decision.votes],
        ),
        last_decision=_last(state.last_decision),
        unschedulable=persist.unschedulable_of(dep),
    )


def _ts(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _last(r: DecisionRecord | None) -> LastDecisionView | None:
    if r is None:
        return None
    return LastDecisionView(
        at=datetime.fromtimestamp(r.at, UTC),
        action=r.action,
        code=r.code,
        event=r.event,
        from_replicas=r.from_replicas,
        to_replicas=r.to_replicas,
        reason=r.reason,
    )
