"""gateway_traffic: what each gateway process answered, per deployment and 5 s slot

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Written by every data-plane process (a3s_core/gateway/publish.py), read by the control
plane's autoscaler, drain and stats (a3s_core/scaling/fleet.py); see
a3s_core/store/traffic.py. Only recent rows live here (about a minute), so nothing is
carried over.

`publish_interval_s` (each row's writer's interval, so staleness is judged per gateway)
was added to this revision rather than a 0005 because 0004 had not been released: it was
on no user's database. A development database migrated by an earlier build of it needs
the table dropped and its `alembic_version` set back to 0003: the rows are a minute's
traffic.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_traffic",
        sa.Column("deployment_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("slot_start", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("gateway", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("gateway_group", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("latency", sa.JSON(), nullable=False),
        sa.Column("in_flight", sa.JSON(), nullable=False),
        sa.Column("publish_interval_s", sa.Float(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id", "slot_start", "gateway"),
    )
    with op.batch_alter_table("gateway_traffic", schema=None) as batch_op:
        batch_op.create_index("ix_gateway_traffic_slot_start", ["slot_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gateway_traffic", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_traffic_slot_start")
    op.drop_table("gateway_traffic")
