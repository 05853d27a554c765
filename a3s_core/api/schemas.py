"""Response bodies of the control plane (camelCase on the wire, as the seed's `apiKey`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class DeploymentCreated(Camel):
    id: str
    name: str
    namespace: str
    model: str
    engine: str
    endpoint: str = Field(description="OpenAI base_url, usable as it is")
    api_key: str = Field(description="shown once; only a hash is stored")
    status: str
    events_url: str = Field(description="WebSocket URL streaming this deployment's events")


class SubmitResponse(Camel):
    namespace: str
    trace_id: str
    deployments: list[DeploymentCreated]


class ReplicaView(Camel):
    id: str
    node: str | None
    gpu: str | None
    gpu_indices: list[int]
    tensor_parallel_size: int
    state: str
    url: str | None
    message: str
    restarts: int
    since: datetime
    ready_at: datetime | None


class DeploymentView(Camel):
    id: str
    name: str
    namespace: str
    model: str
    engine: str
    quantization: str
    status: str
    reason: str
    retry_at: datetime | None = Field(
        None, description="failed: when the controller tries again (null: it will not)"
    )
    suggestions: list[str]
    endpoint: str
    desired_replicas: int
    ready_replicas: int
    replicas: list[ReplicaView]
    spec: dict[str, Any]
    metadata: dict[str, Any]
    plan: dict[str, Any] | None
    trace_id: str | None
    created_at: datetime
    updated_at: datetime
    stats: dict[str, Any] | None = None
    recent_events: list[dict[str, Any]] = Field(
        default_factory=list, description="the last 20 events (empty in the list: see /events)"
    )


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(ge=1, strict=True)


class KeyResponse(Camel):
    deployment_id: str
    api_key: str
