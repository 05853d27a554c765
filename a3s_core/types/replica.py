"""Replicas: what the controller asks a runtime for and what the runtime observes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

# "lost": the runtime knows the replica cannot serve again where it is (its node has been
# NotReady past the runtime's grace, say); the controller replaces it at once, not counting it
# as an engine failure.
ReplicaState = Literal["starting", "ready", "failed", "stopped", "unknown", "lost"]


class ReplicaRequest(BaseModel):
    """Everything a runtime needs to start one replica. Built by the controller."""

    replica_id: str
    deployment_id: str
    deployment_name: str
    namespace: str
    engine: str
    image: str
    command: list[str] = Field(description="engine argv, rendered by the engine plugin")
    keep_entrypoint: bool = Field(
        False,
        description="True: `command` holds only the arguments to the image's ENTRYPOINT, "
        "which stays (container args, not command); False: the whole argv, executable first",
    )
    env: dict[str, str] = Field(default_factory=dict)
    port: int = Field(description="port the engine listens on inside its sandbox")
    health_path: str
    ready_path: str
    placement: Placement
    model: str = Field(description="checkpoint to load")
    served_model_name: str
    max_model_len: int
    tensor_parallel_size: int
    gpu: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    cpu_request: float | None = Field(
        None, description="CPU cores one replica should be granted (from the sizing plan)"
    )
    memory_request_bytes: int | None = Field(
        None, description="host memory one replica needs (from the sizing plan)"
    )
    sim: dict[str, object] = Field(
        default_factory=dict, description="figures the sim runtime needs to imitate the engine"
    )


class ReplicaObservation(BaseModel):
    """What a runtime currently sees of one replica."""

    replica_id: str
    deployment_id: str
    state: ReplicaState
    url: str | None = Field(None, description="base URL the gateway talks to (no /v1)")
    node: str | None = None
    gpu_indices: list[int] = Field(default_factory=list)
    message: str = ""
    restarts: int = 0
    since: datetime | None = None


class LogLine(BaseModel):
    replica_id: str
    ts: datetime
    line: str


from a3s_core.types.cluster import Placement  # noqa: E402

ReplicaRequest.model_rebuild()
