"""Persistence: sqlmodel tables, alembic migrations, and the Store."""

from a3s_core.store.repo import Store, new_id
from a3s_core.store.tables import ApiKeyRow, DeploymentRow, EventRow, GpuAllocationRow, ReplicaRow

__all__ = [
    "ApiKeyRow",
    "DeploymentRow",
    "EventRow",
    "GpuAllocationRow",
    "ReplicaRow",
    "Store",
    "new_id",
]
