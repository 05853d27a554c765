"""The event envelope streamed over WebSocket (ARCHITECTURE.md §5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["debug", "info", "warning", "error"]


class Event(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    seq: int = 0
    ts: datetime
    type: str = Field(description="dotted type, e.g. scheduling.failed")
    deployment_id: str | None = Field(None, alias="deploymentId")
    name: str | None = None
    namespace: str | None = None
    level: Level = "info"
    message: str
    trace_id: str | None = Field(None, alias="traceId")
    span_id: str | None = Field(None, alias="spanId")
    data: dict[str, Any] = Field(default_factory=dict)

    def envelope(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
