"""What every part of the controller shares: the platform, time, events, row updates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from a3s_core.events.tracing import parent_context
from a3s_core.platform import Platform
from a3s_core.store import DeploymentRow, ReplicaRow
from a3s_core.types import Level


def now() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


class ControllerBase:
    def __init__(self, platform: Platform) -> None:
        self.p = platform
        self.store = platform.store

    def _ids(self, dep: DeploymentRow) -> dict[str, Any]:
        return {
            "deployment_id": dep.id,
            "deployment_name": dep.name,
            "namespace": dep.namespace,
            "parent": parent_context(dep.trace_id, dep.span_id),
        }

    def emit(
        self,
        dep: DeploymentRow,
        type_: str,
        message: str,
        level: Level = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        self.p.emit_for(dep, type_, message, level, data)

    async def _set(self, r: ReplicaRow, **fields: Any) -> ReplicaRow:
        """Update a replica row; the old row stands if it vanished meanwhile."""
        return await run_in_threadpool(self.store.update_replica, r.id, **fields) or r

    def _invalidate(self) -> None:
        if self.p.gateway is not None:
            self.p.gateway.invalidate()
