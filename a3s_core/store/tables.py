"""Database tables (sqlmodel). The store is the source of truth; runtimes only observe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class DeploymentRow(SQLModel, table=True):
    __tablename__ = "deployments"
    # A name is unique in its namespace among deployments that still exist; deleted ones
    # stay as tombstones (so DELETE is idempotent and GET tells what happened).
    __table_args__ = (
        Index(
            "uq_deployment_live_name",
            "namespace",
            "name",
            unique=True,
            sqlite_where=text("status != 'deleted'"),
            postgresql_where=text("status != 'deleted'"),
        ),
    )

    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    namespace: str = Field(index=True)
    model: str
    engine: str
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    plan: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    status: str = Field(default="pending", index=True)
    reason: str = ""
    suggestions: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    desired_replicas: int = 1
    trace_id: str | None = None
    span_id: str | None = Field(default=None, description="root span of the request")
    autoscaling_state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    failures: int = Field(default=0, description="replica failures in a row, for back-off")
    retry_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = None


class ReplicaRow(SQLModel, table=True):
    __tablename__ = "replicas"

    id: str = Field(primary_key=True)
    deployment_id: str = Field(index=True, foreign_key="deployments.id")
    node: str | None = None
    gpu: str | None = None
    gpu_indices: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    tensor_parallel_size: int = 1
    max_model_len: int = 0
    state: str = Field(default="pending", index=True)
    url: str | None = None
    message: str = ""
    restarts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    ready_at: datetime | None = None


class GpuAllocationRow(SQLModel, table=True):
    """One row per booked GPU. The primary key makes double booking impossible."""

    __tablename__ = "gpu_allocations"

    node: str = Field(primary_key=True)
    gpu_index: int = Field(primary_key=True)
    replica_id: str = Field(index=True)
    deployment_id: str = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    deployment_id: str = Field(index=True)
    key_hash: str = Field(unique=True, index=True)
    prefix: str
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_deployment_seq", "deployment_id", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow)
    type: str
    deployment_id: str | None = None
    name: str | None = None
    namespace: str | None = None
    level: str = "info"
    message: str
    trace_id: str | None = None
    span_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
