"""Live load figures, common to every engine."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LoadFigures(BaseModel):
    """What an engine's /metrics says, in one vocabulary."""

    waiting: float | None = Field(None, description="requests queued in the engine")
    running: float | None = Field(None, description="requests being decoded")
    kv_cache_usage: float | None = Field(None, description="0–1")
    gpu_utilization: float | None = Field(None, description="percent 0–100, where exposed")


class ReplicaLoad(BaseModel):
    """One replica as a balancer sees it."""

    replica_id: str
    url: str
    waiting: float = 0
    running: float = 0
    in_flight: int = 0
    kv_cache_usage: float | None = None
    gpu_utilization: float | None = None
    weight: float = Field(1.0, description="relative serving speed: memory bandwidth × TP")
    metrics_fresh: bool = False
