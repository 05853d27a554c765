"""The autoscaler's decision as a pure function: signals, policy, state and time in, a
decision (with the next state) out. No platform, no I/O, so every rule is testable with a
fake clock.

Rules of motion (seed §3.7, documented in docs/autoscaling.md):
- any rule voting 'up' scales up; 'down' needs every rule to vote 'down';
- up: at least one replica, at most the largest proportional count the 'up' votes ask for,
  bounded by `max_step` per decision and by the ceiling;
- down: one replica per decision (GPU replicas start slowly: be conservative);
- scale-up cool-down counts from the last scale-up (or manual change); scale-down
  cool-down counts from the last change of any kind, so a fresh replica is kept; a hold
  for a cool-down that a manual change started emits no event (the user just scaled);
- never below the floor (max(1, minReplicas)); a count below it is raised at once;
- while a replica is starting, or one cannot be placed, no further scale-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from a3s_core.contracts import ScalingRule
from a3s_core.types import AutoscalingSpec, ScalingSignals, Vote

Action = Literal["up", "down", "hold"]
EventType = Literal["scaling.up", "scaling.down", "scaling.held"]


class DecisionRecord(BaseModel):
    """What the autoscaler last did or announced (persisted, shown by the API)."""

    at: float
    action: Action
    code: str
    event: EventType | None
    from_replicas: int
    to_replicas: int
    reason: str


class ScalingState(BaseModel):
    """The autoscaler's own memory of one deployment, persisted under the `autoscaler`
    key of `DeploymentRow.autoscaling_state` (the controller owns `unschedulable`)."""

    model_config = ConfigDict(extra="ignore")

    last_up_at: float | None = None
    last_down_at: float | None = None
    manual_at: float | None = Field(None, description="when desired changed without us")
    queue_zero_since: float | None = None
    seen_desired: int | None = Field(None, description="desired replicas as we last saw it")
    announced: str | None = Field(None, description="the 'held' reason last announced")
    last_decision: DecisionRecord | None = None


class Situation(BaseModel):
    """What the store says about the deployment right now."""

    desired: int = Field(ge=0, description="desired_replicas")
    live: int = Field(ge=0, description="replicas placed (starting or ready)")
    floor: int = Field(1, ge=1)
    ceiling: int = Field(ge=1)
    unschedulable: str | None = Field(None, description="why the controller could not place")


class Decision(BaseModel):
    at: float
    action: Action
    code: str = Field(description="machine-readable reason, e.g. cooldown-up")
    event: EventType | None = Field(None, description="event to emit; None: nothing to say")
    from_replicas: int
    to_replicas: int
    reason: str
    votes: list[Vote]
    signals: ScalingSignals
    up_cooldown_remaining_s: float
    down_cooldown_remaining_s: float
    clear_unschedulable: bool = False
    state: ScalingState = Field(exclude=True, description="the state to persist")

    def record(self) -> DecisionRecord:
        return DecisionRecord(
            at=self.at,
            action=self.action,
            code=self.code,
            event=self.event,
            from_replicas=self.from_replicas,
            to_replicas=self.to_replicas,
            reason=self.reason,
        )

    @property
    def changes(self) -> bool:
        return self.to_replicas != self.from_replicas


def cooldowns(state: ScalingState, policy: AutoscalingSpec, now: float) -> tuple[float, float]:
    """Seconds left of the (scale-up, scale-down) cool-downs."""
    up_from = _latest(state.last_up_at, state.manual_at)
    down_from = _latest(state.last_up_at, state.last_down_at, state.manual_at)
    up = 0.0 if up_from is None else max(0.0, policy.up_cooldown_s - (now - up_from))
    down = 0.0 if down_from is None else max(0.0, policy.down_cooldown_s - (now - down_from))
    return up, down


def decide(
    signals: ScalingSignals,
    policy: AutoscalingSpec,
    state: ScalingState,
    now: float,
    rules: Sequence[ScalingRule],
    situation: Situation,
) -> Decision:
    state = state.model_copy(deep=True)
    current = situation.desired
    if state.seen_desired is not None and state.seen_desired != current:
        state.manual_at = now  # someone else (the scale API) changed the count
        state.announced = None
    state.seen_desired = current

    if signals.queue_depth == 0:
        state.queue_zero_since = state.queue_zero_since if state.queue_zero_since else now
    else:  # waiting requests, or unknown: the empty streak must be seen unbroken
        state.queue_zero_since = None
    zero_for = now - state.queue_zero_since if state.queue_zero_since is not None else 0.0
    signals = signals.model_copy(update={"queue_zero_for_s": zero_for})

    votes = [_vote(rule, signals, policy) for rule in rules]
    ups = [v for v in votes if v.direction == "up"]
    all_down = bool(votes) and all(v.direction == "down" for v in votes)
    up_left, down_left = cooldowns(state, policy, now)
    floor = min(situation.floor, situation.ceiling)
    unplaced = situation.unschedulable if situation.live < current else None

    def out(
        action: Action,
        code: str,
        reason: str,
        to: int | None = None,
        event: EventType | None = None,
        clear: bool = False,
    ) -> Decision:
        d = Decision(
            at=now,
            action=action,
            code=code,
            event=event,
            from_replicas=current,
            to_replicas=current if to is None else to,
            reason=reason,
            votes=votes,
            signals=signals,
            up_cooldown_remaining_s=up_left,
            down_cooldown_remaining_s=down_left,
            clear_unschedulable=clear or bool(situation.unschedulable and not unplaced),
            state=state,
        )
        return _remember(d, state, situation.unschedulable)

    if not votes:
        return out("hold", "no-rules", "no scaling rules are registered")
    if current < floor:
        return out(
            "up",
            "below-floor",
            f"{current} replica(s) is below the floor of {floor}",
            to=floor,
            event="scaling.up",
            clear=True,
        )

    if unplaced is not None:
        if ups:
            return out(
                "hold",
                "unschedulable",
                f"{_join(ups)}, but replica {situation.live + 1} cannot be placed: "
                f"{unplaced}; waiting for capacity (placed as soon as the cluster "
                "has room)",
                event="scaling.held",
            )
        manual_recent = state.manual_at is not None and now - state.manual_at < (
            policy.down_cooldown_s
        )
        target = max(situation.live, floor)
        if not manual_recent and target < current:
            return out(
                "down",
                "cancel-unplaceable",
                f"load no longer calls for the {current - target} replica(s) that "
                f"could not be placed ({unplaced})",
                to=target,
                event="scaling.down",
                clear=True,
            )

    if ups:
        why = _join(ups)
        if current >= situation.ceiling:
            return out(
                "hold",
                "ceiling",
                f"{why}, but {current} replica(s) is the maximum ({situation.ceiling})",
                event="scaling.held",
            )
        if signals.replicas < current:
            return out(
                "hold",
                "starting",
                f"{why}, but {current - signals.replicas} replica(s) are still "
                f"starting ({signals.replicas} of {current} ready)",
                event="scaling.held",
            )
        if up_left > 0:
            manual = _by_hand(state, state.last_up_at)
            return out(
                "hold",
                "cooldown-up",
                f"{why}, but the scale-up cool-down{_after(manual, current)} has "
                f"{up_left:.0f}s left (of {policy.up_cooldown_s:g}s)",
                event=None if manual else "scaling.held",
            )
        asked = max((v.desired for v in ups if v.desired is not None), default=current + 1)
        to = min(max(asked, current + 1), current + policy.max_step, situation.ceiling)
        return out(
            "up",
            "scale-up",
            why,
            to=to,
            event="scaling.up",
            clear=True,
        )

    if all_down:
        why = _join(votes)
        if current <= floor:
            return out("hold", "floor", f"quiet, at the floor of {floor} replica(s)")
        if down_left > 0:
            manual = _by_hand(state, state.last_up_at, state.last_down_at)
            return out(
                "hold",
                "cooldown-down",
                f"{why}, but the scale-down cool-down{_after(manual, current)} has "
                f"{down_left:.0f}s left (of {policy.down_cooldown_s:g}s)",
                event=None if manual else "scaling.held",
            )
        wants = [v.desired for v in votes if v.desired is not None]
        step = max(wants) if len(wants) == len(votes) else current - 1
        to = max(floor, min(current - 1, max(step, current - policy.max_step)))
        return out("down", "scale-down", why, to=to, event="scaling.down")

    blocking = [v for v in votes if v.direction != "down"]
    return out("hold", "steady", _join(blocking))


def _vote(rule: ScalingRule, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
    try:
        vote = rule.vote(signals, policy)
    except Exception as exc:  # a broken plugin rule holds; it never scales anything
        return Vote(
            rule=rule.name,
            direction="hold",
            reason=f"rule {rule.name!r} failed: {type(exc).__name__}: {exc}",
        )
    if vote.desired is not None and vote.desired < 0:
        vote = vote.model_copy(update={"desired": None})
    return vote


def _remember(d: Decision, state: ScalingState, unschedulable: str | None) -> Decision:
    """Fold the decision into the state: timers on moves, 'announced' on held events (a
    held event is emitted only when its reason differs from the last one announced)."""
    if d.action == "up":
        state.last_up_at = d.at
    elif d.action == "down" and d.code != "cancel-unplaceable":  # nothing running stopped
        state.last_down_at = d.at
    if d.action != "hold":
        state.seen_desired = d.to_replicas
        state.announced = None
    elif d.event is not None:
        key = f"{d.code}:{unschedulable}" if d.code == "unschedulable" else d.code
        if key == state.announced:
            d.event = None
        else:
            state.announced = key
    if d.event is not None:
        state.last_decision = d.record()
    return d


def _by_hand(state: ScalingState, *ours: float | None) -> bool:
    """Whether the cool-down in force counts from a manual scale (not from one of ours).
    Holding for it is announced by no event: the user who just scaled knows, and the
    `scaling.manual` event is the last word until the autoscaler itself acts."""
    return state.manual_at is not None and all(t is None or t <= state.manual_at for t in ours)


def _after(manual: bool, current: int) -> str:
    return f" after the manual scale to {current} replica(s)" if manual else ""


def _latest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _join(votes: Sequence[Vote]) -> str:
    return "; ".join(v.reason for v in votes)


__all__ = [
    "Decision",
    "DecisionRecord",
    "ScalingState",
    "Situation",
    "cooldowns",
    "decide",
]
