"""Persistence: sqlmodel tables, alembic migrations, and the Store."""

from a3s_core.store.repo import Store, new_id
from a3s_core.store.tables import ApiKeyRow, DeploymentRow, EventRow, GpuAllocationRow, ReplicaRow
from a3s_core.store.traffic import GatewayTrafficRow  # on the metadata with the others

__all__ = [
    "ApiKeyRow",
    "DeploymentRow",
    "EventRow",
    "GatewayTrafficRow",
    "GpuAllocationRow",
    "ReplicaRow",
    "Store",
    "new_id",
]
