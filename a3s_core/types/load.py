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
    """One replica as a balancer sees it: a snapshot taken for this pick.

    The engine figures (waiting, running, KV, GPU) come from the latest scrape, which may
    have been made by this gateway worker or read from balancing data that several workers
    share; `metrics_age_s` says how old they are. `in_flight` is exact and this worker's
    own; `peer_in_flight` is what the other workers had in flight as last shared (0 with one
    worker). The replica's total from the gateway's side is their sum (`gateway_in_flight`);
    it is never the engine's total, which also counts other clients.
    """

    replica_id: str
    url: str
    waiting: float = 0
    running: float = 0
    in_flight: int = Field(0, description="requests this gateway worker has on it now")
    peer_in_flight: int = Field(0, description="other gateway workers' requests on it, "
                                "as last shared; 0 with one worker")
    kv_cache_usage: float | None = None
    gpu_utilization: float | None = None
    weight: float = Field(1.0, description="relative serving speed: memory bandwidth × TP")
    metrics_fresh: bool = False
    metrics_age_s: float | None = Field(None, description="age of the engine figures; "
                                        "None when never scraped")
    kv_capacity_tokens: int | None = Field(None, description="tokens of KV cache the "
                                           "replica holds, from the deployment's plan")

    @property
    def gateway_in_flight(self) -> int:
        """Requests every gateway worker together has outstanding on the replica."""
        return self.in_flight + self.peer_in_flight
