"""The deployment request, exactly as the seed's §2 declares it."""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# `$` would also match before a trailing newline ("a\n" passed): matched with fullmatch.
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_MODELS = 100  # per request: each one is a deployment the controller sizes and places
MAX_MODEL_LEN = 2**31 - 1  # engines take it as a 32-bit integer
MAX_JSON_DEPTH = 32  # of extra_args / metadata (stored as JSON, echoed in events)
MAX_MODEL_ID = 4096  # a Hugging Face id or a path (PATH_MAX)

Number = StrictFloat  # an int or a float; not "80" nor true (bool is an int in Python)
Quantization = Literal["awq", "gptq", "fp8", "none"]
QUANTIZATIONS: tuple[str, ...] = ("awq", "gptq", "fp8", "none")


def short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters, for messages that quote what was sent."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def check_dns_label(value: str, what: str) -> str:
    """A Kubernetes object name and a host name: lower-case, digits, '-', at most 63."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > 63:
        raise ValueError(
            f"{what} {short(value)} is {len(value)} characters; at most 63 are allowed"
        )
    if not DNS1123_LABEL.fullmatch(value):
        raise ValueError(
            f"{what} {short(value)} must be a DNS-1123 label: lower-case letters, digits and "
            "'-', starting and ending with a letter or digit"
        )
    return value


def _bad_json(at: str, got: Any, reason: str) -> PydanticCustomError:
    # `at` (appended to the field's path) and `got` are read by the API's error mapping.
    return PydanticCustomError("json_value", "{reason}", {"reason": reason, "at": at, "got": got})


def _check_text(text: str, at: str) -> None:
    if "\x00" in text:
        raise _bad_json(at, text, "must not contain NUL characters")
    try:
        text.encode()
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode()  # pydantic-core needs UTF-8
        raise _bad_json(at, shown, "is not valid Unicode (a lone surrogate)") from None


J = TypeVar("J")


def check_plain_json(value: J) -> J:
    """Free-form objects (`extra_args`, `metadata`) are stored as JSON, shown by the API and
    sent in events: refuse what would not survive that (NaN / Infinity, lone surrogates, NUL,
    nesting deeper than MAX_JSON_DEPTH), naming where it is."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        v, at, depth = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            spelt = "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"
            raise _bad_json(at, spelt, f"{spelt} is not allowed; numbers must be finite")
        if isinstance(v, str):
            _check_text(v, at)
        elif isinstance(v, dict | list):
            if depth >= MAX_JSON_DEPTH:
                shown = "{…}" if isinstance(v, dict) else "[…]"
                raise _bad_json(at, shown, f"nested deeper than {MAX_JSON_DEPTH} levels")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(k, str):
                    key = f".{k}" if re.fullmatch(r"[A-Za-z_][\w-]*", k) else f"[{short(k)}]"
                    _check_text(k, at + key)
                else:
                    key = f"[{k}]"
                stack.append((x, at + key, depth + 1))
    return value


class AutoscalingSpec(BaseModel):
    """Per-model autoscaling; the defaults are the scaling table in docs/autoscaling.md."""

    # (seed §3.7; docstrings here are user-facing: they are the OpenAPI descriptions)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    enabled: StrictBool = True
    min_replicas: Annotated[StrictInt, Field(ge=1)] = Field(1, alias="minReplicas")
    max_replicas: Annotated[StrictInt, Field(ge=1)] = Field(4, alias="maxReplicas")
    gpu_util_up: Number = Field(80.0, ge=0, le=100, description="scale up above this GPU %")
    gpu_util_down: Number = Field(20.0, ge=0, le=100, description="scale down below this GPU %")
    queue_up: Number = Field(10, ge=0, description="scale up above this many waiting requests")
    queue_zero_for_s: Number = Field(300, ge=0, description="queue must be 0 this long to go down")
    p99_up_s: Number = Field(2.0, gt=0, description="scale up when P99 latency exceeds this")
    p99_down_s: Number = Field(0.5, gt=0, description="scale down only when P99 is below this")
    p99_min_requests: Annotated[StrictInt, Field(ge=1)] = Field(
        10,
        description="the latency rule votes up only on a P99 taken from at least this many "
        "requests answered since the last scaling change",
    )
    up_cooldown_s: Number = Field(60, ge=0)
    down_cooldown_s: Number = Field(300, ge=0)
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
    model: str = Field(
        min_length=1, max_length=MAX_MODEL_ID, description="Hugging Face model id or a model path"
    )
    # No min_length: "" is an unknown engine, refused with the list of installed ones.
    engine: str = Field("vllm", description="vllm / tgi / sglang / ollama / …")
    quantization: Quantization = "none"
    max_model_len: Annotated[StrictInt, Field(gt=0, le=MAX_MODEL_LEN)] | None = None
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
        if any(unicodedata.category(c) == "Cc" for c in v.strip()):
            raise ValueError(f"model {short(v)} must not contain control characters")
        return v.strip()

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_plain_json(v)


class DeploymentRequest(BaseModel):
    """The body of `POST /v1/deployments`: the models to deploy, a namespace, metadata."""

    # (seed §2.1)

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

    models: list[ModelSpec] = Field(min_length=1, max_length=MAX_MODELS)
    namespace: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        return None if v is None else check_dns_label(v, "namespace")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_plain_json(v)

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[ModelSpec]) -> list[ModelSpec]:
        seen: dict[str, int] = {}
        for i, m in enumerate(v):
            if m.name in seen:
                raise ValueError(
                    f"models[{i}].name {m.name!r} is also models[{seen[m.name]}].name; "
                    "names must be unique within a request"
                )
            seen[m.name] = i
        return v

    def resolved_namespace(self) -> str:
        """The namespace, or one derived deterministically so a repeated request meets its twin."""
        if self.namespace:
            return self.namespace
        team = self.metadata.get("teamId")
        if isinstance(team, int) and not isinstance(team, bool):
            team = str(team)  # A3S OS may number its teams
        if not isinstance(team, str) or not team:
            return "default"
        slug = re.sub(r"[^a-z0-9-]+", "-", team.lower()).strip("-")
        if team.isascii() and 0 < len(slug) <= 63:
            return slug  # readable: "Team_001" → "team-001"
        # The slug lost what told teams apart (non-ASCII letters: "研发团队" and "测试团队"
        # both slug to nothing; or the cut at 63 characters): a hash of the whole id keeps
        # them apart, and keeps the result deterministic.
        digest = hashlib.sha256(team.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        return f"{slug[:54].strip('-') or 'team'}-{digest}"
