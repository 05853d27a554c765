"""Autoscaling signals and votes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Direction = Literal["up", "down", "hold"]


class ScalingSignals(BaseModel):
    """A deployment's figures at one instant, plus how long the queue has been empty."""

    replicas: int
    gpu_utilization: float | None = Field(None, description="mean percent over replicas")
    queue_depth: float | None = Field(None, description="waiting requests, summed")
    p99_latency_s: float | None = None
    queue_zero_for_s: float = Field(0, description="seconds the queue has been 0 without break")
    requests_in_window: int = 0
    in_flight: int | None = Field(
        None,
        description="requests being answered now: the gateway's in flight, or the engines' "
        "running ones when larger; None: unknown",
    )
    recent_p99_latency_s: float | None = Field(
        None, description="P99 over the window's requests answered since the last scaling change"
    )
    recent_requests: int | None = Field(
        None,
        description="how many requests `recent_p99_latency_s` is taken from; None: the source "
        "does not tell (then `p99_latency_s` and `requests_in_window` stand in)",
    )


class Vote(BaseModel):
    rule: str
    direction: Direction
    reason: str
    desired: int | None = Field(None, description="replicas this rule would like, if it knows")
