"""The deployment request, exactly as the seed's §2 declares it."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Quantization = Literal["awq", "gptq", "fp8", "none"]
QUANTIZATIONS: tuple[str, ...] = ("awq", "gptq", "fp8", "none")


def check_dns_label(value: str, what: str) -> str:
    """A Kubernetes object name and a host name: lower-case, digits, '-', at most 63."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > 63:
        raise ValueError(f"{what} {value!r} is {len(value)} characters; at most 63 are allowed")
    if not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} must be a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


class AutoscalingSpec(BaseModel):
    """Per-model autoscaling. Defaults are the seed's §3.7 table."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = True
    min_replicas: Annotated[StrictInt, Field(ge=1)] = Field(1, alias="minReplicas")
    max_replicas: Annotated[StrictInt, Field(ge=1)] = Field(4, alias="maxReplicas")
    gpu_util_up: float = Field(80.0, ge=0, le=100, description="scale up above this GPU %")
    gpu_util_down: float = Field(20.0, ge=0, le=100, description="scale down below this GPU %")
    queue_up: float = Field(10, ge=0, description="scale up above this many waiting requests")
    queue_zero_for_s: float = Field(300, ge=0, description="queue must be 0 this long to go down")
    p99_up_s: float = Field(2.0, gt=0, description="scale up when P99 latency exceeds this")
    p99_down_s: float = Field(0.5, gt=0, description="scale down only when P99 is below this")
    up_cooldown_s: float = Field(60, ge=0)
    down_cooldown_s: float = Field(300, ge=0)
    max_step: Annotated[StrictInt, Field(ge=1)] = 4

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is greater than "
                f"maxReplicas ({self.max_replicas})"
            )
        if self.gpu_util_down >= self.gpu_util_up:
            raise ValueError("gpu_util_down must be below gpu_util_up")
        return self


class ModelSpec(BaseModel):
    """One entry of `models[]`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(description="model name, unique in the request; becomes a host name")
    model: str = Field(min_length=1, description="Hugging Face model id or a model path")
    engine: str = Field("vllm", min_length=1, description="vllm / tgi / sglang / ollama / …")
    quantization: Quantization = "none"
    max_model_len: Annotated[StrictInt, Field(gt=0)] | None = None
    replicas: Annotated[StrictInt, Field(ge=1)] = 1
    extra_args: dict[str, Any] = Field(default_factory=dict)
    autoscaling: AutoscalingSpec | None = None
    scheduler: str | None = Field(None, description="scheduling strategy; platform default")
    balancer: str | None = Field(None, description="load-balancing policy; platform default")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_dns_label(v, "name")

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model must not be blank")
        return v.strip()


class DeploymentRequest(BaseModel):
    """The body of `POST /v1/deployments` (seed §2.1)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"models": [{"name": "qwen-72b", "model": "Qwen/Qwen2.5-72B-Instruct"}]},
                {
                    "models": [
                        {
                            "name": "qwen-72b",
                            "model": "Qwen/Qwen2.5-72B-Instruct",
                            "engine": "vllm",
                            "quantization": "awq",
                        },
                        {"name": "embedding", "model": "BAAI/bge-large-zh-v1.5", "engine": "tgi"},
                    ]
                },
            ]
        },
    )

    models: list[ModelSpec] = Field(min_length=1)
    namespace: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        return None if v is None else check_dns_label(v, "namespace")

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[ModelSpec]) -> list[ModelSpec]:
        seen: set[str] = set()
        for m in v:
            if m.name in seen:
                raise ValueError(f"name {m.name!r} appears more than once in models")
            seen.add(m.name)
        return v

    def resolved_namespace(self) -> str:
        """The namespace, or one derived deterministically so a repeated request meets its twin."""
        if self.namespace:
            return self.namespace
        team = self.metadata.get("teamId")
        if isinstance(team, str) and team:
            slug = re.sub(r"[^a-z0-9-]+", "-", team.lower()).strip("-")[:63].strip("-")
            if slug:
                return slug
        return "default"
